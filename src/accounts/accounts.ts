import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { open, seal } from "../secrets/envelope.js";
import type { AccountsTable } from "../store/schema.js";
import { withSystem } from "../systems/connection.js";
import { missingAdminOption, unsafeGroupRoles } from "../systems/privileges.js";
import { generatePassword, scramSha256Verifier } from "../systems/scram.js";
import { identifier, literal, statement } from "../systems/sql-text.js";
import { requireSystem } from "../systems/systems.js";
import { listTemplates } from "../systems/templates.js";
import { reloadPolicies } from "../policy/policies.js";
import type { ToolAction } from "../tools/registry.js";

/** The prefix of the system tool's actions that stand for shared accounts rather than templates. */
export const accountActionPrefix = "account.";

/** Names the system tool's action that lets a task's agent check the account out. */
export function accountActionName(account: string): string {
  return `${accountActionPrefix}${account}`;
}

/**
 * A legacy shared role on a system that cannot be split per task. writ owns its password: every user
 * obtains it by checkout, one holder at a time, and writ rotates it after each use.
 */
export interface Account {
  name: string;
  kind: "postgres";
  system: string;
  role: string;
  /** Seconds between rotations even when unused; null rotates only after use. */
  rotate_every_s: number | null;
  /** The open checkout's id, or null when the account is free. */
  checkout_id: string | null;
  /** The reason of a rotation still owed before the next checkout, or null. */
  rotation_due: string | null;
  /** When the password was last set, in ms since the epoch. */
  rotated_at: number;
  created_at: number;
}

export interface NewAccount {
  name: string;
  kind: string;
  system: string;
  role: string;
  rotate_every_s?: number;
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** The shortest scheduled rotation interval accepted, in seconds. */
const minRotateEverySeconds = 60;

/** Returns the name under which an account's password is sealed, binding the sealed value to it. */
export function accountSecretName(name: string): string {
  return `account:${name}`;
}

/**
 * Registers an existing shared role after checking that the management role has ADMIN OPTION on
 * it, then sets a password that only writ stores, so that from then on every user checks it out.
 */
export async function addAccount(context: BrokerContext, actor: string, input: NewAccount): Promise<Account> {
  if (!namePattern.test(input.name)) {
    throw new WritError(
      "invalid_request",
      `invalid account name "${input.name}": use 1 to 63 letters, digits, '.', '-' or '_'`,
    );
  }
  if (input.kind !== "postgres") {
    throw new WritError("invalid_request", `invalid account kind "${input.kind}": use postgres`);
  }
  const every = input.rotate_every_s;
  if (every !== undefined && (!Number.isInteger(every) || every < minRotateEverySeconds)) {
    throw new WritError(
      "invalid_request",
      `invalid rotation interval ${every} s: use at least ${minRotateEverySeconds} s`,
    );
  }
  const system = await requireSystem(context, input.system);
  identifier(input.role);
  if ((await getAccount(context, input.name)) !== undefined) {
    throw new WritError("conflict", `account "${input.name}" already exists`);
  }
  // Two accounts of one role would each hand out and rotate the same password.
  const sameRole = (await listAccounts(context)).find(
    (account) => account.system === input.system && account.role === input.role,
  );
  if (sameRole !== undefined) {
    throw new WritError(
      "conflict",
      `role "${input.role}" of system "${input.system}" is already the account "${sameRole.name}"`,
    );
  }

  const password = generatePassword();
  const templateGroups = [
    ...new Set((await listTemplates(context, system.name)).flatMap((template) => template.member_of)),
  ];
  await withSystem(context, system, undefined, async (client) => {
    // A template whose group reaches this role would let every task act as the account unchecked.
    const reached = (await unsafeGroupRoles(client, templateGroups, [input.role])).filter((problem) =>
      problem.endsWith("the role of a shared account"),
    );
    if (reached.length > 0) {
      throw new WritError(
        "invalid_request",
        `role "${input.role}" is reached by a template's group, so tasks could use it without a checkout: ${reached.join("; ")}`,
      );
    }
    const missing = await missingAdminOption(client, [input.role]);
    if (missing.length > 0) {
      throw new WritError(
        "invalid_request",
        `the management role of system "${system.name}" is missing: ${missing.join("; ")}; grant it and retry`,
      );
    }
    await client.query(
      statement`ALTER ROLE ${identifier(input.role)} PASSWORD ${literal(scramSha256Verifier(password))}`,
    );
  });

  const nowMs = context.clock.nowMs();
  const row: AccountsTable = {
    name: input.name,
    kind: "postgres",
    system: system.name,
    role: input.role,
    rotate_every_s: every ?? null,
    checkout_id: null,
    rotation_due: null,
    rotation_claimed_until: null,
    rotated_at: nowMs,
    ...seal(context.masterKey, accountSecretName(input.name), Buffer.from(password, "utf8")),
    created_at: nowMs,
  };
  await context.audit.append(
    { kind: "account.created", actor, data: { account: row.name, system: row.system, role: row.role } },
    async (trx) => {
      await trx.insertInto("accounts").values(row).execute();
      // The account becomes an action of the system's tool, so that a task naming
      // SYSTEM:account.NAME lets its agent check the account out with its own task token.
      const tool = await trx
        .selectFrom("tools")
        .select("actions")
        .where("name", "=", system.name)
        .executeTakeFirst();
      if (tool === undefined) return;
      const actions = JSON.parse(tool.actions) as ToolAction[];
      actions.push({ name: accountActionName(row.name), spec: accountActionName(row.name), risk: "high" });
      await trx
        .updateTable("tools")
        .set({ actions: JSON.stringify(actions) })
        .where("name", "=", system.name)
        .execute();
    },
  );
  await reloadPolicies(context);
  return fromRow(row);
}

export async function getAccount(
  context: Pick<BrokerContext, "store">,
  name: string,
): Promise<Account | undefined> {
  const row = await context.store.db
    .selectFrom("accounts")
    .selectAll()
    .where("name", "=", name)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function requireAccount(context: Pick<BrokerContext, "store">, name: string): Promise<Account> {
  const account = await getAccount(context, name);
  if (account === undefined) throw new WritError("not_found", `account "${name}" not found`);
  return account;
}

export async function listAccounts(context: BrokerContext): Promise<Account[]> {
  const rows = await context.store.db.selectFrom("accounts").selectAll().orderBy("name").execute();
  return rows.map(fromRow);
}

/** Opens an account's current password. Callers return it only to the holder of a checkout. */
export async function readAccountPassword(context: BrokerContext, name: string): Promise<string> {
  const row = await context.store.db
    .selectFrom("accounts")
    .select(["wrapped_key", "ciphertext"])
    .where("name", "=", name)
    .executeTakeFirstOrThrow();
  return open(context.masterKey, accountSecretName(name), row).toString("utf8");
}

function fromRow(row: AccountsTable): Account {
  return {
    name: row.name,
    kind: "postgres",
    system: row.system,
    role: row.role,
    rotate_every_s: row.rotate_every_s,
    checkout_id: row.checkout_id,
    rotation_due: row.rotation_due,
    rotated_at: row.rotated_at,
    created_at: row.created_at,
  };
}
