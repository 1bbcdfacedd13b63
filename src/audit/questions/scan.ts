import type { Store } from "../../store/store.js";
import type { AuditRecord } from "../chain.js";
import { fromAuditRow } from "../read.js";
import type { TimeWindow } from "./time.js";

/** Events read from the store per query while scanning. */
const scanPageSize = 1000;

/** The range of a scan: events after a sequence number, within a window, of some kinds or tasks. */
export interface ScanRange extends TimeWindow {
  afterSeq?: number;
  kinds?: readonly string[];
  taskIds?: readonly string[];
}

/**
 * Visits audit events in sequence order, one page at a time, so that a long log is never held in
 * memory whole. The time, kind and task conditions run in SQL. `visit` receives each matching event and
 * returns false to stop the scan.
 */
export async function scanEvents(
  store: Store,
  range: ScanRange,
  visit: (event: AuditRecord) => boolean | void,
): Promise<void> {
  if (range.kinds?.length === 0 || range.taskIds?.length === 0) return;
  let after = range.afterSeq ?? 0;
  for (;;) {
    let query = store.db
      .selectFrom("audit_events")
      .selectAll()
      .where("seq", ">", after)
      .orderBy("seq")
      .limit(scanPageSize);
    if (range.sinceMs !== undefined) query = query.where("time", ">=", range.sinceMs);
    if (range.untilMs !== undefined) query = query.where("time", "<=", range.untilMs);
    if (range.kinds !== undefined) query = query.where("kind", "in", [...range.kinds]);
    if (range.taskIds !== undefined) query = query.where("task_id", "in", [...range.taskIds]);
    const rows = await query.execute();
    for (const row of rows) {
      if (visit(fromAuditRow(row)) === false) return;
    }
    const last = rows.at(-1);
    if (last === undefined || rows.length < scanPageSize) return;
    after = Number(last.seq);
  }
}

/** Returns a string member of an event's data, or undefined when it is missing or not a string. */
export function dataString(event: AuditRecord, name: string): string | undefined {
  const value = event.data[name];
  return typeof value === "string" ? value : undefined;
}

/** Returns a string-array member of an event's data, or an empty array. */
export function dataStrings(event: AuditRecord, name: string): string[] {
  const value = event.data[name];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : [];
}
