/**
 * Parses a log timestamp into milliseconds since the Unix epoch: ISO 8601, the space-separated form
 * some exports use (read as UTC when it has no zone), or epoch seconds or milliseconds as numbers.
 * Returns NaN when the value is not a time.
 */
export function parseLogTime(value: unknown): number {
  if (typeof value === "number") return value > 1e11 ? value : value * 1000;
  if (typeof value !== "string" || value === "") return Number.NaN;
  if (/^\d+(\.\d+)?$/.test(value)) return parseLogTime(Number(value));
  let text = value.replace(" ", "T");
  // Fractions beyond milliseconds are cut, since Date.parse accepts at most three digits reliably.
  text = text.replace(/(\.\d{3})\d+/, "$1");
  if (!/(Z|[+-]\d\d:?\d\d)$/.test(text)) text += "Z";
  return Date.parse(text);
}
