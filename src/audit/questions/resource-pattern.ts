import { WritError } from "../../errors/writ-error.js";

/** A compiled `--resource` pattern, and the tool it names when it was given as a full resource URI. */
export interface ResourcePattern {
  text: string;
  tool?: string;
  matches(target: string): boolean;
}

/** Maximum pattern length, in characters. */
const maxPatternLength = 2048;

/**
 * Compiles a resource pattern matched against the target a gateway decision recorded: the normalised
 * path for an HTTP tool (`/repos/acme/issues`), the tool, resource or prompt name for an MCP tool.
 * `*` matches within one path segment, `**` across segments, and a trailing `/**` also matches the
 * bare prefix. A full resource URI (`<public-url>/tools/<tool>/…` or `…/mcp/<tool>/…`) is reduced to
 * the path below the tool (every target when nothing follows the tool's name), and names the tool.
 */
export function compileResourcePattern(text: string, issuer: string): ResourcePattern {
  if (text === "" || text.length > maxPatternLength) {
    throw new WritError(
      "invalid_request",
      `invalid resource pattern: use 1 to ${maxPatternLength} characters`,
    );
  }
  let pattern = text;
  let tool: string | undefined;
  for (const kind of ["tools", "mcp"]) {
    const prefix = `${issuer}/${kind}/`;
    if (!text.startsWith(prefix)) continue;
    const rest = text.slice(prefix.length);
    const slash = rest.indexOf("/");
    tool = slash === -1 ? rest : rest.slice(0, slash);
    pattern = slash === -1 ? "**" : rest.slice(slash);
  }
  const expression = new RegExp(`^${toRegExpSource(pattern)}$`, "s");
  return {
    text,
    ...(tool === undefined ? {} : { tool }),
    matches: (target) => expression.test(target),
  };
}

function toRegExpSource(pattern: string): string {
  let source = "";
  let index = 0;
  while (index < pattern.length) {
    if (pattern.startsWith("/**", index) && index + 3 === pattern.length) {
      source += "(?:/.*)?";
      index += 3;
    } else if (pattern.startsWith("**", index)) {
      source += ".*";
      index += 2;
    } else if (pattern[index] === "*") {
      source += "[^/]*";
      index += 1;
    } else {
      source += (pattern[index] as string).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      index += 1;
    }
  }
  return source;
}
