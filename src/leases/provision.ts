import { randomUUID } from "node:crypto";
import type { Transaction } from "kysely";
import type { BrokerContext } from "../broker/context.js";
import { WritError, isWritError } from "../errors/writ-error.js";
import { logFields } from "../log/fields.js";
import { endTasks } from "../revocation/revoke.js";
import { cleanUpTaskLeases } from "./worker.js";
import { accountActionPrefix } from "../accounts/accounts.js";
import { seal } from "../secrets/envelope.js";
import type { Database } from "../store/schema.js";
import { inTransaction, withSystem } from "../systems/connection.js";
import { parseDsn } from "../systems/dsn.js";
import { parseGrantClause } from "../systems/grant-clause.js";
import { generatePassword, scramSha256Verifier } from "../systems/scram.js";
import { identifier, integer, literal, statement } from "../systems/sql-text.js";
import { getSystem, type System } from "../systems/systems.js";
import { getTemplate, type Template } from "../systems/templates.js";
import type { Task } from "../tasks/tasks.js";

/** `statement_timeout` set on every task role as a backstop, in milliseconds. */
export const taskRoleStatementTimeoutMs = 60_000;
/** `idle_session_timeout` set on every task role as a backstop, in milliseconds. */
export const taskRoleIdleSessionTimeoutMs = 10 * 60_000;

/** A lease about to be created for a starting task: its system, template, role and password. */
export interface LeasePlan {
  id: string;
  system: System;
  template: Template;
  role: string;
  password: string;
}

/** Returns the login role name of a task on a system, `writ_<task id>`: 41 bytes for a UUID. */
export function taskRoleName(taskId: string): string {
  return `writ_${taskId}`;
}

/** Returns the name under which a lease's password is sealed, which binds the sealed value to the lease. */
export function leaseSecretName(leaseId: string): string {
  return `lease:${leaseId}`;
}

/**
 * Plans one lease per system among the task's tools. A task takes one template per system, because
 * its role on a system is one role.
 */
export async function planLeases(
  context: BrokerContext,
  task: Pick<Task, "id" | "tools" | "actions">,
): Promise<LeasePlan[]> {
  const plans: LeasePlan[] = [];
  for (const toolName of task.tools) {
    const system = await getSystem(context, toolName);
    if (system === undefined) continue;
    const templates = task.actions
      .filter((entry) => entry.startsWith(`${toolName}:`))
      .map((entry) => entry.slice(toolName.length + 1))
      .filter((action) => !action.startsWith(accountActionPrefix));
    // A task that names only shared accounts of the system gets no role of its own.
    const namesAccounts = task.actions.some((entry) =>
      entry.startsWith(`${toolName}:${accountActionPrefix}`),
    );
    if (templates.length === 0 && namesAccounts) continue;
    if (templates.length !== 1) {
      throw new WritError(
        "invalid_request",
        `the task lists ${templates.length} templates of system "${toolName}": a task takes one template per system`,
      );
    }
    const template = await getTemplate(context, toolName, templates[0] as string);
    if (template === undefined) {
      throw new WritError(
        "invalid_request",
        `template "${String(templates[0])}" of system "${toolName}" not found`,
      );
    }
    const dsn = parseDsn(system.dsn);
    const sameServer = plans.find((plan) => {
      const other = parseDsn(plan.system.dsn);
      return other.host === dsn.host && other.port === dsn.port;
    });
    if (sameServer !== undefined) {
      // NOTE: one task has one role per PostgreSQL server, because its role name derives from the task id alone.
      throw new WritError(
        "invalid_request",
        `systems "${sameServer.system.name}" and "${system.name}" are on the same server: a task may list only one of them`,
      );
    }
    plans.push({
      id: randomUUID(),
      system,
      template,
      role: taskRoleName(task.id),
      password: generatePassword(),
    });
  }
  return plans;
}

/**
 * Inserts the planned leases as `active` in the transaction that starts the task, before any role
 * exists, so that a crash after the role is created still leaves a lease for the cleanup to find.
 */
export async function insertLeaseRows(
  context: BrokerContext,
  trx: Transaction<Database>,
  task: Pick<Task, "id" | "deadline_s">,
  plans: readonly LeasePlan[],
): Promise<void> {
  const nowMs = context.clock.nowMs();
  for (const plan of plans) {
    const sealed = seal(context.masterKey, leaseSecretName(plan.id), Buffer.from(plan.password, "utf8"));
    await trx
      .insertInto("leases")
      .values({
        id: plan.id,
        system: plan.system.name,
        template: plan.template.name,
        role: plan.role,
        task_id: task.id,
        state: "active",
        valid_until: task.deadline_s * 1000,
        attempts: 0,
        last_error: null,
        next_attempt_at: nowMs,
        ...sealed,
        created_at: nowMs,
        cleaned_at: null,
      })
      .execute();
  }
}

/**
 * Creates each planned role on its server and audits `lease.created`. When a role cannot be created,
 * the task is ended (which schedules the cleanup of whatever was created) and the start fails.
 */
export async function provisionLeases(
  context: BrokerContext,
  actor: string,
  task: Pick<Task, "id" | "deadline_s">,
  plans: readonly LeasePlan[],
): Promise<void> {
  for (const plan of plans) {
    try {
      await createTaskRole(context, plan, task.deadline_s);
    } catch (error) {
      context.log.error(
        { err: error, [logFields.taskId]: task.id, system: plan.system.name, lease_id: plan.id },
        "creating a task role failed; ending the task",
      );
      await endTasks(
        context,
        "writ",
        [task.id],
        "revoked",
        `credential creation failed on system ${plan.system.name}`,
      );
      if (isWritError(error) && error.code !== "server_error") throw error;
      throw new WritError(
        "temporarily_unavailable",
        `creating the task's role on system "${plan.system.name}" failed; the task was ended`,
        { detail: (error as Error).message, cause: error },
      );
    }
    // The task may have ended while its role was being created, and a cleanup that ran before the
    // role was committed found nothing to drop: the lease goes back to pending and is cleaned again.
    const current = await context.store.db
      .selectFrom("tasks")
      .select("status")
      .where("id", "=", task.id)
      .executeTakeFirst();
    if (current?.status !== "active") {
      const nowMs = context.clock.nowMs();
      await context.queue.write(async (trx) => {
        await trx
          .updateTable("leases")
          .set({ state: "cleanup_pending", next_attempt_at: nowMs })
          .where("id", "=", plan.id)
          .execute();
      });
      await cleanUpTaskLeases(context, [task.id]);
      throw new WritError("invalid_grant", "the task ended while its database role was being created");
    }
    await context.audit.append({
      kind: "lease.created",
      actor,
      task_id: task.id,
      data: {
        lease_id: plan.id,
        system: plan.system.name,
        template: plan.template.name,
        role: plan.role,
        task_id: task.id,
        valid_until: task.deadline_s * 1000,
      },
    });
  }
}

/**
 * Creates the task's login role in one transaction. The role gets a SCRAM verifier in place of the
 * password, `VALID UNTIL` the task's deadline, a connection limit and timeouts as a backstop. The
 * management role becomes a member of it, because DROP OWNED and REASSIGN OWNED need that at
 * cleanup. The role receives the template's privileges and nothing else.
 */
async function createTaskRole(context: BrokerContext, plan: LeasePlan, deadlineS: number): Promise<void> {
  const role = identifier(plan.role);
  const verifier = literal(scramSha256Verifier(plan.password));
  const validUntil = literal(new Date(deadlineS * 1000).toISOString());
  const limit = integer(plan.template.connection_limit);
  await withSystem(context, plan.system, plan.template.database, (client) =>
    inTransaction(client, async () => {
      await client.query(
        statement`CREATE ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION
          NOBYPASSRLS CONNECTION LIMIT ${limit} PASSWORD ${verifier} VALID UNTIL ${validUntil}`,
      );
      await client.query(
        statement`ALTER ROLE ${role} SET statement_timeout = ${literal(`${taskRoleStatementTimeoutMs}ms`)}`,
      );
      await client.query(
        statement`ALTER ROLE ${role} SET idle_session_timeout = ${literal(`${taskRoleIdleSessionTimeoutMs}ms`)}`,
      );
      await client.query(statement`GRANT ${role} TO CURRENT_USER`);
      for (const group of plan.template.member_of) {
        await client.query(statement`GRANT ${identifier(group)} TO ${role}`);
      }
      for (const grant of plan.template.grants) {
        await client.query(statement`GRANT ${parseGrantClause(grant).part} TO ${role}`);
      }
    }),
  );
}
