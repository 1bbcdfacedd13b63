import { createHash } from "node:crypto";
import canonicalizeModule from "canonicalize";

// The package is CommonJS exporting the function itself, while its typings declare an ES default export,
// so under NodeNext resolution the default import is the function at run time but not to the compiler.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

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

/**
 * Computes an event's hash: SHA-256, in lowercase hex, over the RFC 8785 canonical JSON of every
 * field but the hash itself. The previous event's hash is among them, which chains the events.
 */
export function hashRecord(record: Omit<AuditRecord, "hash">): string {
  const hashed = {
    chain_version: record.chain_version,
    seq: record.seq,
    time: record.time,
    kind: record.kind,
    actor: record.actor,
    task_id: record.task_id,
    jti: record.jti,
    data: record.data,
    prev_hash: record.prev_hash,
  };
  const canonical = canonicalize(hashed);
  if (canonical === undefined) throw new TypeError("audit event cannot be canonicalized");
  return createHash("sha256").update(canonical).digest("hex");
}
