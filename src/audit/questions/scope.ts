import type { BrokerContext } from "../../broker/context.js";
import { epochSeconds } from "../../clock.js";
import type { TokensTable } from "../../store/schema.js";
import { fromRow as taskFromRow, isTaskLive, type Task } from "../../tasks/tasks.js";
import { getToolByResource } from "../../tools/registry.js";
import { dataString, dataStrings, scanEvents } from "./scan.js";
import { overlaps, type TimeWindow } from "./time.js";

/** A task as a blast radius lists it. Times are in milliseconds, the deadline in seconds. */
export interface TaskSummary {
  id: string;
  agent_name: string;
  status: string;
  initiator: string;
  parent_task_id: string | null;
  depth: number;
  actions: string[];
  breakglass_id: string | null;
  created_at: number;
  ended_at: number | null;
  deadline_s: number;
  /** Active and before its deadline when the result was built. */
  live: boolean;
}

/** A token as a blast radius lists it: its identifiers and lifetime, never the token itself. */
export interface TokenSummary {
  jti: string;
  task_id: string | null;
  /** The client the token was issued to, whose key signs its DPoP proofs. */
  client_id: string;
  subject: string;
  audience: string;
  /** The tool the audience names, or null for the admin API or a removed tool. */
  tool: string | null;
  issued_at_s: number;
  expires_at_s: number;
  revoked_at: number | null;
  /** Not revoked, not expired, and its task (if any) still active. */
  live: boolean;
}

/** A break-glass window for the agent, with how many allowed calls it carried. */
export interface BreakglassWindow {
  id: string;
  status: string;
  requester: string;
  actions: string[];
  reason: string;
  task_id: string | null;
  activated_at: number | null;
  ends_at_s: number | null;
  ended_at: number | null;
  uses: number;
}

/** Delegation levels followed at most, so that a corrupt cycle of parent links cannot loop forever. */
const maxDelegationLevels = 64;

/** Returns an agent's tasks that existed at some time in the window, oldest first. */
export async function tasksOfAgent(
  context: BrokerContext,
  name: string,
  window: TimeWindow,
): Promise<TaskSummary[]> {
  const rows = await context.store.db
    .selectFrom("tasks")
    .selectAll()
    .where("agent_name", "=", name)
    .orderBy("created_at")
    .execute();
  return rows
    .map(taskFromRow)
    .filter((task) => inWindow(task, window))
    .map((task) => summariseTask(task, epochSeconds(context.clock)));
}

export async function tasksByIds(context: BrokerContext, ids: readonly string[]): Promise<TaskSummary[]> {
  if (ids.length === 0) return [];
  return (await tasksById(context, ids)).map((task) => summariseTask(task, epochSeconds(context.clock)));
}

/**
 * Returns the tasks delegated from `parentIds` at any depth, each with its tokens. With `fromJti`,
 * the tree starts instead at the tasks whose delegation ticket was obtained with that token.
 */
export async function delegatedTasks(
  context: BrokerContext,
  parentIds: readonly string[],
  window: TimeWindow,
  fromJti?: string,
): Promise<(TaskSummary & { tokens: TokenSummary[] })[]> {
  const found: Task[] = [];
  let frontier: Task[];
  if (fromJti === undefined) {
    frontier = await childrenOf(context, parentIds);
  } else {
    const ids: string[] = [];
    await scanEvents(context.store, { kinds: ["task.delegated"] }, (event) => {
      if (dataString(event, "parent_jti") === fromJti && event.task_id !== null) ids.push(event.task_id);
    });
    frontier = ids.length === 0 ? [] : await tasksById(context, ids);
  }
  for (let level = 0; level < maxDelegationLevels && frontier.length > 0; level++) {
    const fresh = frontier.filter((task) => !found.some((seen) => seen.id === task.id));
    found.push(...fresh);
    frontier = await childrenOf(
      context,
      fresh.map((task) => task.id),
    );
  }
  const listed = found.filter((task) => inWindow(task, window));
  const result: (TaskSummary & { tokens: TokenSummary[] })[] = [];
  for (const task of listed) {
    result.push({
      ...summariseTask(task, epochSeconds(context.clock)),
      tokens: await tokensOf(context, { taskIds: [task.id] }, window),
    });
  }
  return result;
}

/** Returns the tokens held by `clientId`, issued for `taskIds`, or the one token `jti`, alive in the window. */
export async function tokensOf(
  context: BrokerContext,
  which: { clientId?: string; taskIds?: readonly string[]; jti?: string },
  window: TimeWindow,
): Promise<TokenSummary[]> {
  const taskIds = which.taskIds ?? [];
  if (which.clientId === undefined && taskIds.length === 0 && which.jti === undefined) return [];
  const rows = await context.store.db
    .selectFrom("tokens")
    .selectAll()
    .where((eb) =>
      eb.or([
        ...(which.clientId === undefined ? [] : [eb("client_id", "=", which.clientId)]),
        ...(taskIds.length === 0 ? [] : [eb("task_id", "in", [...taskIds])]),
        ...(which.jti === undefined ? [] : [eb("jti", "=", which.jti)]),
      ]),
    )
    .orderBy("issued_at_s")
    .execute();
  const summaries: TokenSummary[] = [];
  for (const row of rows) {
    if (!overlaps(window, Number(row.issued_at_s) * 1000, Number(row.expires_at_s) * 1000)) continue;
    summaries.push(await summariseToken(context, row));
  }
  return summaries;
}

/** Returns the `TOOL:ACTION` entries a token was issued with, read from its `token.issued` event. */
export async function tokenGrant(context: BrokerContext, jti: string): Promise<string[]> {
  let issued: { aud?: string; actions: string[] } | undefined;
  await scanEvents(context.store, { kinds: ["token.issued"] }, (event) => {
    if (event.jti !== jti) return true;
    issued = { aud: dataString(event, "aud"), actions: dataStrings(event, "actions") };
    return false;
  });
  if (issued?.aud === undefined) return [];
  const tool = await getToolByResource(context, issued.aud);
  return tool === undefined ? [] : issued.actions.map((action) => `${tool.name}:${action}`);
}

/** Returns break-glass windows for a target SPIFFE ID, or the one window `id`, that overlap the window. */
export async function breakglassWindows(
  context: BrokerContext,
  which: { target: string } | { id: string },
  window: TimeWindow,
): Promise<BreakglassWindow[]> {
  let query = context.store.db.selectFrom("breakglass").selectAll().orderBy("created_at");
  query = "id" in which ? query.where("id", "=", which.id) : query.where("target", "=", which.target);
  const rows = await query.execute();
  return rows
    .filter((row) =>
      overlaps(
        window,
        Number(row.activated_at ?? row.created_at),
        row.ended_at === null ? null : Number(row.ended_at),
      ),
    )
    .map((row) => ({
      id: row.id,
      status: row.status,
      requester: row.requester,
      actions: JSON.parse(row.actions) as string[],
      reason: row.reason,
      task_id: row.task_id,
      activated_at: row.activated_at === null ? null : Number(row.activated_at),
      ends_at_s: row.ends_at_s === null ? null : Number(row.ends_at_s),
      ended_at: row.ended_at === null ? null : Number(row.ended_at),
      uses: 0,
    }));
}

async function childrenOf(context: BrokerContext, parentIds: readonly string[]): Promise<Task[]> {
  if (parentIds.length === 0) return [];
  const rows = await context.store.db
    .selectFrom("tasks")
    .selectAll()
    .where("parent_task_id", "in", [...parentIds])
    .orderBy("created_at")
    .execute();
  return rows.map(taskFromRow);
}

async function tasksById(context: BrokerContext, ids: readonly string[]): Promise<Task[]> {
  const rows = await context.store.db
    .selectFrom("tasks")
    .selectAll()
    .where("id", "in", [...ids])
    .execute();
  return rows.map(taskFromRow);
}

function inWindow(task: Task, window: TimeWindow): boolean {
  return overlaps(window, Number(task.created_at), task.ended_at === null ? null : Number(task.ended_at));
}

function summariseTask(task: Task, nowS: number): TaskSummary {
  return {
    id: task.id,
    agent_name: task.agent_name,
    status: task.status,
    initiator: task.initiator,
    parent_task_id: task.parent_task_id,
    depth: task.depth,
    actions: task.actions,
    breakglass_id: task.breakglass_id,
    created_at: Number(task.created_at),
    ended_at: task.ended_at === null ? null : Number(task.ended_at),
    deadline_s: Number(task.deadline_s),
    live: isTaskLive(task, nowS),
  };
}

async function summariseToken(context: BrokerContext, row: TokensTable): Promise<TokenSummary> {
  const tool = await getToolByResource(context, row.audience);
  const nowS = epochSeconds(context.clock);
  let taskLive = true;
  if (row.task_id !== null) {
    const [task] = await tasksById(context, [row.task_id]);
    taskLive = task !== undefined && isTaskLive(task, nowS);
  }
  return {
    jti: row.jti,
    task_id: row.task_id,
    client_id: row.client_id,
    subject: row.subject,
    audience: row.audience,
    tool: tool?.name ?? null,
    issued_at_s: Number(row.issued_at_s),
    expires_at_s: Number(row.expires_at_s),
    revoked_at: row.revoked_at === null ? null : Number(row.revoked_at),
    live: row.revoked_at === null && Number(row.expires_at_s) > nowS && taskLive,
  };
}
