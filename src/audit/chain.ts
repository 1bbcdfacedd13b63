import { hash } from "node:crypto";
import { canonicalJsonText } from "./canonical-json.js";

/** The version of the hashed form below; a change to what is hashed gets a new version. */
export const chainVersion = 1;

/** The `prev_hash` of the first event. */
export const genesisHash = "0".repeat(64);

/** One audit event as it is hashed and stored. `time` is in milliseconds since the Unix epoch. */
export interface AuditRecord {
  seq: number;
  time: number;
  kind: string;
  actor: string;
  task_id: string | null;
  jti: string | null;
  data: Record<string, unknown>;
  prev_hash: string;
  hash: string;
  chain_version: number;
}

/** Returns the RFC 8785 canonical JSON of a value; throws for a value JSON cannot represent. */
export function canonicalJson(value: unknown): string {
  try {
    return canonicalJsonText(value);
  } catch (error) {
    throw new TypeError(`audit event cannot be canonicalized: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Computes an event's hash: SHA-256, in lowercase hex, over the RFC 8785 canonical JSON of every
 * field but the hash itself. The previous event's hash is among them, which chains the events.
 */
export function hashRecord(record: Omit<AuditRecord, "hash">): string {
  return hashRecordWithData(record, canonicalJson(record.data));
}

/**
 * Computes the same hash as `hashRecord` from `dataText`, the canonical JSON of `record.data`, which
 * the audit log also stores, so that `data` is serialised once per event. The other members are
 * strings, integers or null, and their keys are fixed, so the canonical object is written out in
 * RFC 8785 key order (UTF-16 code units) with `JSON.stringify` for each value, which serialises
 * strings and integers exactly as RFC 8785 does.
 */
export function hashRecordWithData(record: Omit<AuditRecord, "hash" | "data">, dataText: string): string {
  const canonical =
    `{"actor":${JSON.stringify(record.actor)},"chain_version":${integerText(record.chain_version)},` +
    `"data":${dataText},"jti":${JSON.stringify(record.jti)},"kind":${JSON.stringify(record.kind)},` +
    `"prev_hash":${JSON.stringify(record.prev_hash)},"seq":${integerText(record.seq)},` +
    `"task_id":${JSON.stringify(record.task_id)},"time":${integerText(record.time)}}`;
  return hash("sha256", canonical, "hex");
}

/** Writes a safe integer; anything else has no single canonical form here and is refused. */
function integerText(value: number): string {
  if (!Number.isSafeInteger(value)) throw new TypeError(`audit field ${value} is not a safe integer`);
  return String(value);
}
