import type { ToolAction } from "../../tools/registry.js";

/** An HTTP action pattern: a method and path segments, where `*` is one segment and `**` any number. */
export interface HttpPattern {
  method: string;
  segments: string[];
}

/** Parses `METHOD /path/pattern`; the registry has already checked the form. */
export function parseHttpPattern(spec: string): HttpPattern {
  const space = spec.indexOf(" ");
  const method = spec.slice(0, space);
  const path = spec.slice(space + 1);
  return { method, segments: path.split("/").filter((segment) => segment !== "") };
}

/** Returns whether a normalised path's segments match a pattern's segments. */
export function matchSegments(pattern: readonly string[], path: readonly string[]): boolean {
  // Dynamic programming over (pattern index, path index): `**` may consume zero or more segments.
  let reachable = new Set<number>([0]);
  for (const token of pattern) {
    const next = new Set<number>();
    for (const at of reachable) {
      if (token === "**") {
        for (let end = at; end <= path.length; end++) next.add(end);
      } else if (at < path.length && (token === "*" || token === path[at])) {
        next.add(at + 1);
      }
    }
    if (next.size === 0) return false;
    reachable = next;
  }
  return reachable.has(path.length);
}

/** Returns the tool's actions whose method and pattern match the request, in declaration order. */
export function matchActions(
  actions: readonly (ToolAction & { pattern: HttpPattern })[],
  method: string,
  path: string,
  caseSensitive: boolean,
): (ToolAction & { pattern: HttpPattern })[] {
  const segments = path.split("/").filter((segment) => segment !== "");
  return actions.filter((action) => {
    if (action.pattern.method !== method) return false;
    const pattern = caseSensitive
      ? action.pattern.segments
      : action.pattern.segments.map((s) => s.toLowerCase());
    return matchSegments(pattern, segments);
  });
}
