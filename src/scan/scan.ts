import { UsageAggregator } from "./aggregate.js";
import { analyse } from "./analyse/index.js";
import { FormatDetector, parsers } from "./detect.js";
import { fingerprint, loadScanKey } from "./fingerprint.js";
import type { Finding, Location, LogFormat, Malformed } from "./model.js";
import { listInputFiles, readBytes } from "./sources/input.js";
import type { FieldMapping, LogRecord, ParseContext } from "./sources/parser.js";
import { splitRecords, type RawRecord } from "./sources/records.js";

/** Malformed records listed individually; the rest are only counted. */
export const maxListedMalformed = 1000;

/** The default for `--stale-after`: 90 days, the usual key-rotation period. */
export const defaultStaleAfterMs = 90 * 86_400_000;

export interface ScanOptions {
  /** Files, folders or `-` for standard input. */
  inputs: string[];
  /** Extra records to scan, such as writ's audit events read from its store. */
  records?: AsyncIterable<RawRecord>;
  format?: LogFormat;
  mapping?: FieldMapping;
  /** The scan key file, read (or created) only when a secret-like value needs a fingerprint. */
  keyFile: string;
  staleAfterMs?: number;
  /** Called with the raw bytes read so far and the total size of the named files. */
  onProgress?: (bytesRead: number) => void;
}

export interface ScanResult {
  findings: Finding[];
  aggregate: UsageAggregator;
  files: string[];
  records: number;
  malformed: Malformed[];
  malformedCount: number;
  bytesRead: number;
}

/**
 * Reads every input as a stream, normalises each record into a usage event, folds it into the
 * aggregate and then runs the analyses. Malformed records are counted with their location and the
 * scan goes on.
 */
export async function scan(options: ScanOptions): Promise<ScanResult> {
  const files = await listInputFiles(options.inputs);
  const aggregate = new UsageAggregator();
  const detector = new FormatDetector();
  const malformed: Malformed[] = [];
  let malformedCount = 0;
  let records = 0;
  let bytesRead = 0;

  // Only generic JSON holds secret-like values, so only then is the key file read or created.
  const key = options.format === "generic" ? await loadScanKey(options.keyFile) : undefined;
  const context: ParseContext = {
    fingerprint(secret) {
      if (key === undefined) throw new Error("scan key not loaded");
      return fingerprint(key, secret);
    },
  };
  if (options.mapping !== undefined) context.mapping = options.mapping;

  const report = (location: Location, reason: string): void => {
    malformedCount += 1;
    if (malformed.length < maxListedMalformed) malformed.push({ location, reason });
  };

  const consume = (raw: RawRecord): void => {
    records += 1;
    if ("error" in raw) return report(raw.location, raw.error);
    let record: unknown;
    try {
      record = JSON.parse(raw.text);
    } catch (error) {
      return report(raw.location, `invalid JSON: ${(error as Error).message}`);
    }
    if (record === null || typeof record !== "object" || Array.isArray(record))
      return report(raw.location, "not a JSON object");
    const parser =
      options.format !== undefined ? parsers[options.format] : detector.detect(record as LogRecord);
    if (parser === undefined)
      return report(
        raw.location,
        "unrecognised record: not CloudTrail, Kubernetes audit, GitHub audit or writ audit",
      );
    const event = parser.normalise(record as LogRecord, raw.location, context);
    if (typeof event === "string") return report(raw.location, event);
    if (event !== undefined) aggregate.add(event);
  };

  for (const file of files) {
    const chunks = readBytes(file, (bytes) => {
      bytesRead += bytes;
      options.onProgress?.(bytesRead);
    });
    try {
      for await (const raw of splitRecords(chunks, file)) consume(raw);
    } catch (error) {
      report({ file, line: 0 }, `read failed: ${(error as Error).message}`);
    }
  }
  if (options.records !== undefined) for await (const raw of options.records) consume(raw);

  const findings = analyse(aggregate, { staleAfterMs: options.staleAfterMs ?? defaultStaleAfterMs });
  return { findings, aggregate, files, records, malformed, malformedCount, bytesRead };
}
