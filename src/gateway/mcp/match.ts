import { realpath } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import type { ToolAction } from "../../tools/registry.js";
import { parseMcpTarget, type McpTargetKind } from "../../tools/mcp-config.js";

/** An action of an MCP tool with its parsed target. */
export interface McpAction extends ToolAction {
  target: { kind: McpTargetKind; name: string };
}

/** Parses the targets of a tool's actions; specs were validated at registration. */
export function mcpActions(actions: readonly ToolAction[]): McpAction[] {
  return actions.map((action) => ({ ...action, target: parseMcpTarget(action.name, action.spec) }));
}

const patternCache = new Map<string, RegExp>();

/** Returns whether `uri` matches a resource pattern: `*` spans any run within one segment, `**` any run. */
export function matchesUriPattern(pattern: string, uri: string): boolean {
  let regex = patternCache.get(pattern);
  if (regex === undefined) {
    const source = pattern
      .split("**")
      .map((part) =>
        part
          .split("*")
          .map((literal) => literal.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
          .join("[^/]*"),
      )
      .join(".*");
    regex = new RegExp(`^${source}$`, "s");
    patternCache.set(pattern, regex);
  }
  return regex.test(uri);
}

/**
 * Returns why a resource URI is not decided by pattern, or undefined. Dot segments, encoded dots,
 * slashes and backslashes, and control characters could make a pattern match a URI that names
 * another resource once the server decodes or normalises it, so they are rejected outright.
 */
export function uriProblem(uri: string): string | undefined {
  if (uri.length > 4096) return "longer than 4096 characters";
  for (const character of uri) {
    const code = character.charCodeAt(0);
    if (code < 0x20 || code === 0x7f || character === "\\") return "control character or backslash";
  }
  if (/%(2e|2f|5c|00)/i.test(uri)) return "encoded dot, slash, backslash or NUL";
  const path = uri.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, "");
  if (path.split("/").some((segment) => segment === "." || segment === "..")) return "dot segment";
  return undefined;
}

/** Returns the actions whose target is `kind` and matches `name` (a URI for resources). */
export function matchTargets(actions: readonly McpAction[], kind: McpTargetKind, name: string): McpAction[] {
  return actions.filter((action) => {
    if (action.target.kind !== kind) return false;
    return kind === "resource" ? matchesUriPattern(action.target.name, name) : action.target.name === name;
  });
}

/**
 * Makes a path argument absolute and resolves symbolic links, as the server would when it opens it:
 * relative to the server's working folder, `~` as its home. The longest existing prefix is resolved
 * with realpath and the rest appended, so a path to a file yet to be created still resolves through
 * any symbolic link on its way.
 */
export async function resolvePathArgument(
  value: string,
  base: { cwd: string; home: string },
): Promise<string> {
  let expanded = value;
  if (value === "~" || value.startsWith("~/")) expanded = join(base.home, value.slice(1));
  let remaining = isAbsolute(expanded) ? resolve(expanded) : resolve(base.cwd, expanded);
  const tail: string[] = [];
  for (;;) {
    try {
      const real = await realpath(remaining);
      return tail.length === 0 ? real : join(real, ...tail.reverse());
    } catch {
      const parent = dirname(remaining);
      if (parent === remaining) return resolve(remaining, ...tail.reverse());
      tail.push(basename(remaining));
      remaining = parent;
    }
  }
}
