import type { BrokerContext } from "../broker/context.js";
import { seal } from "../secrets/envelope.js";
import { withSystem } from "../systems/connection.js";
import { generatePassword, scramSha256Verifier } from "../systems/scram.js";
import { identifier, literal, statement } from "../systems/sql-text.js";
import { requireSystem } from "../systems/systems.js";
import { accountSecretName, requireAccount } from "./accounts.js";

export type RotationReason = "checkin" | "expiry" | "schedule";

/** How long `pg_terminate_backend` waits for each session to end, in milliseconds. */
const terminateWaitMs = 5000;
/**
 * How long a broker's claim on a rotation keeps other brokers away, in milliseconds. It exceeds the
 * connect and statement timeouts of one rotation, so a crashed broker's claim lapses on its own.
 */
const claimMs = 60_000;

/** Per broker: the rotation running for each account, so that rotations of one account never overlap. */
const running = new WeakMap<BrokerContext, Map<string, Promise<boolean>>>();

/**
 * Performs the rotation that the account's `rotation_due` records, if any. Returns true when no
 * rotation is due afterwards, and false when another broker has claimed it. Throws when the
 * server cannot be reached, and then `rotation_due` stays set, which keeps the account from being
 * checked out until a retry succeeds.
 *
 * Rotations of one account run one at a time: in this process by waiting for the running one, and
 * across brokers by a claim in the store. Without that, two rotations could store a password other
 * than the one the server has.
 */
export async function rotateIfDue(context: BrokerContext, name: string): Promise<boolean> {
  let byName = running.get(context);
  if (byName === undefined) {
    byName = new Map();
    running.set(context, byName);
  }
  const previous = byName.get(name) ?? Promise.resolve(true);
  const next = previous.catch(() => false).then(() => rotateOnce(context, name));
  byName.set(name, next);
  try {
    return await next;
  } finally {
    if (byName.get(name) === next) byName.delete(name);
  }
}

/**
 * Sets a new random password on the shared role and terminates every session of it, so a copied
 * password and any session opened with it stop working. Then stores the password and audits
 * `account.rotated` with the reason that `rotation_due` recorded.
 */
async function rotateOnce(context: BrokerContext, name: string): Promise<boolean> {
  const account = await requireAccount(context, name);
  if (account.rotation_due === null) return true;
  const reason = account.rotation_due as RotationReason;
  const nowMs = context.clock.nowMs();
  const claimed = await context.queue.write(async (trx) => {
    const result = await trx
      .updateTable("accounts")
      .set({ rotation_claimed_until: nowMs + claimMs })
      .where("name", "=", name)
      .where("rotation_due", "is not", null)
      .where((eb) =>
        eb.or([eb("rotation_claimed_until", "is", null), eb("rotation_claimed_until", "<=", nowMs)]),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  });
  if (!claimed) return false;

  const password = generatePassword();
  try {
    const system = await requireSystem(context, account.system);
    await withSystem(context, system, undefined, async (client) => {
      await client.query(
        statement`ALTER ROLE ${identifier(account.role)} PASSWORD ${literal(scramSha256Verifier(password))}`,
      );
      await client.query(
        "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
        [account.role, terminateWaitMs],
      );
    });
  } catch (error) {
    await context.queue.write(async (trx) => {
      await trx
        .updateTable("accounts")
        .set({ rotation_claimed_until: null })
        .where("name", "=", name)
        .execute();
    });
    throw error;
  }

  const sealed = seal(context.masterKey, accountSecretName(name), Buffer.from(password, "utf8"));
  await context.audit.append(
    { kind: "account.rotated", actor: "writ", data: { account: name, reason } },
    async (trx) => {
      await trx
        .updateTable("accounts")
        .set({
          ...sealed,
          rotated_at: context.clock.nowMs(),
          rotation_due: null,
          rotation_claimed_until: null,
        })
        .where("name", "=", name)
        .execute();
    },
  );
  context.log.info({ account: name, reason }, "shared account rotated");
  return true;
}
