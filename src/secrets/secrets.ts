import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { open, seal } from "./envelope.js";

/** Secret names: they appear in `${secret:NAME}` references, so no braces, colons or spaces. */
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** The largest secret value accepted, in bytes. */
const maxValueBytes = 64 * 1024;

export function secretNameProblem(name: string): string | undefined {
  return namePattern.test(name) ? undefined : "a secret name is 1 to 128 letters, digits, '.', '-' or '_'";
}

/**
 * Stores or replaces a secret, sealed under the master key. The audit event names the secret, never
 * its value.
 */
export async function setSecret(
  context: BrokerContext,
  actor: string,
  name: string,
  value: Buffer,
): Promise<void> {
  const problem = secretNameProblem(name);
  if (problem !== undefined)
    throw new WritError("invalid_request", `invalid secret name "${name}": ${problem}`);
  if (value.length === 0 || value.length > maxValueBytes) {
    throw new WritError("invalid_request", `a secret value is 1 to ${maxValueBytes} bytes`);
  }
  const sealed = seal(context.masterKey, name, value);
  const now = context.clock.nowMs();
  const existing = await context.store.db
    .selectFrom("secrets")
    .select("name")
    .where("name", "=", name)
    .executeTakeFirst();
  await context.audit.append(
    { kind: existing === undefined ? "secret.created" : "secret.updated", actor, data: { secret: name } },
    async (trx) => {
      if (existing === undefined) {
        await trx
          .insertInto("secrets")
          .values({ name, ...sealed, created_at: now, updated_at: now })
          .execute();
      } else {
        await trx
          .updateTable("secrets")
          .set({ ...sealed, updated_at: now })
          .where("name", "=", name)
          .execute();
      }
    },
  );
}

/** Opens a secret for injection. Callers must never log, return or echo the value. */
export async function readSecret(
  context: Pick<BrokerContext, "store" | "masterKey">,
  name: string,
): Promise<Buffer> {
  const row = await context.store.db
    .selectFrom("secrets")
    .selectAll()
    .where("name", "=", name)
    .executeTakeFirst();
  if (row === undefined) throw new WritError("not_found", `secret "${name}" not found`);
  try {
    return open(context.masterKey, name, row);
  } catch (error) {
    throw new WritError("server_error", `secret "${name}" cannot be opened with the master key`, {
      cause: error,
    });
  }
}

export async function listSecretNames(
  context: BrokerContext,
): Promise<{ name: string; updated_at: number }[]> {
  return context.store.db.selectFrom("secrets").select(["name", "updated_at"]).orderBy("name").execute();
}
