import type { GlobalOptions } from "./target.js";

/**
 * Removes control characters, format characters (bidirectional overrides, zero-width characters) and
 * line or paragraph separators, so that values from the store can neither drive the terminal nor
 * reorder or hide what it shows.
 */
export function printable(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return (text ?? "").replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "");
}

/** Prints a result: one JSON document with `--json`, else the human-readable lines. */
export function emit(options: GlobalOptions, json: unknown, lines: () => string[]): void {
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  for (const line of lines()) process.stdout.write(`${line}\n`);
}

/** Formats rows as aligned columns under a header. */
export function table(header: string[], rows: unknown[][]): string[] {
  const cells = [header, ...rows.map((row) => row.map(printable))];
  const widths = header.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? "").length)));
  return cells.map((row) =>
    row
      .map((cell, column) => (cell ?? "").padEnd(widths[column] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}

/** Parses a duration such as `90s`, `30m`, `2h` or `1d` into seconds; throws Error otherwise. */
export function parseDuration(value: string): number {
  const match = /^(\d+)(s|m|h|d)$/.exec(value.trim());
  if (match === null)
    throw new Error(`invalid duration "${value}": use a number and s, m, h or d, such as 30m`);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as "s" | "m" | "h" | "d"];
  return Number(match[1]) * unit;
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
