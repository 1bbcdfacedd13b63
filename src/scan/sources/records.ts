import type { Location } from "../model.js";

/** One record's JSON text and where it starts, or a line that could not be split out. */
export type RawRecord = { text: string; location: Location } | { error: string; location: Location };

/** Lines longer than this are reported as malformed instead of being buffered without bound. */
export const maxRecordBytes = 64 * 1024 * 1024;

const quote = 0x22;
const backslash = 0x5c;
const newline = 0x0a;

/**
 * Splits a byte stream into JSON records without parsing it whole. The layout is chosen from the first
 * bytes: a top-level array yields its elements, a `{"Records": [...]}` object (CloudTrail's S3
 * delivery form) yields the elements of `Records`, and anything else is read as JSON lines.
 */
export async function* splitRecords(chunks: AsyncIterable<Buffer>, file: string): AsyncGenerator<RawRecord> {
  const iterator = chunks[Symbol.asyncIterator]();
  const buffered: Buffer[] = [];
  let head = "";
  while (head.length < 64) {
    const next = await iterator.next();
    if (next.done === true) break;
    buffered.push(next.value);
    head += next.value.subarray(0, 64).toString("latin1");
  }
  const rest = (async function* () {
    yield* buffered;
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value;
  })();

  const start = head.trimStart();
  if (start.startsWith("[")) yield* splitArray(rest, file, 1);
  else if (/^\{\s*"Records"\s*:\s*\[/.test(start)) yield* splitArray(rest, file, 2);
  else yield* splitLines(rest, file);
}

/** Yields each non-blank line; a line split across chunks is joined first. */
async function* splitLines(chunks: AsyncIterable<Buffer>, file: string): AsyncGenerator<RawRecord> {
  let carry: Buffer[] = [];
  let carryBytes = 0;
  let line = 1;
  for await (const chunk of chunks) {
    let from = 0;
    for (let end = chunk.indexOf(newline, from); end !== -1; end = chunk.indexOf(newline, from)) {
      const piece = chunk.subarray(from, end);
      const bytes = carry.length === 0 ? piece : Buffer.concat([...carry, piece]);
      carry = [];
      carryBytes = 0;
      const text = bytes.toString("utf8").trim();
      if (text.length > 0) yield { text, location: { file, line } };
      line += 1;
      from = end + 1;
    }
    if (from < chunk.length) {
      carryBytes += chunk.length - from;
      carry.push(chunk.subarray(from));
      if (carryBytes > maxRecordBytes) {
        yield { error: `line longer than ${maxRecordBytes} bytes`, location: { file, line } };
        carry = [];
        carryBytes = -Infinity;
      }
    }
  }
  const text = Buffer.concat(carry).toString("utf8").trim();
  if (carryBytes >= 0 && text.length > 0) yield { text, location: { file, line } };
}

/**
 * Yields the objects found at `elementDepth` (1 for a top-level array, 2 for the array inside the
 * `Records` object). The scan tracks strings and escapes so that brackets inside values do not
 * count, and counts newlines outside strings for locations, which is exact because JSON strings
 * cannot hold a raw newline.
 */
async function* splitArray(
  chunks: AsyncIterable<Buffer>,
  file: string,
  elementDepth: number,
): AsyncGenerator<RawRecord> {
  let depth = 0;
  let inString = false;
  let escaped = false;
  let line = 1;
  let recordLine = 1;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let recordOpen = false;

  for await (const chunk of chunks) {
    let start = recordOpen ? 0 : -1;
    let nextBackslash = chunk.indexOf(backslash);
    const length = chunk.length;
    for (let i = 0; i < length; i++) {
      if (escaped) {
        escaped = false;
        continue;
      }
      if (inString) {
        // Jump to the next quote, stopping first at a backslash, whose next byte is skipped.
        if (nextBackslash !== -1 && nextBackslash < i) nextBackslash = chunk.indexOf(backslash, i);
        const nextQuote = chunk.indexOf(quote, i);
        if (nextBackslash !== -1 && (nextQuote === -1 || nextBackslash < nextQuote)) {
          i = nextBackslash;
          escaped = true;
          continue;
        }
        if (nextQuote === -1) break;
        i = nextQuote;
        inString = false;
        continue;
      }
      const byte = chunk[i];
      if (byte === quote) inString = true;
      else if (byte === newline) line += 1;
      else if (byte === 0x7b || byte === 0x5b) {
        if (depth === elementDepth && !recordOpen) {
          recordOpen = true;
          start = i;
          recordLine = line;
        }
        depth += 1;
      } else if (byte === 0x7d || byte === 0x5d) {
        depth -= 1;
        if (depth === elementDepth && recordOpen) {
          const piece = chunk.subarray(start, i + 1);
          const bytes = pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
          pending = [];
          pendingBytes = 0;
          recordOpen = false;
          yield { text: bytes.toString("utf8"), location: { file, line: recordLine } };
        } else if (depth < elementDepth - 1) {
          return;
        }
      }
    }
    if (recordOpen) {
      pendingBytes += length - start;
      if (pendingBytes > maxRecordBytes) {
        yield { error: `record longer than ${maxRecordBytes} bytes`, location: { file, line: recordLine } };
        return;
      }
      pending.push(chunk.subarray(start));
    }
  }
  if (recordOpen || depth > 0)
    yield { error: "input ends inside a record: truncated JSON", location: { file, line: recordLine } };
}
