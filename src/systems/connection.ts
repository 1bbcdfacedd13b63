import pg from "pg";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { readSecret } from "../secrets/secrets.js";
import { parseDsn } from "./dsn.js";
import type { System } from "./systems.js";

/** How long connecting to a system's server may take before the attempt fails, in milliseconds. */
export const systemConnectTimeoutMs = 5000;
/** How long one management statement may run on a system's server, in milliseconds. */
export const systemStatementTimeoutMs = 15_000;

/**
 * Opens a connection to a system as its management role, reading the role's password from the secret
 * store. The caller must end it. A server that cannot be reached becomes `temporarily_unavailable`;
 * the pg error, which names no password, goes into the detail.
 */
export async function connectSystem(
  context: Pick<BrokerContext, "store" | "masterKey">,
  system: Pick<System, "name" | "dsn" | "password_secret">,
  database?: string,
): Promise<pg.Client> {
  const dsn = parseDsn(system.dsn);
  const password = (await readSecret(context, system.password_secret)).toString("utf8");
  const client = new pg.Client({
    host: dsn.host,
    port: dsn.port,
    user: dsn.user,
    database: database ?? dsn.database,
    password,
    application_name: "writ",
    connectionTimeoutMillis: systemConnectTimeoutMs,
    statement_timeout: systemStatementTimeoutMs,
    ...(dsn.sslmode === "disable" ? {} : { ssl: { rejectUnauthorized: dsn.sslmode === "verify-full" } }),
  });
  // An error after connecting (the server went away) must not crash the process; the next query fails.
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw new WritError("temporarily_unavailable", `system "${system.name}" is unreachable; retry later`, {
      detail: `connect to ${dsn.host}:${dsn.port}/${database ?? dsn.database} as ${dsn.user}: ${(error as Error).message}`,
      cause: error,
    });
  }
  return client;
}

/** Runs `work` on a fresh management connection and always closes it. */
export async function withSystem<T>(
  context: Pick<BrokerContext, "store" | "masterKey">,
  system: Pick<System, "name" | "dsn" | "password_secret">,
  database: string | undefined,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = await connectSystem(context, system, database);
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Runs `work` in a transaction on `client`, committing when it resolves and rolling back when it throws. */
export async function inTransaction<T>(client: pg.Client, work: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    const result = await work();
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}
