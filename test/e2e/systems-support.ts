// Shared setup of the systems and shared-account tests: a real PostgreSQL cluster prepared the way an
// operator would prepare it for writ, with a management role that has exactly the privileges writ
// needs, and a second one missing pg_signal_backend.

import { join, dirname } from "node:path";
import { readFile } from "node:fs/promises";
import pg from "pg";
import type { AdminClient } from "../../src/cli/admin-client.js";
import { startPostgres, type PostgresCluster } from "../support/postgres.js";

export const adminRole = "writ_admin";
export const weakRole = "writ_weak";
export const appDatabase = "app";

/** A prepared cluster: the superuser URL, the management roles' passwords and the app database. */
export interface PreparedCluster {
  cluster: PostgresCluster;
  adminPassword: string;
  weakPassword: string;
  /** The superuser's URL of the app database, for checks the test makes behind writ's back. */
  superuserAppUrl: string;
  /** Returns `postgres://ROLE@127.0.0.1:PORT/app` without a password. */
  dsn(role: string): string;
  /** Connects as `user` with `password` over TCP, so the server checks the password. */
  connectAs(user: string, password: string, database?: string): Promise<pg.Client>;
  /** Runs SQL as the superuser in the app database. */
  superuser<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<T[]>;
  /** Returns the server log written so far. */
  serverLog(): Promise<string>;
}

/**
 * Starts a cluster with: an `app` database holding `billing.invoices` (readable by the templates)
 * and `hr.salaries` (readable only by the superuser); a group role `billing_reader`; the
 * management role `writ_admin` (LOGIN CREATEROLE, member of pg_signal_backend, ADMIN OPTION on
 * billing_reader and legacy_etl, grant options on the billing and scratch schemas, membership in
 * scratch_owner, which receives kept objects); `writ_weak`, the same but
 * without pg_signal_backend; and the shared role `legacy_etl`. Statements are logged in full, so a
 * test can check that no password reaches the server log.
 */
export async function prepareCluster(): Promise<PreparedCluster> {
  const cluster = await startPostgres();
  const adminPassword = "admin-pass-0001";
  const weakPassword = "weak-pass-0002";
  const superuserAppUrl = await cluster.createDatabase(appDatabase);
  const run = async (url: string, statements: string[]): Promise<void> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      for (const text of statements) await client.query(text);
    } finally {
      await client.end();
    }
  };
  await run(cluster.url, [
    "ALTER SYSTEM SET log_statement = 'all'",
    "SELECT pg_reload_conf()",
    `CREATE ROLE ${adminRole} LOGIN CREATEROLE PASSWORD '${adminPassword}'`,
    `GRANT pg_signal_backend TO ${adminRole}`,
    `CREATE ROLE ${weakRole} LOGIN CREATEROLE PASSWORD '${weakPassword}'`,
    "CREATE ROLE billing_reader NOLOGIN",
    `GRANT billing_reader TO ${adminRole} WITH ADMIN OPTION`,
    `GRANT billing_reader TO ${weakRole} WITH ADMIN OPTION`,
    "CREATE ROLE legacy_etl LOGIN PASSWORD 'legacy-original'",
    "CREATE ROLE scratch_owner NOLOGIN",
    `GRANT scratch_owner TO ${adminRole}`,
    `GRANT legacy_etl TO ${adminRole} WITH ADMIN OPTION`,
  ]);
  await run(superuserAppUrl, [
    "CREATE SCHEMA billing",
    "CREATE TABLE billing.invoices (id integer PRIMARY KEY, amount integer NOT NULL)",
    "INSERT INTO billing.invoices VALUES (1, 100), (2, 250)",
    "CREATE SCHEMA hr",
    "CREATE TABLE hr.salaries (name text, amount integer)",
    "INSERT INTO hr.salaries VALUES ('O''Brien', 1)",
    "GRANT USAGE ON SCHEMA billing TO billing_reader",
    "GRANT SELECT ON ALL TABLES IN SCHEMA billing TO billing_reader",
    `GRANT USAGE ON SCHEMA billing TO ${adminRole} WITH GRANT OPTION`,
    `GRANT SELECT ON ALL TABLES IN SCHEMA billing TO ${adminRole} WITH GRANT OPTION`,
    "CREATE SCHEMA scratch",
    `GRANT USAGE, CREATE ON SCHEMA scratch TO ${adminRole} WITH GRANT OPTION`,
    "GRANT USAGE ON SCHEMA billing TO legacy_etl",
    "GRANT SELECT ON billing.invoices TO legacy_etl",
  ]);

  const base = `127.0.0.1:${cluster.port}`;
  return {
    cluster,
    adminPassword,
    weakPassword,
    superuserAppUrl,
    dsn: (role) => `postgres://${role}@${base}/${appDatabase}`,
    async connectAs(user, password, database = appDatabase) {
      const client = new pg.Client({ host: "127.0.0.1", port: cluster.port, user, password, database });
      client.on("error", () => {});
      await client.connect();
      return client;
    },
    async superuser<T extends pg.QueryResultRow>(text: string, values: unknown[] = []) {
      const client = new pg.Client({ connectionString: superuserAppUrl });
      await client.connect();
      try {
        return (await client.query<T>(text, values)).rows;
      } finally {
        await client.end();
      }
    },
    serverLog: () => readFile(join(dirname(cluster.dataDir), "postgres.log"), "utf8"),
  };
}

/** Returns whether a role exists on the cluster. */
export async function roleExists(prepared: PreparedCluster, role: string): Promise<boolean> {
  const rows = await prepared.superuser("SELECT 1 FROM pg_roles WHERE rolname = $1", [role]);
  return rows.length > 0;
}

/** Returns the SQLSTATE of a failed promise, or fails when it resolves. */
export async function sqlState(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  throw new Error("expected the statement or connection to fail, it succeeded");
}

/**
 * Registers the cluster's `app` database as the system `billing` in environment `prod`, managed by
 * `writ_admin`, whose password goes into the secret `pg-admin`.
 */
export async function registerBillingSystem(admin: AdminClient, prepared: PreparedCluster): Promise<void> {
  await admin.call("POST", "/v1/secrets/pg-admin", { value: prepared.adminPassword });
  await admin.call("POST", "/v1/systems", {
    name: "billing",
    kind: "postgres",
    dsn: prepared.dsn(adminRole),
    password_secret: "pg-admin",
    environment: "prod",
  });
}
