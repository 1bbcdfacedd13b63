import { WritError } from "../errors/writ-error.js";

/**
 * PostgreSQL statements that take no bind parameters (`CREATE ROLE`, `ALTER ROLE`, `GRANT`, `DROP
 * ROLE`) are built here and only here. A statement is a tagged template whose every interpolation is a
 * `SqlPart` made by `identifier`, `literal`, `integer` or `checkedClause`, so no caller can splice a plain string
 * into SQL text.
 */
export class SqlPart {
  private constructor(readonly text: string) {}

  /** Creates a part; only the constructors in this module call it. */
  static of(text: string): SqlPart {
    return new SqlPart(text);
  }
}

/** PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes (63 in default builds). */
export const maxIdentifierBytes = 63;

/**
 * Quotes an identifier as PostgreSQL reads it: in double quotes, with each double quote doubled.
 * Rejects the empty name, NUL and names past 63 bytes, which PostgreSQL would silently truncate.
 */
export function identifier(name: string): SqlPart {
  if (name === "" || name.includes("\0") || Buffer.byteLength(name, "utf8") > maxIdentifierBytes) {
    throw new WritError(
      "invalid_request",
      `invalid PostgreSQL name "${name.replaceAll("\0", "\\0")}": use 1 to ${maxIdentifierBytes} bytes without NUL`,
    );
  }
  return SqlPart.of(`"${name.replaceAll('"', '""')}"`);
}

/**
 * Quotes a string literal with each single quote doubled. A value with a backslash becomes an escape
 * string (`E'…'`) with each backslash doubled, so it reads the same whatever
 * `standard_conforming_strings` is set to. NUL cannot be sent and is rejected.
 */
export function literal(value: string): SqlPart {
  if (value.includes("\0")) throw new WritError("invalid_request", "a PostgreSQL string cannot contain NUL");
  const quoted = value.replaceAll("'", "''");
  return value.includes("\\")
    ? SqlPart.of(`E'${quoted.replaceAll("\\", "\\\\")}'`)
    : SqlPart.of(`'${quoted}'`);
}

/** Writes a safe integer, such as a connection limit, as a numeric constant. */
export function integer(value: number): SqlPart {
  if (!Number.isSafeInteger(value)) throw new TypeError(`${value} is not a safe integer`);
  return SqlPart.of(String(value));
}

/** Wraps a clause that `parseGrantClause` has already checked token by token. */
export function checkedClause(text: string): SqlPart {
  return SqlPart.of(text);
}

/** Builds one statement from literal SQL text and quoted parts. */
export function statement(strings: TemplateStringsArray, ...parts: SqlPart[]): string {
  let text = strings[0] ?? "";
  parts.forEach((part, index) => {
    if (!(part instanceof SqlPart)) throw new TypeError("only SqlPart values may be interpolated into SQL");
    text += part.text + (strings[index + 1] ?? "");
  });
  return text;
}
