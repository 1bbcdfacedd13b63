import type { Transaction } from "kysely";
import type { BrokerContext } from "../broker/context.js";
import type { Database, LeasesTable } from "../store/schema.js";

export type LeaseState = "active" | "cleanup_pending" | "cleaned";

/**
 * One task's login role on one system. It is `active` from task start, `cleanup_pending` from task end
 * until `DROP ROLE` succeeded on the server, and `cleaned` after. Its password is never part of it.
 */
export interface Lease {
  id: string;
  system: string;
  template: string;
  role: string;
  task_id: string;
  state: LeaseState;
  /** The role's `VALID UNTIL`, in ms since the epoch: the task's deadline. */
  valid_until: number;
  /** Failed cleanup attempts so far. */
  attempts: number;
  last_error: string | null;
  /** When the next cleanup attempt is due, in ms since the epoch. */
  next_attempt_at: number;
  created_at: number;
  cleaned_at: number | null;
}

const leaseColumns = [
  "id",
  "system",
  "template",
  "role",
  "task_id",
  "state",
  "valid_until",
  "attempts",
  "last_error",
  "next_attempt_at",
  "created_at",
  "cleaned_at",
] as const satisfies readonly (keyof LeasesTable)[];

/** Lists leases, newest first, optionally only those in `state` or of one task. */
export async function listLeases(
  context: Pick<BrokerContext, "store">,
  filter: { state?: string; task_id?: string } = {},
): Promise<Lease[]> {
  let query = context.store.db.selectFrom("leases").select(leaseColumns);
  if (filter.state !== undefined) query = query.where("state", "=", filter.state);
  if (filter.task_id !== undefined) query = query.where("task_id", "=", filter.task_id);
  const rows = await query.orderBy("created_at", "desc").execute();
  return rows.map((row) => ({ ...row, state: row.state as LeaseState }));
}

export async function getLease(
  context: Pick<BrokerContext, "store">,
  id: string,
): Promise<Lease | undefined> {
  const row = await context.store.db
    .selectFrom("leases")
    .select(leaseColumns)
    .where("id", "=", id)
    .executeTakeFirst();
  return row === undefined ? undefined : { ...row, state: row.state as LeaseState };
}

/**
 * Marks the active leases of ended tasks for cleanup, due at once, within the transaction that ends
 * the tasks, so that no ended task keeps a lease that nothing will clean. Returns how many it marked.
 */
export async function markLeasesForCleanup(
  trx: Transaction<Database>,
  taskIds: readonly string[],
  nowMs: number,
): Promise<number> {
  if (taskIds.length === 0) return 0;
  const result = await trx
    .updateTable("leases")
    .set({ state: "cleanup_pending", next_attempt_at: nowMs })
    .where("task_id", "in", taskIds)
    .where("state", "=", "active")
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}
