import { randomUUID } from "node:crypto";
import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import { maxTaskTtlSeconds } from "../config/defaults.js";
import { WritError } from "../errors/writ-error.js";
import { requireAgent } from "../identity/agents.js";
import { insertLeaseRows, planLeases, provisionLeases } from "../leases/provision.js";
import type { TasksTable } from "../store/schema.js";
import { getTool, type Tool } from "../tools/registry.js";

export type TaskStatus = "active" | "completed" | "expired" | "revoked";

/** One workflow run of one agent. Every credential belongs to exactly one task. */
export interface Task {
  id: string;
  agent_name: string;
  /** Who started it: a person's SPIFFE ID, `schedule:<name>`, or `task:<id>` for a parent task. */
  initiator: string;
  intent: string;
  /** The tools the task may use, by name. */
  tools: string[];
  /** The tool actions the task may use, as `TOOL:ACTION`. */
  actions: string[];
  environment: string;
  /** Epoch seconds; no token of the task outlives it. */
  deadline_s: number;
  status: TaskStatus;
  parent_task_id: string | null;
  created_at: number;
  ended_at: number | null;
  end_reason: string | null;
  /** The root agent's SPIFFE ID for a delegated task (the token's `sub`); null for a root task. */
  subject: string | null;
  /** For a delegated task, the earlier actors, nearest first, that become nested `act` claims. */
  actor_chain: string[];
  /** Delegation depth: 0 for a root task. */
  depth: number;
  breakglass_id: string | null;
}

export interface NewTask {
  agent: string;
  initiator: string;
  intent: string;
  /** `TOOL:ACTION` entries. */
  actions: string[];
  environment: string;
  ttl_seconds: number;
}

/** The longest intent text accepted, in characters. */
const maxIntentLength = 2000;

/** Starts a task after checking its agent, tools, actions and environment. */
export async function startTask(context: BrokerContext, actor: string, input: NewTask): Promise<Task> {
  const agent = await requireAgent(context, input.agent);
  if (agent.status !== "active") throw new WritError("conflict", `agent "${agent.name}" is disabled`);
  if (input.environment !== agent.environment) {
    throw new WritError(
      "invalid_request",
      `environment "${input.environment}" is not agent "${agent.name}"'s environment "${agent.environment}"`,
    );
  }
  if (
    !Number.isInteger(input.ttl_seconds) ||
    input.ttl_seconds < 1 ||
    input.ttl_seconds > maxTaskTtlSeconds
  ) {
    throw new WritError(
      "invalid_request",
      `invalid time to live ${input.ttl_seconds} s: use 1 s to ${maxTaskTtlSeconds} s`,
    );
  }
  if (input.intent.trim().length === 0 || input.intent.length > maxIntentLength) {
    throw new WritError("invalid_request", `a task needs an intent of 1 to ${maxIntentLength} characters`);
  }
  if (input.actions.length === 0)
    throw new WritError("invalid_request", "a task needs at least one TOOL:ACTION");

  const tools = new Map<string, Tool>();
  const actions: string[] = [];
  for (const entry of input.actions) {
    const separator = entry.indexOf(":");
    const toolName = separator === -1 ? "" : entry.slice(0, separator);
    const actionName = entry.slice(separator + 1);
    if (toolName === "" || actionName === "") {
      throw new WritError("invalid_request", `invalid tool action "${entry}": use TOOL:ACTION`);
    }
    const tool = tools.get(toolName) ?? (await getTool(context, toolName));
    if (tool === undefined || !tool.actions.some((action) => action.name === actionName)) {
      throw new WritError("invalid_request", `tool action "${entry}" does not exist`);
    }
    if (tool.environment !== input.environment) {
      throw new WritError(
        "invalid_request",
        `tool "${toolName}" is in environment "${tool.environment}", not "${input.environment}"`,
      );
    }
    tools.set(toolName, tool);
    if (!actions.includes(entry)) actions.push(entry);
  }

  const now = context.clock.nowMs();
  const task: Task = {
    id: randomUUID(),
    agent_name: agent.name,
    initiator: input.initiator,
    intent: input.intent,
    tools: [...tools.keys()],
    actions,
    environment: input.environment,
    deadline_s: epochSeconds(context.clock) + input.ttl_seconds,
    status: "active",
    parent_task_id: null,
    created_at: now,
    ended_at: null,
    end_reason: null,
    subject: null,
    actor_chain: [],
    depth: 0,
    breakglass_id: null,
  };
  // A `SYSTEM:TEMPLATE` entry gives the task its own login role on that system.
  const leases = await planLeases(context, task);
  await context.audit.append(
    {
      kind: "task.started",
      actor,
      task_id: task.id,
      data: {
        agent: agent.spiffe_id,
        initiator: task.initiator,
        intent: task.intent,
        actions: task.actions,
        environment: task.environment,
        deadline_s: task.deadline_s,
      },
    },
    async (trx) => {
      await trx.insertInto("tasks").values(toRow(task)).execute();
      await insertLeaseRows(context, trx, task, leases);
    },
  );
  await provisionLeases(context, actor, task, leases);
  return task;
}

export async function getTask(context: BrokerContext, id: string): Promise<Task | undefined> {
  const row = await context.store.db.selectFrom("tasks").selectAll().where("id", "=", id).executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function requireTask(context: BrokerContext, id: string): Promise<Task> {
  const task = await getTask(context, id);
  if (task === undefined) throw new WritError("not_found", `task "${id}" not found`);
  return task;
}

export async function listTasks(
  context: BrokerContext,
  filter: { agent?: string; status?: string } = {},
): Promise<Task[]> {
  let query = context.store.db.selectFrom("tasks").selectAll();
  if (filter.agent !== undefined) query = query.where("agent_name", "=", filter.agent);
  if (filter.status !== undefined) query = query.where("status", "=", filter.status);
  const rows = await query.orderBy("created_at", "desc").execute();
  return rows.map(fromRow);
}

/** Returns whether a task may still be used: active and before its deadline. */
export function isTaskLive(task: Task, nowS: number): boolean {
  return task.status === "active" && nowS < task.deadline_s;
}

export function toRow(task: Task): TasksTable {
  return {
    ...task,
    tools: JSON.stringify(task.tools),
    actions: JSON.stringify(task.actions),
    actor_chain: JSON.stringify(task.actor_chain),
  };
}

export function fromRow(row: TasksTable): Task {
  return {
    ...row,
    tools: JSON.parse(row.tools) as string[],
    actions: JSON.parse(row.actions) as string[],
    status: row.status as TaskStatus,
    actor_chain: row.actor_chain === null ? [] : (JSON.parse(row.actor_chain) as string[]),
    depth: row.depth ?? 0,
  };
}
