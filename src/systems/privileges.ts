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
