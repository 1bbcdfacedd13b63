import { randomUUID } from "node:crypto";
import type { Transaction } from "kysely";
import type { BrokerContext } from "../broker/context.js";
import { WritError, isWritError } from "../errors/writ-error.js";
import type { Database } from "../store/schema.js";
import { readAccountPassword, requireAccount, type Account } from "./accounts.js";
import { resolveHolder, type Holder } from "./holders.js";
import { rotateIfDue, type RotationReason } from "./rotation.js";

/** A checkout's length when the request names none, in seconds. */
export const defaultCheckoutSeconds = 15 * 60;
/** The maximum checkout length, in seconds. */
export const maxCheckoutSeconds = 24 * 3600;
/** The maximum time one checkout request waits for an account that is checked out, in seconds. */
export const maxCheckoutWaitSeconds = 15 * 60;
/** Interval between two looks at a held account while a checkout waits, in milliseconds. */
const waitPollMs = 250;

/** The account's current password and the terms of the checkout, as its holder receives them. */
export interface Checkout {
  checkout_id: string;
  account: string;
  system: string;
  role: string;
  holder: Holder;
  /** When the checkout ends unless returned first, in ms since the epoch. */
  expires_at: number;
  /** Never log it. */
  password: string;
}

export interface CheckoutRequest {
  task?: string;
  human?: string;
  /** Checkout length in seconds; capped by a task's deadline. */
  duration_s?: number;
  /** How long to wait for a held account, in seconds; 0 refuses at once. */
  wait_s?: number;
}

/** Raised inside the claiming transaction when the account is held, to roll it back. */
class AccountHeld extends Error {}

/**
 * Gives one holder the account's current password. A second checkout while one is open is refused
 * with `conflict`, or, with `wait_s`, retried until the account is returned, expires, or the wait
 * ends. An expired checkout is closed (and the password rotated) before the next one starts.
 */
export async function checkOutAccount(
  context: BrokerContext,
  actor: string,
  name: string,
  request: CheckoutRequest,
): Promise<Checkout> {
  await requireAccount(context, name);
  const durationS = request.duration_s ?? defaultCheckoutSeconds;
  if (!Number.isInteger(durationS) || durationS < 1 || durationS > maxCheckoutSeconds) {
    throw new WritError(
      "invalid_request",
      `invalid checkout length ${durationS} s: use 1 s to ${maxCheckoutSeconds} s`,
    );
  }
  const waitS = request.wait_s ?? 0;
  if (!Number.isInteger(waitS) || waitS < 0 || waitS > maxCheckoutWaitSeconds) {
    throw new WritError("invalid_request", `invalid wait ${waitS} s: use 0 s to ${maxCheckoutWaitSeconds} s`);
  }
  // The wait is bounded in real time, because an injected clock may stand still.
  const waitUntil = Date.now() + waitS * 1000;

  for (;;) {
    // Resolved on every attempt, so that a task that ends during the wait gets nothing.
    const holder = await resolveHolder(context, request);
    await settleAccount(context, name);
    const nowMs = context.clock.nowMs();
    const checkoutId = randomUUID();
    const expiresAt = Math.min(nowMs + durationS * 1000, holder.notAfterMs);
    const account = await requireAccount(context, name);
    try {
      await context.audit.append(
        {
          kind: "account.checked_out",
          actor,
          task_id: holder.holder.kind === "task" ? holder.holder.task_id : null,
          data: {
            account: account.name,
            system: account.system,
            role: account.role,
            holder: holder.holder,
            expires_at: expiresAt,
          },
        },
        async (trx) => {
          const claimed = await trx
            .updateTable("accounts")
            .set({ checkout_id: checkoutId })
            .where("name", "=", name)
            .where("checkout_id", "is", null)
            .where("rotation_due", "is", null)
            .executeTakeFirst();
          if (Number(claimed.numUpdatedRows) !== 1) throw new AccountHeld();
          await trx
            .insertInto("account_checkouts")
            .values({
              id: checkoutId,
              account: name,
              holder_kind: holder.holder.kind,
              holder_id: holder.id,
              holder: JSON.stringify(holder.holder),
              checked_out_at: nowMs,
              expires_at: expiresAt,
              checked_in_at: null,
            })
            .execute();
        },
      );
      return {
        checkout_id: checkoutId,
        account: account.name,
        system: account.system,
        role: account.role,
        holder: holder.holder,
        expires_at: expiresAt,
        password: await readAccountPassword(context, name),
      };
    } catch (error) {
      if (!(error instanceof AccountHeld)) throw error;
    }
    if (Date.now() >= waitUntil) {
      const current = await requireAccount(context, name);
      throw new WritError(
        "conflict",
        current.rotation_due === null
          ? `account "${name}" is checked out; retry after it is checked in or expires, or wait with --wait`
          : `account "${name}" awaits a password rotation that failed; retry later`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, waitPollMs));
  }
}

/** Returns a checked-out account: the checkout closes and the password is rotated at once. */
export async function checkInAccount(
  context: BrokerContext,
  actor: string,
  name: string,
  expectedTaskId?: string,
): Promise<{ account: string; holder: Holder; rotated: boolean }> {
  const account = await requireAccount(context, name);
  const open = await openCheckout(context, account);
  if (open === undefined) throw new WritError("conflict", `account "${name}" is not checked out`);
  const holder = JSON.parse(open.holder) as Holder;
  // An agent may return only the checkout its own task holds.
  if (expectedTaskId !== undefined && (holder.kind !== "task" || holder.task_id !== expectedTaskId)) {
    throw new WritError("access_denied", `account "${name}" is not checked out by this task`);
  }
  await context.audit.append(
    {
      kind: "account.checked_in",
      actor,
      task_id: holder.kind === "task" ? holder.task_id : null,
      data: { account: name, holder },
    },
    async (trx) => {
      await trx
        .updateTable("account_checkouts")
        .set({ checked_in_at: context.clock.nowMs() })
        .where("id", "=", open.id)
        .execute();
      await releaseWithin(trx, name, open.id, "checkin");
    },
  );
  const rotated = await tryRotation(context, name);
  return { account: name, holder, rotated };
}

/**
 * Brings one account up to date before a checkout: closes a checkout that expired or whose task
 * ended (rotating the password), and retries a rotation still owed.
 */
export async function settleAccount(context: BrokerContext, name: string): Promise<void> {
  const account = await requireAccount(context, name);
  const open = await openCheckout(context, account);
  if (open !== undefined && (await hasLapsed(context, open))) {
    const holder = JSON.parse(open.holder) as Holder;
    await context.audit.append(
      {
        kind: "account.expired",
        actor: "writ",
        task_id: holder.kind === "task" ? holder.task_id : null,
        data: { account: name, holder },
      },
      (trx) => releaseWithin(trx, name, open.id, "expiry"),
    );
  }
  const current = await requireAccount(context, name);
  if (current.checkout_id === null && current.rotation_due !== null) await tryRotation(context, name);
}

async function openCheckout(context: BrokerContext, account: Account) {
  if (account.checkout_id === null) return undefined;
  return context.store.db
    .selectFrom("account_checkouts")
    .selectAll()
    .where("id", "=", account.checkout_id)
    .executeTakeFirst();
}

/** Returns whether a checkout has lapsed: it expired, or the task that has it is no longer active. */
async function hasLapsed(
  context: BrokerContext,
  checkout: { expires_at: number; holder_kind: string; holder_id: string },
): Promise<boolean> {
  if (checkout.expires_at <= context.clock.nowMs()) return true;
  if (checkout.holder_kind !== "task") return false;
  const task = await context.store.db
    .selectFrom("tasks")
    .select("status")
    .where("id", "=", checkout.holder_id)
    .executeTakeFirst();
  return task?.status !== "active";
}

/** Frees the account and records that its password must rotate before the next checkout. */
async function releaseWithin(
  trx: Transaction<Database>,
  name: string,
  checkoutId: string,
  reason: RotationReason,
): Promise<void> {
  await trx
    .updateTable("accounts")
    .set({ checkout_id: null, rotation_due: reason })
    .where("name", "=", name)
    .where("checkout_id", "=", checkoutId)
    .execute();
}

/** Rotates now; on failure logs it and leaves `rotation_due` for the upkeep to retry. */
async function tryRotation(context: BrokerContext, name: string): Promise<boolean> {
  try {
    return await rotateIfDue(context, name);
  } catch (error) {
    context.log.warn(
      { err: error, account: name, detail: isWritError(error) ? error.detail : undefined },
      "shared account rotation failed; retrying later",
    );
    return false;
  }
}
