/** Why a request path was rejected before any matching. */
export type PathProblem =
  | "encoded_slash"
  | "encoded_backslash"
  | "encoded_nul"
  | "double_encoding"
  | "invalid_encoding"
  | "backslash"
  | "path_parameter"
  | "fragment"
  | "control_character"
  | "invalid_character"
  | "leaves_tool";

export type NormalisedPath = { ok: true; path: string } | { ok: false; problem: PathProblem };

/**
 * Characters RFC 3986 (section 3.3) allows in a path as they are: unreserved, sub-delimiters, `:`,
 * `@`, `/`, and `%` for escapes. Anything else, such as a space or a non-ASCII character, must come
 * percent-encoded.
 */
const pathCharacters = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;

/** Characters RFC 3986 calls unreserved: the only ones whose percent-encoding is decoded. */
const unreserved = /^[A-Za-z0-9\-._~]$/;

/**
 * Normalises the path a request names under a tool, once, before matching. It rejects encoded `/`,
 * `\` and NUL, double encoding, backslashes, `;` parameters, `#` and any character RFC 3986 does
 * not allow unencoded in a path. It decodes only percent-encoded unreserved characters, and other
 * escapes keep their encoding in uppercase hex. It resolves `.` and `..` segments, collapses
 * repeated slashes and, for a case-insensitive tool, lowercases. A `..` that would climb above the
 * tool's root is rejected rather than clamped. The result is both what is authorised and what is
 * forwarded.
 */
export function normalisePath(raw: string, options: { caseSensitive: boolean }): NormalisedPath {
  if (raw.includes("\\")) return { ok: false, problem: "backslash" };
  if (raw.includes(";")) return { ok: false, problem: "path_parameter" };
  // A request target has no fragment, and URL parsers drop everything after `#` when forwarding, so
  // the upstream would see a shorter path than the one authorised.
  if (raw.includes("#")) return { ok: false, problem: "fragment" };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw)) return { ok: false, problem: "control_character" };
  if (!pathCharacters.test(raw)) return { ok: false, problem: "invalid_character" };

  let decoded = "";
  for (let index = 0; index < raw.length; index++) {
    const character = raw[index] as string;
    if (character !== "%") {
      decoded += character;
      continue;
    }
    const hex = raw.slice(index + 1, index + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, problem: "invalid_encoding" };
    const upper = hex.toUpperCase();
    if (upper === "2F") return { ok: false, problem: "encoded_slash" };
    if (upper === "5C") return { ok: false, problem: "encoded_backslash" };
    if (upper === "00") return { ok: false, problem: "encoded_nul" };
    if (upper === "25") return { ok: false, problem: "double_encoding" };
    const value = String.fromCharCode(parseInt(hex, 16));
    decoded += unreserved.test(value) ? value : `%${upper}`;
    index += 2;
  }

  const segments: string[] = [];
  for (const segment of decoded.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (segments.length === 0) return { ok: false, problem: "leaves_tool" };
      segments.pop();
      continue;
    }
    segments.push(segment);
  }
  const trailingSlash = decoded.length > 1 && decoded.endsWith("/") && segments.length > 0;
  let path = `/${segments.join("/")}${trailingSlash ? "/" : ""}`;
  if (!options.caseSensitive) path = path.toLowerCase();
  return { ok: true, path };
}
