import { sql } from "kysely";
import type { BrokerContext } from "../../broker/context.js";
import { dataString, scanEvents } from "./scan.js";

/** A dynamic database role created for a task, with the state of its cleanup. */
export interface LeaseSummary {
  lease_id: string;
  system: string | null;
  template: string | null;
  role: string | null;
  task_id: string | null;
  /** `active`, `cleanup_pending` (the role still exists and its cleanup is retried) or `cleaned`. */
  state: string;
  /** When the role's password stops working (its `VALID UNTIL`), in milliseconds. */
  valid_until_ms: number | null;
  /** How many times the task's credential for this role was fetched (`credential.fetched` events). */
  credential_fetches: number;
  /** The source of the state: the `leases` table, or the lease events for a lease the table does not have. */
  source: "table" | "events";
}

interface LeaseRow {
  id: string;
  system: string;
  template: string;
  role: string;
  task_id: string;
  state: string;
  valid_until: number | string;
}

/**
 * Returns the leases of the given tasks. The `leases` table is read when the store has it, and its
 * rows win. The lease events are replayed as well, so a store without the table (one from before
 * dynamic credentials existed), or a lease whose row is gone, is still listed with the state its
 * events give.
 */
export async function leasesOfTasks(
  context: BrokerContext,
  taskIds: readonly string[],
): Promise<LeaseSummary[]> {
  if (taskIds.length === 0) return [];
  const tables = await context.store.db.introspection.getTables();
  const fromTable = tables.some((table) => table.name === "leases")
    ? await leasesFromTable(context, taskIds)
    : [];
  const known = new Set(fromTable.map((lease) => lease.lease_id));
  const fromEvents = await leasesFromEvents(context, new Set(taskIds));
  const leases = [...fromTable, ...fromEvents.filter((lease) => !known.has(lease.lease_id))];
  await countFetches(context, leases, taskIds);
  return leases;
}

async function leasesFromTable(context: BrokerContext, taskIds: readonly string[]): Promise<LeaseSummary[]> {
  // The table belongs to the dynamic-credentials part of the store, which the typed schema here
  // does not import, so it is read with a raw query over columns both dialects share.
  const result = await sql<LeaseRow>`
    select id, system, template, role, task_id, state, valid_until
    from leases
    where task_id in (${sql.join([...taskIds])})
    order by created_at`.execute(context.store.db);
  return result.rows.map((row) => ({
    lease_id: row.id,
    system: row.system,
    template: row.template,
    role: row.role,
    task_id: row.task_id,
    state: row.state,
    valid_until_ms: row.valid_until === null ? null : Number(row.valid_until),
    credential_fetches: 0,
    source: "table",
  }));
}

const leaseEventKinds = ["lease.created", "lease.cleaned", "lease.cleanup_failed"] as const;

async function leasesFromEvents(
  context: BrokerContext,
  taskIds: ReadonlySet<string>,
): Promise<LeaseSummary[]> {
  const leases = new Map<string, LeaseSummary>();
  await scanEvents(context.store, { kinds: leaseEventKinds }, (event) => {
    const leaseId = dataString(event, "lease_id");
    if (leaseId === undefined) return;
    const taskId = event.task_id ?? dataString(event, "task_id") ?? null;
    const known = leases.get(leaseId);
    if (event.kind === "lease.created") {
      if (taskId === null || !taskIds.has(taskId)) return;
      const validUntil = event.data.valid_until;
      leases.set(leaseId, {
        lease_id: leaseId,
        system: dataString(event, "system") ?? null,
        template: dataString(event, "template") ?? null,
        role: dataString(event, "role") ?? null,
        task_id: taskId,
        state: "active",
        valid_until_ms: typeof validUntil === "number" ? validUntil : null,
        credential_fetches: 0,
        source: "events",
      });
      return;
    }
    if (known === undefined) return;
    known.state = event.kind === "lease.cleaned" ? "cleaned" : "cleanup_pending";
  });
  return [...leases.values()];
}

/** Counts the `credential.fetched` events of the tasks against each lease they name. */
async function countFetches(
  context: BrokerContext,
  leases: LeaseSummary[],
  taskIds: readonly string[],
): Promise<void> {
  if (leases.length === 0) return;
  const byId = new Map(leases.map((lease) => [lease.lease_id, lease]));
  await scanEvents(context.store, { kinds: ["credential.fetched"], taskIds }, (event) => {
    const lease = byId.get(dataString(event, "lease_id") ?? "");
    if (lease !== undefined) lease.credential_fetches += 1;
  });
}
