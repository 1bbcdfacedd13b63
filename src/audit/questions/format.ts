/**
 * Rendering of investigation results as a terminal table or as CSV. Every investigation command builds
 * `Rows` (a header and cells) once and renders them here, so table and CSV output carry the same
 * columns. JSON output is the API's response itself and does not pass through this module.
 */

/** One cell: text, a number, or nothing (rendered empty). */
export type Cell = string | number | null | undefined;

export interface Rows {
  header: string[];
  rows: Cell[][];
}

export type OutputFormat = "table" | "csv" | "json";

// Control characters (C0, DEL, C1), which can move the cursor, recolour or retitle a terminal, and
// format characters and line or paragraph separators, which can reorder text on screen (bidirectional
// overrides) or hide it (zero-width characters).
const allControls = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
// The same set without line feed and tab, which a quoted CSV field may carry harmlessly.
const controlsButLineFeedAndTab = /(?![\n\t])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/** Leading characters that make a spreadsheet read a cell as a formula (CSV injection). */
const formulaLeads = new Set(["=", "+", "-", "@", "\t"]);

/** Removes every control character, so that values from the audit log cannot drive a terminal. */
export function terminalText(cell: Cell): string {
  if (cell === null || cell === undefined) return "";
  return String(cell).replace(allControls, "");
}

/**
 * Escapes one CSV field. Control characters other than line feed and tab are removed, because CSV
 * is often printed to a terminal. A text cell that starts with `=`, `+`, `-`, `@` or a tab gets a
 * leading `'` so that spreadsheets show it as text. Numbers are left as they are: writ produces them,
 * and a negative count is not a formula. A field that contains `"`, `,`, a line feed or a carriage
 * return is quoted, with each `"` doubled (RFC 4180, section 2).
 */
export function csvField(cell: Cell): string {
  if (cell === null || cell === undefined) return "";
  if (typeof cell === "number") return String(cell);
  let text = cell.replace(controlsButLineFeedAndTab, "");
  if (text.length > 0 && formulaLeads.has(text[0] as string)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Renders rows as CSV: a header record, then one record per row, each ending with CRLF (RFC 4180). */
export function renderCsv(rows: Rows): string {
  const records = [rows.header, ...rows.rows].map((record) => record.map(csvField).join(","));
  return records.map((record) => `${record}\r\n`).join("");
}

/** Renders rows as aligned columns under the header, with control characters removed from every cell. */
export function renderTable(rows: Rows): string[] {
  const cells = [rows.header, ...rows.rows].map((record) => record.map(terminalText));
  const widths = rows.header.map((_, column) =>
    Math.max(...cells.map((record) => (record[column] ?? "").length)),
  );
  return cells.map((record) =>
    record
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}

/** Formats a time in milliseconds since the Unix epoch as RFC 3339 in UTC, or empty when absent. */
export function isoTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? "" : new Date(ms).toISOString();
}
