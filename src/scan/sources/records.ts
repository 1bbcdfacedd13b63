import type { Location } from "../model.js";

/** One record's JSON text and where it starts, or a line that could not be split out. */
export type RawRecord = { text: string; location: Location } | { error: string; location: Location };

/** Lines longer than this are reported as malformed instead of being buffered without bound. */
export const maxRecordBytes = 64 * 1024 * 1024;

const quote = 0x22;
const backslash = 0x5c;
const newline = 0x0a;

/** Roles of the bytes outside strings that the array splitter acts on. Every other byte is `other`. */
const other = 0;
const opening = 1;
const closing = 2;
const stringStart = 3;
const lineEnd = 4;

const byteRoles = new Uint8Array(256);
byteRoles[0x7b] = opening;
byteRoles[0x5b] = opening;
byteRoles[0x7d] = closing;
byteRoles[0x5d] = closing;
byteRoles[quote] = stringStart;
byteRoles[newline] = lineEnd;

/**
 * Returns the index of the quote that ends a string whose unread content starts at `from`, or -1 when
 * the string runs past the chunk. `from` must follow the opening quote or an escaped byte, so an odd
 * run of backslashes before a quote, counted back to `from`, escapes it. `Buffer.indexOf` finds each
 * quote in native code, which measured about twice as fast as a byte loop in JavaScript on CloudTrail,
 * where a string averages about ten bytes.
 */
function closingQuote(chunk: Buffer, from: number): number {
  for (let at = chunk.indexOf(quote, from); at !== -1; at = chunk.indexOf(quote, at + 1)) {
    let before = at - 1;
    while (before >= from && chunk[before] === backslash) before -= 1;
    if ((at - 1 - before) % 2 === 0) return at;
  }
  return -1;
}

/** Tells whether a chunk that ends inside a string ends on an unescaped backslash, counted back to `from`. */
function endsInEscape(chunk: Buffer, from: number): boolean {
  let before = chunk.length - 1;
  while (before >= from && chunk[before] === backslash) before -= 1;
  return (chunk.length - 1 - before) % 2 === 1;
}

/** Splits chunks into records as they arrive; `push` appends complete records to `out`. */
interface RecordSplitter {
  push(chunk: Buffer, out: RawRecord[]): void;
  end(out: RawRecord[]): void;
  /** True once the splitter ignores further input, after the top-level value or an oversize record. */
  readonly finished: boolean;
}

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

  const start = head.trimStart();
  const splitter: RecordSplitter = start.startsWith("[")
    ? new ArraySplitter(file, 1)
    : /^\{\s*"Records"\s*:\s*\[/.test(start)
      ? new ArraySplitter(file, 2)
      : new LineSplitter(file);

  // One array is reused for the records of every chunk, so a chunk costs no allocation of its own.
  const out: RawRecord[] = [];
  try {
    for (const chunk of buffered) {
      splitter.push(chunk, out);
      for (const record of out) yield record;
      out.length = 0;
      if (splitter.finished) return;
    }
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
      splitter.push(next.value, out);
      for (const record of out) yield record;
      out.length = 0;
      if (splitter.finished) return;
    }
    splitter.end(out);
    yield* out;
  } finally {
    // The splitter stops before the end of input after a complete `{"Records": [...]}` object, and
    // the reader must still close its file.
    await iterator.return?.(undefined);
  }
}

/**
 * Yields each non-blank line, found with `indexOf`. Only a line that spans chunks is copied before
 * decoding, and then once, with `Buffer.concat`.
 */
class LineSplitter implements RecordSplitter {
  readonly finished = false;
  private carry: Buffer[] = [];
  private carryBytes = 0;
  private line = 1;

  constructor(private readonly file: string) {}

  push(chunk: Buffer, out: RawRecord[]): void {
    let from = 0;
    for (let end = chunk.indexOf(newline); end !== -1; end = chunk.indexOf(newline, from)) {
      // A line that passed the limit was reported then, and its tail is dropped here.
      if (this.carryBytes < 0) this.carryBytes = 0;
      else if (this.carry.length === 0) this.emit(chunk.toString("utf8", from, end), out);
      else {
        this.carry.push(chunk.subarray(from, end));
        this.emit(Buffer.concat(this.carry).toString("utf8"), out);
        this.carry = [];
        this.carryBytes = 0;
      }
      this.line += 1;
      from = end + 1;
    }
    if (from < chunk.length) this.hold(chunk.subarray(from), out);
  }

  end(out: RawRecord[]): void {
    if (this.carryBytes < 0) return;
    this.emit(Buffer.concat(this.carry).toString("utf8"), out);
    this.carry = [];
  }

  private emit(text: string, out: RawRecord[]): void {
    const trimmed = text.trim();
    if (trimmed.length > 0) out.push({ text: trimmed, location: { file: this.file, line: this.line } });
  }

  /** Keeps the unfinished end of a chunk, or reports the line once it passes `maxRecordBytes`. */
  private hold(piece: Buffer, out: RawRecord[]): void {
    if (this.carryBytes < 0) return;
    this.carryBytes += piece.length;
    this.carry.push(piece);
    if (this.carryBytes > maxRecordBytes) {
      out.push({
        error: `line longer than ${maxRecordBytes} bytes`,
        location: { file: this.file, line: this.line },
      });
      this.carry = [];
      this.carryBytes = -Infinity;
    }
  }
}

/**
 * Yields the objects and arrays found at `elementDepth` (1 for a top-level array, 2 for the array
 * inside the `Records` object). Strings are skipped from quote to closing quote, and a backslash
 * escapes the byte after it, even across a chunk boundary, so brackets and quotes inside values do
 * not count. Newlines are counted outside strings only, which is exact
 * because a JSON string cannot hold a raw newline. Each record is decoded once, from the bytes of
 * its chunk, or from one `Buffer.concat` when it spans chunks.
 */
class ArraySplitter implements RecordSplitter {
  finished = false;
  private depth = 0;
  private inString = false;
  /** True when a chunk ended on a backslash inside a string, so the next chunk's first byte is escaped. */
  private escaped = false;
  private line = 1;
  private recordLine = 1;
  private recordOpen = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly file: string,
    private readonly elementDepth: number,
  ) {}

  push(chunk: Buffer, out: RawRecord[]): void {
    const length = chunk.length;
    if (this.finished || length === 0) return;
    const elementDepth = this.elementDepth;
    let depth = this.depth;
    let inString = this.inString;
    let line = this.line;
    let start = this.recordOpen ? 0 : -1;
    let i = this.escaped ? 1 : 0;
    this.escaped = false;

    while (i < length) {
      if (inString) {
        const end = closingQuote(chunk, i);
        if (end === -1) {
          this.escaped = endsInEscape(chunk, i);
          break;
        }
        inString = false;
        i = end + 1;
        continue;
      }

      const role = byteRoles[chunk[i] as number];
      if (role === other) {
        i += 1;
        continue;
      }
      if (role === stringStart) inString = true;
      else if (role === lineEnd) line += 1;
      else if (role === opening) {
        if (depth === elementDepth && start === -1) {
          start = i;
          this.recordOpen = true;
          this.recordLine = line;
        }
        depth += 1;
      } else {
        depth -= 1;
        if (depth === elementDepth && start !== -1) {
          out.push({
            text: this.decode(chunk, start, i + 1),
            location: { file: this.file, line: this.recordLine },
          });
          start = -1;
        } else if (depth < elementDepth - 1) {
          // The top-level value is complete, so whatever follows it is not read.
          this.finished = true;
          return;
        }
      }
      i += 1;
    }

    this.depth = depth;
    this.inString = inString;
    this.line = line;
    if (start !== -1) this.hold(chunk, start, out);
  }

  end(out: RawRecord[]): void {
    if (this.finished) return;
    if (this.recordOpen || this.depth > 0)
      out.push({
        error: "input ends inside a record: truncated JSON",
        location: { file: this.file, line: this.recordLine },
      });
  }

  /** Decodes bytes `start` to `end` of `chunk`, after the held start of the record if there is one. */
  private decode(chunk: Buffer, start: number, end: number): string {
    this.recordOpen = false;
    if (this.pending.length === 0) return chunk.toString("utf8", start, end);
    this.pending.push(chunk.subarray(start, end));
    const text = Buffer.concat(this.pending, this.pendingBytes + end - start).toString("utf8");
    this.pending = [];
    this.pendingBytes = 0;
    return text;
  }

  /** Keeps the start of a record that runs past the chunk, or reports it once it passes `maxRecordBytes`. */
  private hold(chunk: Buffer, start: number, out: RawRecord[]): void {
    this.pendingBytes += chunk.length - start;
    if (this.pendingBytes > maxRecordBytes) {
      out.push({
        error: `record longer than ${maxRecordBytes} bytes`,
        location: { file: this.file, line: this.recordLine },
      });
      this.pending = [];
      this.finished = true;
      return;
    }
    this.pending.push(start === 0 ? chunk : chunk.subarray(start));
  }
}
