import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { open } from "../secrets/envelope.js";
import { connectionUrl, parseDsn } from "../systems/dsn.js";
import { requireSystem } from "../systems/systems.js";
import { getTemplate } from "../systems/templates.js";
import { leaseSecretName } from "./provision.js";

/** A task's credential on a system, as its agent or a gateway-spawned server receives it. */
export interface TaskCredential {
  system: string;
  lease_id: string;
  role: string;
  /** The role's password. Never log it. */
  password: string;
  host: string;
  port: number;
  database: string;
  /** A connection URL without the password, such as `postgres://writ_…@db:5432/app`. */
  url: string;
  /** The role's `VALID UNTIL`, in ms since the epoch. */
  valid_until: number;
}

/**
 * Returns the credential of a task's active lease on a system. A task without one, or whose lease is
 * being cleaned, gets `not_found`, which does not tell the two apart.
 */
export async function readTaskCredential(
  context: Pick<BrokerContext, "store" | "masterKey" | "issuer">,
  systemName: string,
  taskId: string,
): Promise<TaskCredential> {
  const row = await context.store.db
    .selectFrom("leases")
    .selectAll()
    .where("system", "=", systemName)
    .where("task_id", "=", taskId)
    .where("state", "=", "active")
    .executeTakeFirst();
  if (row === undefined || row.wrapped_key === null || row.ciphertext === null) {
    throw new WritError("not_found", `the task has no active credential on system "${systemName}"`);
  }
  const system = await requireSystem(context, systemName);
  const template = await getTemplate(context, systemName, row.template);
  const dsn = parseDsn(system.dsn);
  const database = template?.database ?? dsn.database;
  const password = open(context.masterKey, leaseSecretName(row.id), {
    wrapped_key: row.wrapped_key,
    ciphertext: row.ciphertext,
  }).toString("utf8");
  return {
    system: systemName,
    lease_id: row.id,
    role: row.role,
    password,
    host: dsn.host,
    port: dsn.port,
    database,
    url: connectionUrl(dsn, row.role, database),
    valid_until: row.valid_until,
  };
}
