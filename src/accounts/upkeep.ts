import type { BrokerContext } from "../broker/context.js";
import { cleanupBackoffMs } from "../leases/worker.js";
import { getAccount, listAccounts, type Account } from "./accounts.js";
import { settleAccount } from "./checkout.js";
import { rotateIfDue } from "./rotation.js";

/** Per broker: consecutive failures and the next attempt time of each account whose upkeep failed. */
const failures = new WeakMap<BrokerContext, Map<string, { count: number; nextAtMs: number }>>();

/**
 * Closes lapsed checkouts (expired, or held by a task that ended) and rotates their passwords,
 * retries rotations still owed, and rotates unused accounts whose scheduled interval has passed.
 * An account whose upkeep fails is retried with the same capped backoff as lease cleanups.
 */
export async function runAccountUpkeep(context: BrokerContext): Promise<void> {
  let backoff = failures.get(context);
  if (backoff === undefined) {
    backoff = new Map();
    failures.set(context, backoff);
  }
  const nowMs = context.clock.nowMs();
  for (const account of await listAccounts(context)) {
    const failed = backoff.get(account.name);
    if (failed !== undefined && failed.nextAtMs > nowMs) continue;
    try {
      await settleAccount(context, account.name);
      const settled = await getAccount(context, account.name);
      if (settled !== undefined && isScheduleDue(settled, nowMs)) {
        await markScheduledRotation(context, settled, nowMs);
        await rotateIfDue(context, settled.name);
      }
      const after = await getAccount(context, account.name);
      if (after !== undefined && after.rotation_due !== null) throw new Error("a rotation is still due");
      backoff.delete(account.name);
    } catch (error) {
      const count = (failed?.count ?? 0) + 1;
      backoff.set(account.name, { count, nextAtMs: nowMs + cleanupBackoffMs(count) });
      context.log.warn({ err: error, account: account.name, attempt: count }, "shared account upkeep failed");
    }
  }
}

/** Returns whether a free account with a rotation interval has gone unrotated for that long. */
function isScheduleDue(account: Account, nowMs: number): boolean {
  const every = account.rotate_every_s;
  return (
    every !== null &&
    account.checkout_id === null &&
    account.rotation_due === null &&
    account.rotated_at + every * 1000 <= nowMs
  );
}

/** Records a scheduled rotation as due, unless a checkout or another rotation came first. */
async function markScheduledRotation(context: BrokerContext, account: Account, nowMs: number): Promise<void> {
  await context.queue.write(async (trx) => {
    await trx
      .updateTable("accounts")
      .set({ rotation_due: "schedule" })
      .where("name", "=", account.name)
      .where("checkout_id", "is", null)
      .where("rotation_due", "is", null)
      .where("rotated_at", "<=", nowMs - (account.rotate_every_s ?? 0) * 1000)
      .execute();
  });
}
