import { randomUUID } from "node:crypto";
import { sendAlert } from "../alerts/alerts.js";
import { openApprovalWithin, type Approval } from "../approvals/approvals.js";
import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import { maxBreakglassSeconds } from "../config/defaults.js";
import { WritError } from "../errors/writ-error.js";
import { requireAgent } from "../identity/agents.js";
import { identityName } from "../identity/spiffe.js";
import { endTasks } from "../revocation/revoke.js";
import type { BreakglassTable } from "../store/schema.js";
import { startTask } from "../tasks/tasks.js";
import { getTool } from "../tools/registry.js";

export type BreakglassStatus = "pending" | "active" | "ended" | "expired" | "rejected" | "cancelled";

/** An emergency window: an agent may use the listed actions, high-risk ones included, until it ends. */
export interface Breakglass {
  id: string;
  /** The SPIFFE ID of the person who asked for the window. */
  requester: string;
  /** The SPIFFE ID of the agent the window is for. */
  target: string;
  /** `TOOL:ACTION` entries. */
  actions: string[];
  reason: string;
  duration_s: number;
  status: BreakglassStatus;
  approval_id: string;
  /** The task the window started for its agent, once active. */
  task_id: string | null;
  created_at: number;
  activated_at: number | null;
  /** Epoch seconds at which the window closes and its task is revoked. */
  ends_at_s: number | null;
  ended_at: number | null;
  /** A post-incident note, attached once the window is over. */
  note: string | null;
}

export interface NewBreakglass {
  agent?: string;
  human?: string;
  actions: string[];
  reason: string;
  duration_s: number;
}

const maxReasonLength = 2000;
const maxNoteLength = 10_000;
const finishedStatuses: readonly BreakglassStatus[] = ["ended", "expired", "rejected", "cancelled"];

/** Opens a break-glass request and its approval; the window opens only once people approve it. */
export async function requestBreakglass(
  context: BrokerContext,
  requester: string,
  input: NewBreakglass,
): Promise<Breakglass> {
  if (input.human !== undefined) {
    throw new WritError(
      "invalid_request",
      "break-glass for a person is not supported yet: request it for an agent with --agent",
    );
  }
  if (input.agent === undefined) throw new WritError("invalid_request", "name the agent the window is for");
  const agent = await requireAgent(context, input.agent);
  if (agent.status !== "active") throw new WritError("conflict", `agent "${agent.name}" is disabled`);
  if (
    !Number.isInteger(input.duration_s) ||
    input.duration_s < 1 ||
    input.duration_s > maxBreakglassSeconds
  ) {
    throw new WritError(
      "invalid_request",
      `invalid break-glass duration ${input.duration_s} s: use 1 s to ${maxBreakglassSeconds} s`,
    );
  }
  if (input.reason.trim().length === 0 || input.reason.length > maxReasonLength) {
    throw new WritError(
      "invalid_request",
      `a break-glass request needs a reason of 1 to ${maxReasonLength} characters`,
    );
  }
  await checkActions(context, input.actions, agent.environment);

  const id = randomUUID();
  const breakglass = await context.queue.write(async (trx) => {
    const approval = await openApprovalWithin(context, trx, {
      kind: "breakglass",
      requester,
      task_id: null,
      digest: null,
      rule: { roles: ["approver", "admin"], people: [], count: context.config.breakglass_approvals },
      subject: {
        breakglass_id: id,
        agent: agent.spiffe_id,
        actions: input.actions,
        reason: input.reason,
        duration_s: input.duration_s,
      },
    });
    const created: Breakglass = {
      id,
      requester,
      target: agent.spiffe_id,
      actions: [...new Set(input.actions)],
      reason: input.reason,
      duration_s: input.duration_s,
      status: "pending",
      approval_id: approval.id,
      task_id: null,
      created_at: context.clock.nowMs(),
      activated_at: null,
      ends_at_s: null,
      ended_at: null,
      note: null,
    };
    await trx.insertInto("breakglass").values(toRow(created)).execute();
    await context.audit.appendWithin(trx, {
      kind: "breakglass.requested",
      actor: requester,
      data: alertData(created),
    });
    return created;
  });
  sendAlert(context, "breakglass.requested", alertData(breakglass));
  return breakglass;
}

async function checkActions(context: BrokerContext, actions: string[], environment: string): Promise<void> {
  if (actions.length === 0)
    throw new WritError("invalid_request", "a break-glass request needs at least one TOOL:ACTION");
  for (const entry of actions) {
    const separator = entry.indexOf(":");
    const tool = separator < 1 ? undefined : await getTool(context, entry.slice(0, separator));
    if (tool === undefined || !tool.actions.some((action) => action.name === entry.slice(separator + 1))) {
      throw new WritError("invalid_request", `tool action "${entry}" does not exist`);
    }
    if (tool.environment !== environment) {
      throw new WritError(
        "invalid_request",
        `tool "${tool.name}" is not in the agent's environment "${environment}"`,
      );
    }
  }
}

/**
 * Opens a granted window: starts a task for its agent with the requested actions, the reason as
 * intent and the window's end as deadline, and marks the task as break-glass so that its tokens
 * carry `breakglass_id`. `actor` is the person whose vote granted it.
 */
export async function activateBreakglass(
  context: BrokerContext,
  actor: string,
  approval: Approval,
): Promise<Breakglass> {
  const breakglass = await requireBreakglassByApproval(context, approval.id);
  if (breakglass.status !== "pending") return breakglass;
  const agentName = identityName(breakglass.target, context.config.trust_domain, "agent");
  if (agentName === undefined) throw new WritError("server_error", "break-glass target is not an agent");
  const agent = await requireAgent(context, agentName);

  // NOTE: startTask cannot set `breakglass_id` itself, so the task exists for a moment without it.
  // No caller has its id yet, and a failure below revokes it.
  const task = await startTask(context, actor, {
    agent: agent.name,
    initiator: breakglass.requester,
    intent: breakglass.reason,
    actions: breakglass.actions,
    environment: agent.environment,
    ttl_seconds: breakglass.duration_s,
  });
  const now = context.clock.nowMs();
  const active: Breakglass = {
    ...breakglass,
    status: "active",
    task_id: task.id,
    activated_at: now,
    ends_at_s: task.deadline_s,
  };
  try {
    await context.audit.append(
      { kind: "breakglass.activated", actor, task_id: task.id, data: alertData(active) },
      async (trx) => {
        await trx
          .updateTable("tasks")
          .set({ breakglass_id: breakglass.id })
          .where("id", "=", task.id)
          .execute();
        await trx
          .updateTable("breakglass")
          .set({ status: "active", task_id: task.id, activated_at: now, ends_at_s: task.deadline_s })
          .where("id", "=", breakglass.id)
          .execute();
      },
    );
  } catch (error) {
    await endTasks(context, "writ", [task.id], "revoked", "break-glass activation failed");
    throw error;
  }
  sendAlert(context, "breakglass.activated", alertData(active));
  return active;
}

/** Marks a window whose approval was rejected or expired before it opened. */
export async function closePendingBreakglass(
  context: BrokerContext,
  actor: string,
  approval: Approval,
  status: "rejected" | "expired",
): Promise<void> {
  const updated = await context.queue.write((trx) =>
    trx
      .updateTable("breakglass")
      .set({ status, ended_at: context.clock.nowMs() })
      .where("approval_id", "=", approval.id)
      .where("status", "=", "pending")
      .returningAll()
      .execute(),
  );
  for (const row of updated) {
    const closed = fromRow(row);
    context.audit.appendEventually({ kind: `breakglass.${status}`, actor, data: alertData(closed) });
    sendAlert(context, `breakglass.${status}`, alertData(closed));
  }
}

/**
 * Ends a window: an active one revokes its task and every token issued under it; a pending one is
 * cancelled with its approval. `status` is `expired` when the sweeper ends it at `ends_at_s`.
 */
export async function endBreakglass(
  context: BrokerContext,
  actor: string,
  id: string,
  status: "ended" | "expired" = "ended",
): Promise<Breakglass> {
  const breakglass = await requireBreakglass(context, id);
  const now = context.clock.nowMs();
  if (breakglass.status === "pending") {
    await context.audit.append(
      { kind: "breakglass.cancelled", actor, data: alertData(breakglass) },
      async (trx) => {
        await trx
          .updateTable("approvals")
          .set({ status: "cancelled", decided_at: now })
          .where("id", "=", breakglass.approval_id)
          .execute();
        await trx
          .updateTable("breakglass")
          .set({ status: "cancelled", ended_at: now })
          .where("id", "=", id)
          .execute();
      },
    );
    sendAlert(context, "breakglass.cancelled", alertData(breakglass));
    return requireBreakglass(context, id);
  }
  if (breakglass.status !== "active" || breakglass.task_id === null) {
    throw new WritError("conflict", `break-glass window "${id}" is already ${breakglass.status}`);
  }
  // The task ends first: if marking the window fails, the sweeper ends it again and that is a no-op.
  const revocation = await endTasks(
    context,
    actor,
    [breakglass.task_id],
    status === "expired" ? "expired" : "revoked",
    status === "expired" ? "break-glass window expired" : "break-glass window ended early",
  );
  await context.queue.write((trx) =>
    trx
      .updateTable("breakglass")
      .set({ status, ended_at: now })
      .where("id", "=", id)
      .where("status", "=", "active")
      .execute(),
  );
  const ended = { ...breakglass, status, ended_at: now };
  const data = { ...alertData(ended), revoked_jtis: revocation.jtis.length, revocation_seq: revocation.seq };
  context.audit.appendEventually({ kind: `breakglass.${status}`, actor, task_id: breakglass.task_id, data });
  sendAlert(context, `breakglass.${status}`, data);
  return ended;
}

/** Ends every active window whose end has passed; the sweeper calls it. */
export async function expireDueBreakglass(context: BrokerContext): Promise<string[]> {
  const due = await context.store.db
    .selectFrom("breakglass")
    .select("id")
    .where("status", "=", "active")
    .where("ends_at_s", "<=", epochSeconds(context.clock))
    .execute();
  for (const row of due) await endBreakglass(context, "writ", row.id, "expired");
  return due.map((row) => row.id);
}

/** Attaches a post-incident note to a finished window, replacing an earlier one; the audit log keeps each. */
export async function noteBreakglass(
  context: BrokerContext,
  actor: string,
  id: string,
  text: string,
): Promise<Breakglass> {
  const breakglass = await requireBreakglass(context, id);
  if (!finishedStatuses.includes(breakglass.status)) {
    throw new WritError(
      "conflict",
      `break-glass window "${id}" is ${breakglass.status}; add the note once it has ended`,
    );
  }
  if (text.trim().length === 0 || text.length > maxNoteLength) {
    throw new WritError("invalid_request", `a note needs 1 to ${maxNoteLength} characters`);
  }
  await context.audit.append(
    { kind: "breakglass.noted", actor, task_id: breakglass.task_id, data: { breakglass_id: id, note: text } },
    async (trx) => {
      await trx.updateTable("breakglass").set({ note: text }).where("id", "=", id).execute();
    },
  );
  return { ...breakglass, note: text };
}

export async function requireBreakglass(context: BrokerContext, id: string): Promise<Breakglass> {
  const row = await context.store.db
    .selectFrom("breakglass")
    .selectAll()
    .where("id", "=", id)
    .executeTakeFirst();
  if (row === undefined) throw new WritError("not_found", `break-glass window "${id}" not found`);
  return fromRow(row);
}

async function requireBreakglassByApproval(context: BrokerContext, approvalId: string): Promise<Breakglass> {
  const row = await context.store.db
    .selectFrom("breakglass")
    .selectAll()
    .where("approval_id", "=", approvalId)
    .executeTakeFirst();
  if (row === undefined)
    throw new WritError("not_found", `no break-glass window for approval "${approvalId}"`);
  return fromRow(row);
}

export async function listBreakglass(
  context: BrokerContext,
  filter: { status?: string } = {},
): Promise<Breakglass[]> {
  let query = context.store.db.selectFrom("breakglass").selectAll();
  if (filter.status !== undefined) query = query.where("status", "=", filter.status);
  const rows = await query.orderBy("created_at", "desc").limit(1000).execute();
  return rows.map(fromRow);
}

/** Returns the facts of a window that its audit events and alerts carry. */
function alertData(breakglass: Breakglass): Record<string, unknown> {
  return {
    breakglass_id: breakglass.id,
    requester: breakglass.requester,
    agent: breakglass.target,
    actions: breakglass.actions,
    reason: breakglass.reason,
    duration_s: breakglass.duration_s,
    status: breakglass.status,
    approval_id: breakglass.approval_id,
    task_id: breakglass.task_id,
    ends_at_s: breakglass.ends_at_s,
  };
}

function toRow(breakglass: Breakglass): BreakglassTable {
  return { ...breakglass, actions: JSON.stringify(breakglass.actions) };
}

function fromRow(row: BreakglassTable): Breakglass {
  return {
    ...row,
    actions: JSON.parse(row.actions) as string[],
    status: row.status as BreakglassStatus,
    duration_s: Number(row.duration_s),
    created_at: Number(row.created_at),
    activated_at: row.activated_at === null ? null : Number(row.activated_at),
    ends_at_s: row.ends_at_s === null ? null : Number(row.ends_at_s),
    ended_at: row.ended_at === null ? null : Number(row.ended_at),
  };
}
