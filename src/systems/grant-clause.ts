import { WritError } from "../errors/writ-error.js";
import { checkedClause, type SqlPart } from "./sql-text.js";

/** One lexical token of a GRANT clause: a keyword or name, a quoted name, or punctuation. */
const tokenPattern = /\s+|[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"\0]|"")+"|[,.()*]/y;
/** Privileges a template may grant, as PostgreSQL spells them in GRANT. */
const privilegeWords = new Set([
  "SELECT",
  "INSERT",
  "UPDATE",
  "DELETE",
  "TRUNCATE",
  "REFERENCES",
  "TRIGGER",
  "USAGE",
  "EXECUTE",
  "CREATE",
  "CONNECT",
  "TEMPORARY",
  "TEMP",
  "ALL",
  "PRIVILEGES",
]);
/** Words that would change whom the grant goes to or how, which writ itself decides. */
const forbiddenWords = new Set(["TO", "FROM", "WITH", "GRANTED", "GRANT", "OPTION", "PUBLIC"]);

/**
 * Checks the privileges-and-object part of a GRANT, such as `SELECT ON ALL TABLES IN SCHEMA billing`,
 * and returns it normalised for `GRANT <clause> TO <role>`. Only names, keywords, double-quoted names
 * and `, . ( ) *` are accepted, so the clause cannot end the statement, open a comment or a string,
 * or name a grantee.
 */
export function parseGrantClause(text: string): { clause: string; part: SqlPart } {
  const tokens: string[] = [];
  tokenPattern.lastIndex = 0;
  while (tokenPattern.lastIndex < text.length) {
    const start = tokenPattern.lastIndex;
    const match = tokenPattern.exec(text);
    if (match === null) {
      throw new WritError(
        "invalid_request",
        `invalid grant "${text}": unexpected "${text.slice(start, start + 1)}"; use PRIVILEGES ON OBJECTS, such as "SELECT ON ALL TABLES IN SCHEMA billing"`,
      );
    }
    if (match[0].trim() !== "") tokens.push(match[0]);
  }

  const upper = tokens.map((token) => (token.startsWith('"') ? token : token.toUpperCase()));
  const forbidden = upper.find((token) => forbiddenWords.has(token));
  if (forbidden !== undefined) {
    throw new WritError(
      "invalid_request",
      `invalid grant "${text}": "${forbidden}" is not allowed; writ names the grantee itself`,
    );
  }

  const on = upper.indexOf("ON");
  if (on < 1 || on === upper.length - 1 || upper.lastIndexOf("ON") !== on) {
    throw new WritError(
      "invalid_request",
      `invalid grant "${text}": use PRIVILEGES ON OBJECTS, such as "SELECT ON ALL TABLES IN SCHEMA billing"`,
    );
  }

  let depth = 0;
  for (const token of upper.slice(0, on)) {
    if (token === "(") depth += 1;
    else if (token === ")") depth -= 1;
    else if (depth === 0 && token !== "," && !privilegeWords.has(token)) {
      throw new WritError("invalid_request", `invalid grant "${text}": "${token}" is not a privilege`);
    }
  }

  const clause = tokens.join(" ");
  return { clause, part: checkedClause(clause) };
}
