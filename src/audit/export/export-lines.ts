import type { JSONWebKeySet } from "jose";
import { WritError } from "../../errors/writ-error.js";
import type { Store } from "../../store/store.js";
import type { AuditRecord } from "../chain.js";
import { readStoredCheckpoints } from "../checkpointer.js";
import type { ChainStart } from "../verify.js";
import { formatExportEvent, formatExportHeader } from "../export-file.js";
import { auditEventBatches, type FollowOptions } from "./follow.js";
import { toOcsfEvent } from "./ocsf.js";

/** `jsonl`: the stored events as hashed, after a header line; `ocsf`: one OCSF event per line. */
export const exportFormats = ["jsonl", "ocsf"] as const;
export type ExportFormat = (typeof exportFormats)[number];

export interface ExportOptions extends FollowOptions {
  format: ExportFormat;
  /** The public audit keys for the JSON-lines header, so the export verifies on its own. */
  auditJwks: JSONWebKeySet;
}

/**
 * Produces an export line by line, newline included. A JSON-lines export starts with the header of
 * the export file format: the audit JWKS, the stored checkpoints, and for a partial export the hash
 * of the event before its first line. Each further line is one stored event, so
 * `writ audit verify --file` checks the chain. An OCSF export has one OCSF event per line and no
 * header. Either way the lines follow the store in sequence order, and in follow mode new events
 * follow as they are committed.
 */
export async function* exportLines(store: Store, options: ExportOptions): AsyncGenerator<string> {
  const after = await exportStart(store, options.afterSeq);
  if (options.format === "jsonl") {
    const checkpoints = await readStoredCheckpoints(store);
    yield formatExportHeader({
      audit_jwks: options.auditJwks,
      checkpoints,
      ...(after === undefined ? {} : { after }),
    });
  }
  for await (const batch of auditEventBatches(store, options)) {
    const subjects = options.format === "ocsf" ? await taskSubjects(store, batch) : undefined;
    for (const record of batch) {
      // A stopped export ends at once rather than after the rest of its batch.
      if (options.signal?.aborted === true) return;
      yield subjects === undefined
        ? formatExportEvent(record)
        : `${JSON.stringify(toOcsfEvent(record, (id) => subjects.get(id)))}\n`;
    }
  }
}

/**
 * Returns the sequence number and hash of the event an export starts after, or undefined for an
 * export from the first event. Throws `invalid_request` when no event has that sequence number, so a
 * follower cannot resume at a point the store never reached.
 */
export async function exportStart(store: Store, afterSeq: number): Promise<ChainStart | undefined> {
  if (afterSeq === 0) return undefined;
  const before = await store.db
    .selectFrom("audit_events")
    .select(["seq", "hash"])
    .where("seq", "=", afterSeq)
    .executeTakeFirst();
  if (before === undefined) {
    throw new WritError(
      "invalid_request",
      `audit event ${afterSeq} not found: start after an existing sequence number`,
    );
  }
  return { seq: Number(before.seq), hash: before.hash };
}

/** Reads the subject (the root agent whose authority a task uses) of each task a batch names. */
async function taskSubjects(store: Store, batch: AuditRecord[]): Promise<Map<string, string>> {
  const ids = [...new Set(batch.map((record) => record.task_id).filter((id) => id !== null))];
  if (ids.length === 0) return new Map();
  const rows = await store.db
    .selectFrom("tasks")
    .leftJoin("agents", "agents.name", "tasks.agent_name")
    .select(["tasks.id", "tasks.subject", "agents.spiffe_id"])
    .where("tasks.id", "in", ids)
    .execute();
  const subjects = new Map<string, string>();
  for (const row of rows) {
    const subject = row.subject ?? row.spiffe_id;
    if (subject !== null) subjects.set(row.id, subject);
  }
  return subjects;
}
