import type { Location, LogFormat, UsageEvent } from "../model.js";

/** A JSON object from a log, with every value still untrusted. */
export type LogRecord = Record<string, unknown>;

/** Which fields of a generic JSON record hold what, as dotted paths such as `auth.key_id`. */
export interface FieldMapping {
  credential: string;
  actor?: string;
  source?: string;
  user_agent?: string;
  time?: string;
  action?: string;
  environment?: string;
  host?: string;
}

export interface ParseContext {
  /** Names a secret-like value by its HMAC fingerprint; loads the scan key on first use. */
  fingerprint(secret: string): string;
  mapping?: FieldMapping;
}

/**
 * Turns one record of a known format into a usage event. `normalise` returns a string, the reason,
 * when the record is malformed, and undefined when it is valid but names no credential.
 */
export interface LogParser {
  format: LogFormat;
  matches(record: LogRecord): boolean;
  normalise(record: LogRecord, location: Location, context: ParseContext): UsageEvent | string | undefined;
}

/** Reads a dotted path, such as `userIdentity.accessKeyId`, from a record. */
export function field(record: unknown, path: string): unknown {
  let value: unknown = record;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** A non-empty string value, else undefined; numbers are turned into text. */
export function text(value: unknown): string | undefined {
  if (typeof value === "string") return value === "" ? undefined : value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}
