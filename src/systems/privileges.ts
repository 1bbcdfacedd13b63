import { randomBytes } from "node:crypto";
import type pg from "pg";
import { checkedClause, identifier, statement } from "./sql-text.js";
import { inTransaction } from "./connection.js";

/** The predefined role whose members may terminate other roles' sessions. */
export const signalBackendRole = "pg_signal_backend";
/** SQLSTATE of the warning GRANT gives when the grantor lacks a privilege's grant option. */
const privilegeNotGranted = "01007";

/**
 * Returns what the connected management role lacks to run per-task roles, as phrases for an error
 * message: CREATEROLE, no SUPERUSER, and membership in pg_signal_backend. An empty list means none.
 */
export async function missingManagementPrivileges(client: pg.Client): Promise<string[]> {
  const result = await client.query<{ rolsuper: boolean; rolcreaterole: boolean; signal: boolean }>(
    `SELECT rolsuper, rolcreaterole, pg_has_role(current_user, $1, 'MEMBER') AS signal
       FROM pg_roles WHERE rolname = current_user`,
    [signalBackendRole],
  );
  const row = result.rows[0];
  if (row === undefined) return ["a role of its own in pg_roles"];
  const missing: string[] = [];
  if (row.rolsuper) missing.push("to not be SUPERUSER (use LOGIN CREATEROLE)");
  if (!row.rolcreaterole) missing.push("CREATEROLE");
  if (!row.signal) missing.push(`membership in ${signalBackendRole}`);
  return missing;
}

/**
 * Returns, for each role in `roles`, what the management role lacks on it: the role must exist and be
 * held WITH ADMIN OPTION, which PostgreSQL 16 and later require to grant or alter it.
 */
export async function missingAdminOption(client: pg.Client, roles: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const role of roles) {
    const result = await client.query<{ admin: boolean | null; superuser: boolean | null }>(
      `SELECT pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION') AS admin, rolsuper AS superuser
         FROM pg_roles WHERE rolname = $1`,
      [role],
    );
    const row = result.rows[0];
    if (row === undefined) missing.push(`role "${role}" (it does not exist)`);
    else if (row.superuser === true) missing.push(`role "${role}" to not be SUPERUSER`);
    else if (row.admin !== true) missing.push(`ADMIN OPTION on role "${role}"`);
  }
  return missing;
}

/**
 * Predefined roles a task's role must never reach: they read or write files on the database server,
 * run programs there, end other sessions, or create subscriptions that connect elsewhere.
 */
const forbiddenPredefinedRoles = [
  "pg_read_server_files",
  "pg_write_server_files",
  "pg_execute_server_program",
  "pg_signal_backend",
  "pg_create_subscription",
];

/**
 * Returns, for each group role a template would grant, why a task must not hold it: the group, or a
 * role it inherits from or may SET ROLE to, is a superuser, may create roles or databases, replicate
 * or bypass row security, is one of the predefined roles above, or is the role of a shared account
 * (`accountRoles`), which only a checkout may hand out.
 */
export async function unsafeGroupRoles(
  client: pg.Client,
  roles: readonly string[],
  accountRoles: readonly string[],
): Promise<string[]> {
  const problems: string[] = [];
  for (const role of roles) {
    const result = await client.query<{ rolname: string; why: string }>(
      `SELECT r.rolname,
              CASE WHEN r.rolsuper THEN 'SUPERUSER'
                   WHEN r.rolcreaterole THEN 'CREATEROLE'
                   WHEN r.rolcreatedb THEN 'CREATEDB'
                   WHEN r.rolreplication THEN 'REPLICATION'
                   WHEN r.rolbypassrls THEN 'BYPASSRLS'
                   WHEN r.rolname = ANY($2::text[]) THEN 'a predefined role with server access'
                   ELSE 'the role of a shared account' END AS why
         FROM pg_roles r
        WHERE pg_has_role($1, r.oid, 'MEMBER')
          AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
               OR r.rolname = ANY($2::text[]) OR r.rolname = ANY($3::text[]))
        ORDER BY r.rolname`,
      [role, forbiddenPredefinedRoles, accountRoles],
    );
    for (const row of result.rows) {
      problems.push(
        row.rolname === role
          ? `role "${role}" is ${row.why}`
          : `role "${role}" reaches "${row.rolname}", ${row.why}`,
      );
    }
  }
  return problems;
}

/** Returns a phrase when the management role cannot act as `role` (needed for REASSIGN OWNED). */
export async function missingRoleUsage(client: pg.Client, role: string): Promise<string[]> {
  const result = await client.query<{ usage: boolean }>(
    `SELECT pg_has_role(current_user, oid, 'USAGE') AS usage FROM pg_roles WHERE rolname = $1`,
    [role],
  );
  const row = result.rows[0];
  if (row === undefined) return [`role "${role}" (it does not exist)`];
  return row.usage ? [] : [`membership in role "${role}" (to reassign objects to it)`];
}

/**
 * Tries each checked GRANT clause on a throwaway role inside a transaction that is rolled back, and
 * returns the clauses the management role cannot grant. PostgreSQL responds to a grant without the grant
 * option with a warning rather than an error, so warnings are collected as well as errors.
 */
export async function missingGrantOptions(client: pg.Client, clauses: readonly string[]): Promise<string[]> {
  const probe = `writ_probe_${randomBytes(8).toString("hex")}`;
  const missing: string[] = [];
  const warnings: string[] = [];
  const onNotice = (notice: { code?: string; message?: string }): void => {
    if (notice.code === privilegeNotGranted) warnings.push(notice.message ?? "");
  };
  client.on("notice", onNotice);
  try {
    await inTransaction(client, async () => {
      await client.query(statement`CREATE ROLE ${identifier(probe)} NOLOGIN`);
      for (const clause of clauses) {
        warnings.length = 0;
        await client.query("SAVEPOINT probe");
        try {
          await client.query(statement`GRANT ${checkedClause(clause)} TO ${identifier(probe)}`);
          if (warnings.length > 0) missing.push(`the grant option for "${clause}" (${warnings[0]})`);
        } catch (error) {
          missing.push(`the grant option for "${clause}" (${(error as Error).message})`);
        }
        await client.query("ROLLBACK TO SAVEPOINT probe");
      }
      // The probe role exists only to test the grants, so the transaction always rolls back.
      throw new ProbeDone();
    });
  } catch (error) {
    if (!(error instanceof ProbeDone)) throw error;
  } finally {
    client.off("notice", onNotice);
  }
  return missing;
}

class ProbeDone extends Error {}
