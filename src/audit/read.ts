import type { AuditEventsTable } from "../store/schema.js";
import type { Store } from "../store/store.js";
import type { AuditRecord } from "./chain.js";

/** Reads audit events in sequence order, `limit` at most, after sequence number `after`. */
export async function readAuditEvents(
  store: Store,
  options: { after?: number; limit?: number; taskId?: string } = {},
): Promise<AuditRecord[]> {
  let query = store.db
    .selectFrom("audit_events")
    .selectAll()
    .where("seq", ">", options.after ?? 0)
    .orderBy("seq");
  if (options.taskId !== undefined) query = query.where("task_id", "=", options.taskId);
  if (options.limit !== undefined) query = query.limit(options.limit);
  const rows = await query.execute();
  return rows.map(fromAuditRow);
}

export function fromAuditRow(row: AuditEventsTable): AuditRecord {
  return { ...row, data: JSON.parse(row.data) as Record<string, unknown> };
}

/** Reads the chain's head row: the sequence number and hash of the newest event, if any. */
export async function readStoredHead(store: Store): Promise<{ seq: number; hash: string } | undefined> {
  const row = await store.db
    .selectFrom("audit_head")
    .select(["seq", "hash"])
    .where("id", "=", 1)
    .executeTakeFirst();
  return row === undefined ? undefined : { seq: Number(row.seq), hash: row.hash };
}
