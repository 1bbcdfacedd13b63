import type { BrokerContext } from "../broker/context.js";
import { sendAlert } from "../alerts/alerts.js";
import { isWritError } from "../errors/writ-error.js";
import { logFields } from "../log/fields.js";
import { dropLeaseRole } from "./cleanup.js";
import { getLease, type Lease } from "./leases.js";

/** Delay before the second cleanup attempt, in milliseconds; it doubles per failure up to the cap. */
export const cleanupRetryInitialMs = 1000;
/** The maximum delay between two cleanup attempts, in milliseconds. Cleanups are never abandoned. */
export const cleanupRetryMaxMs = 5 * 60_000;
/** After this many consecutive failures of one lease's cleanup, an alert is sent (once). */
export const cleanupAlertAfterAttempts = 5;
/**
 * How long a claimed cleanup attempt keeps other workers away, in milliseconds. It exceeds the
 * connect and statement timeouts of one attempt, so a crashed worker's claim lapses on its own.
 */
const claimMs = 60_000;

/** Returns the delay after `attempts` consecutive failures: 1 s, 2 s, 4 s, … up to the cap. */
export function cleanupBackoffMs(attempts: number): number {
  return Math.min(cleanupRetryInitialMs * 2 ** Math.max(0, attempts - 1), cleanupRetryMaxMs);
}

/**
 * Maximum number of cleanups attempted at once. An attempt against an unreachable server waits for its
 * connect timeout, so attempts run side by side and one stuck server does not delay the others.
 */
const parallelCleanups = 8;

/**
 * How long ending a task waits for its leases' first cleanup attempt, in milliseconds. A reachable
 * server drops the roles well within it, so the roles are gone when the end returns. An unreachable
 * one cannot hold up the caller (or the broker's sweep) for longer, and the attempt goes on behind.
 */
export const inlineCleanupWaitMs = 2000;

/**
 * Attempts at once the cleanup of the ended tasks' leases that `markLeasesForCleanup` marked, and
 * waits for it up to `inlineCleanupWaitMs`. It never rejects, because `attemptCleanup` records a
 * failed attempt, which stays pending for the upkeep to retry with backoff.
 */
export async function cleanUpTaskLeases(context: BrokerContext, taskIds: readonly string[]): Promise<void> {
  if (taskIds.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, inlineCleanupWaitMs);
    timer.unref();
  });
  await Promise.race([attemptTaskLeases(context, taskIds), waited]);
  clearTimeout(timer);
}

async function attemptTaskLeases(context: BrokerContext, taskIds: readonly string[]): Promise<void> {
  const pending = await context.store.db
    .selectFrom("leases")
    .select("id")
    .where("task_id", "in", taskIds)
    .where("state", "=", "cleanup_pending")
    .execute()
    .catch((error: unknown) => {
      context.log.error({ err: error, [logFields.taskId]: taskIds }, "reading leases to clean failed");
      return [];
    });
  await forEachAtMost(pending, parallelCleanups, (row) => attemptCleanup(context, row.id));
}

/**
 * Finds and attempts every cleanup that is due, and first marks for cleanup the active leases of
 * tasks that are no longer active. Run at broker start, this finishes what a crash interrupted.
 */
export async function runDueCleanups(context: BrokerContext): Promise<void> {
  const nowMs = context.clock.nowMs();
  // Read first, so that an idle pass writes nothing.
  const orphaned = await context.store.db
    .selectFrom("leases")
    .innerJoin("tasks", "tasks.id", "leases.task_id")
    .select("leases.id")
    .where("leases.state", "=", "active")
    .where("tasks.status", "!=", "active")
    .execute();
  if (orphaned.length > 0) {
    await context.queue.write(async (trx) => {
      await trx
        .updateTable("leases")
        .set({ state: "cleanup_pending", next_attempt_at: nowMs })
        .where(
          "id",
          "in",
          orphaned.map((row) => row.id),
        )
        .where("state", "=", "active")
        .execute();
    });
  }
  const due = await context.store.db
    .selectFrom("leases")
    .select("id")
    .where("state", "=", "cleanup_pending")
    .where("next_attempt_at", "<=", nowMs)
    .orderBy("next_attempt_at")
    .execute();
  await forEachAtMost(due, parallelCleanups, (row) => attemptCleanup(context, row.id));
}

/** Runs `work` on every item, at most `limit` at a time, in the items' order. */
async function forEachAtMost<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/** Claims one pending lease, tries to drop its role and records the outcome. It catches every error. */
async function attemptCleanup(context: BrokerContext, leaseId: string): Promise<void> {
  let lease: Lease | undefined;
  try {
    lease = await claim(context, leaseId);
  } catch (error) {
    context.log.error({ err: error, lease_id: leaseId }, "claiming a lease cleanup failed");
    return;
  }
  if (lease === undefined) return;

  try {
    await dropLeaseRole(context, lease);
  } catch (error) {
    await recordFailure(context, lease, error);
    return;
  }
  const cleaned = lease;
  await context.audit
    .append(
      {
        kind: "lease.cleaned",
        actor: "writ",
        task_id: cleaned.task_id,
        data: { lease_id: cleaned.id, system: cleaned.system, role: cleaned.role, task_id: cleaned.task_id },
      },
      async (trx) => {
        await trx
          .updateTable("leases")
          .set({
            state: "cleaned",
            cleaned_at: context.clock.nowMs(),
            last_error: null,
            wrapped_key: null,
            ciphertext: null,
          })
          .where("id", "=", cleaned.id)
          .execute();
      },
    )
    .then(
      () => context.log.info({ lease_id: cleaned.id, [logFields.taskId]: cleaned.task_id }, "lease cleaned"),
      (error: unknown) =>
        // The role is gone; the next attempt finds no role and records the cleanup again.
        context.log.error({ err: error, lease_id: cleaned.id }, "recording a finished lease cleanup failed"),
    );
}

/** Takes the lease for one attempt unless another worker holds it or it is not due. */
async function claim(context: BrokerContext, leaseId: string): Promise<Lease | undefined> {
  const nowMs = context.clock.nowMs();
  const claimed = await context.queue.write(async (trx) => {
    const result = await trx
      .updateTable("leases")
      .set({ next_attempt_at: nowMs + claimMs })
      .where("id", "=", leaseId)
      .where("state", "=", "cleanup_pending")
      .where("next_attempt_at", "<=", nowMs)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  });
  return claimed ? getLease(context, leaseId) : undefined;
}

async function recordFailure(context: BrokerContext, lease: Lease, error: unknown): Promise<void> {
  const attempt = lease.attempts + 1;
  const message = isWritError(error) ? (error.detail ?? error.description) : (error as Error).message;
  const delayMs = cleanupBackoffMs(attempt);
  context.log.warn(
    { err: error, lease_id: lease.id, [logFields.taskId]: lease.task_id, attempt, retry_in_ms: delayMs },
    "lease cleanup failed; retrying",
  );
  try {
    await context.audit.append(
      {
        kind: "lease.cleanup_failed",
        actor: "writ",
        task_id: lease.task_id,
        data: { lease_id: lease.id, system: lease.system, role: lease.role, attempt, error: message },
      },
      async (trx) => {
        await trx
          .updateTable("leases")
          .set({ attempts: attempt, last_error: message, next_attempt_at: context.clock.nowMs() + delayMs })
          .where("id", "=", lease.id)
          .execute();
      },
    );
  } catch (recordError) {
    // The claim lapses on its own, so the cleanup is retried even when this record is lost.
    context.log.error({ err: recordError, lease_id: lease.id }, "recording a failed lease cleanup failed");
  }
  if (attempt === cleanupAlertAfterAttempts) {
    sendAlert(context, "lease.cleanup_failing", {
      lease_id: lease.id,
      system: lease.system,
      role: lease.role,
      task_id: lease.task_id,
      attempts: attempt,
      error: message,
    });
  }
}
