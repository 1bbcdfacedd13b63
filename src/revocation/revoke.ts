import type { Transaction } from "kysely";
import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import { WritError } from "../errors/writ-error.js";
import { logFields } from "../log/fields.js";
import { requireAgent } from "../identity/agents.js";
import { markLeasesForCleanup } from "../leases/leases.js";
import { cleanUpTaskLeases } from "../leases/worker.js";
import type { Database } from "../store/schema.js";
import type { TaskStatus } from "../tasks/tasks.js";

/** What one revocation took away, as `writ revoke` prints it. */
export interface RevocationResult {
  seq: number | null;
  task_ids: string[];
  agent_ids: string[];
  jtis: string[];
}

type EndStatus = Exclude<TaskStatus, "active">;

/**
 * Ends tasks (completed, revoked or expired) and revokes their unexpired tokens in one transaction,
 * then publishes the revocation on the feed. The audit events follow and are retried until written:
 * a revocation takes effect even while the audit log cannot be written.
 */
export async function endTasks(
  context: BrokerContext,
  actor: string,
  taskIds: string[],
  status: EndStatus,
  reason: string,
): Promise<RevocationResult> {
  const result = await context.queue.write((trx) =>
    revokeWithin(context, trx, { taskIds, agentIds: [], jtis: [], status, reason }),
  );
  await context.feed.poll();
  // Dropping the tasks' roles on their systems is tried once now; failures are retried by the upkeep.
  await cleanUpTaskLeases(context, result.task_ids);
  for (const taskId of result.task_ids) {
    context.audit.appendEventually({
      kind: `task.${status === "completed" ? "ended" : status}`,
      actor,
      task_id: taskId,
      data: { status, reason, revoked_jtis: result.jtis.length, revocation_seq: result.seq },
    });
  }
  context.log.info(
    { [logFields.taskId]: result.task_ids, status, revocation_seq: result.seq },
    "tasks ended",
  );
  return result;
}

/**
 * Disables an agent and revokes every unexpired token of it, announcing the agent on the feed so
 * gateways reject its tokens too. With `endTasks` (the default, `writ revoke --agent`) its active
 * tasks end as well; without (`writ agent disable`) they stay for when it is enabled again. Other
 * agents are untouched.
 */
export async function revokeAgent(
  context: BrokerContext,
  actor: string,
  name: string,
  options: { endTasks: boolean } = { endTasks: true },
): Promise<RevocationResult> {
  const agent = await requireAgent(context, name);
  const result = await context.queue.write(async (trx) => {
    await trx
      .updateTable("agents")
      .set({ status: "disabled", updated_at: context.clock.nowMs() })
      .where("name", "=", name)
      .execute();
    // Disabling keeps the tasks for when the agent is enabled again; revoking ends them.
    const active = options.endTasks
      ? await trx
          .selectFrom("tasks")
          .select("id")
          .where("agent_name", "=", name)
          .where("status", "=", "active")
          .execute()
      : [];
    const direct = await trx
      .selectFrom("tokens")
      .select("jti")
      .where("subject", "=", agent.spiffe_id)
      .where("revoked_at", "is", null)
      .where("expires_at_s", ">", epochSeconds(context.clock))
      .execute();
    return revokeWithin(context, trx, {
      taskIds: active.map((row) => row.id),
      agentIds: [agent.spiffe_id],
      jtis: direct.map((row) => row.jti),
      status: "revoked",
      reason: options.endTasks ? `agent ${name} revoked` : `agent ${name} disabled`,
    });
  });
  await context.feed.poll();
  await cleanUpTaskLeases(context, result.task_ids);
  context.audit.appendEventually({
    kind: options.endTasks ? "agent.revoked" : "agent.disabled",
    actor,
    data: {
      agent: agent.spiffe_id,
      task_ids: result.task_ids,
      revoked_jtis: result.jtis,
      revocation_seq: result.seq,
    },
  });
  // Each ended task also gets its own end event, so that its story shows how it ended.
  for (const taskId of result.task_ids) {
    context.audit.appendEventually({
      kind: "task.revoked",
      actor,
      task_id: taskId,
      data: {
        status: "revoked",
        reason: `agent ${name} revoked`,
        revoked_jtis: result.jtis.length,
        revocation_seq: result.seq,
      },
    });
  }
  context.log.info({ [logFields.agentId]: agent.spiffe_id, revocation_seq: result.seq }, "agent revoked");
  return result;
}

/** Revokes one token. `onlyClientId`, when given, limits it to tokens issued to that client. */
export async function revokeToken(
  context: BrokerContext,
  actor: string,
  jti: string,
  onlyClientId?: string,
): Promise<RevocationResult> {
  const token = await context.store.db
    .selectFrom("tokens")
    .selectAll()
    .where("jti", "=", jti)
    .executeTakeFirst();
  if (token === undefined || (onlyClientId !== undefined && token.client_id !== onlyClientId)) {
    throw new WritError("not_found", `token "${jti}" not found`);
  }
  const result = await context.queue.write((trx) =>
    revokeWithin(context, trx, {
      taskIds: [],
      agentIds: [],
      jtis: [jti],
      status: "revoked",
      reason: "token revoked",
    }),
  );
  await context.feed.poll();
  context.audit.appendEventually({
    kind: "token.revoked",
    actor,
    task_id: token.task_id,
    jti,
    data: { subject: token.subject, revocation_seq: result.seq },
  });
  return result;
}

/** Ends the tasks that passed their deadline; returns their ids. */
export async function expireDueTasks(context: BrokerContext): Promise<string[]> {
  const due = await context.store.db
    .selectFrom("tasks")
    .select("id")
    .where("status", "=", "active")
    .where("deadline_s", "<=", epochSeconds(context.clock))
    .execute();
  if (due.length === 0) return [];
  const result = await endTasks(
    context,
    "writ",
    due.map((row) => row.id),
    "expired",
    "deadline passed",
  );
  return result.task_ids;
}

async function revokeWithin(
  context: BrokerContext,
  trx: Transaction<Database>,
  request: { taskIds: string[]; agentIds: string[]; jtis: string[]; status: EndStatus; reason: string },
): Promise<RevocationResult> {
  const nowMs = context.clock.nowMs();
  const nowS = epochSeconds(context.clock);
  let taskIds: string[] = [];
  if (request.taskIds.length > 0) {
    const ended = await trx
      .updateTable("tasks")
      .set({ status: request.status, ended_at: nowMs, end_reason: request.reason })
      .where("id", "in", request.taskIds)
      .where("status", "=", "active")
      .returning("id")
      .execute();
    taskIds = ended.map((row) => row.id);
    // A task's delegated subtree ends with it; a child's end leaves its parent and siblings alone.
    let frontier = [...request.taskIds];
    while (frontier.length > 0) {
      const children = await trx
        .updateTable("tasks")
        .set({ status: "revoked", ended_at: nowMs, end_reason: `parent task ended: ${request.reason}` })
        .where("parent_task_id", "in", frontier)
        .where("status", "=", "active")
        .returning("id")
        .execute();
      frontier = children.map((row) => row.id);
      taskIds.push(...frontier);
    }
    await markLeasesForCleanup(trx, taskIds, nowMs);
  }

  const byTask = taskIds.length > 0;
  const byJti = request.jtis.length > 0;
  if (!byTask && !byJti && request.agentIds.length === 0) {
    return { seq: null, task_ids: [], agent_ids: [], jtis: [] };
  }
  const tokens =
    byTask || byJti
      ? await trx
          .selectFrom("tokens")
          .select(["jti", "expires_at_s"])
          .where("revoked_at", "is", null)
          .where("expires_at_s", ">", nowS)
          .where((eb) =>
            eb.or([
              ...(byTask ? [eb("task_id", "in", taskIds)] : []),
              ...(byJti ? [eb("jti", "in", request.jtis)] : []),
            ]),
          )
          .execute()
      : [];
  const jtis = tokens.map((row) => row.jti);
  if (jtis.length > 0)
    await trx.updateTable("tokens").set({ revoked_at: nowMs }).where("jti", "in", jtis).execute();

  // An agent's revocation must outlive any token the agent may hold, even one not in the store's view.
  const agentHorizonS = request.agentIds.length > 0 ? nowS + context.config.access_token_ttl_seconds : nowS;
  const expiresAtS = Math.max(agentHorizonS, ...tokens.map((row) => row.expires_at_s));
  const seq = await context.feed.insertWithin(trx, {
    reason: request.reason,
    task_ids: taskIds,
    agent_ids: request.agentIds,
    jtis,
    expires_at_s: expiresAtS,
  });
  return { seq, task_ids: taskIds, agent_ids: request.agentIds, jtis };
}
