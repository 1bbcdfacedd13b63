import type { BrokerContext } from "../broker/context.js";
import { withSystem } from "../systems/connection.js";
import { parseDsn } from "../systems/dsn.js";
import { identifier, statement } from "../systems/sql-text.js";
import { requireSystem } from "../systems/systems.js";
import { getTemplate } from "../systems/templates.js";
import type { Lease } from "./leases.js";

/** How long `pg_terminate_backend` waits for each session to end, in milliseconds. */
const terminateWaitMs = 5000;

/**
 * Removes a lease's role from its server in this order:
 * 1. `NOLOGIN`, so no new session starts.
 * 2. Terminate every session of the role.
 * 3. In the template's database, `REASSIGN OWNED` to the successor when the template keeps objects,
 *    then always `DROP OWNED`. Then `DROP OWNED` in every other database the role could reach.
 * 4. `DROP ROLE`.
 * A role that no longer exists counts as removed. Throws when any step fails, and the caller retries.
 */
export async function dropLeaseRole(context: BrokerContext, lease: Lease): Promise<void> {
  const system = await requireSystem(context, lease.system);
  const template = await getTemplate(context, lease.system, lease.template);
  const database = template?.database ?? parseDsn(system.dsn).database;
  const role = identifier(lease.role);
  await withSystem(context, system, database, async (client) => {
    const exists = await client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [lease.role]);
    if (exists.rowCount === 0) return;
    await client.query(statement`ALTER ROLE ${role} NOLOGIN`);
    // NOTE: the two-argument pg_terminate_backend, which waits for the session to end, needs PostgreSQL 14.
    await client.query(
      "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
      [lease.role, terminateWaitMs],
    );
    if (template?.successor !== null && template?.successor !== undefined) {
      await client.query(statement`REASSIGN OWNED BY ${role} TO ${identifier(template.successor)}`);
    }
    await client.query(statement`DROP OWNED BY ${role}`);
    // A task role can connect to any database that PUBLIC may connect to and leave objects there,
    // such as a large object, which would block DROP ROLE; those are dropped too.
    const others = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database
        WHERE datallowconn AND NOT datistemplate AND datname <> current_database()
          AND has_database_privilege(datname, 'CONNECT')`,
    );
    for (const { datname } of others.rows) {
      await withSystem(context, system, datname, (other) => other.query(statement`DROP OWNED BY ${role}`));
    }
    await client.query(statement`DROP ROLE ${role}`);
  });
}
