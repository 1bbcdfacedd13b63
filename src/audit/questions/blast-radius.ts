import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { getAgent } from "../../identity/agents.js";
import { replayHoldings, holdingEnd, type AccountHolding } from "./account-holders.js";
import { identityOf } from "./principals.js";
import { leasesOfTasks, type LeaseSummary } from "./leases.js";
import {
  addGrants,
  allowedCalls,
  injectedCredentials,
  type AllowedCalls,
  type Grant,
  type InjectedCredential,
  type Reach,
} from "./reach.js";
import {
  breakglassWindows,
  delegatedTasks,
  tasksByIds,
  tasksOfAgent,
  tokenGrant,
  tokensOf,
  type BreakglassWindow,
  type TaskSummary,
  type TokenSummary,
} from "./scope.js";
import { dataString, dataStrings } from "./scan.js";
import { overlaps, parseWindow, type TimeWindow } from "./time.js";

/** The parameters of `writ audit blast-radius`, as strings straight from the API query. */
export interface BlastRadiusQuery {
  agent?: string;
  token?: string;
  since?: string;
  until?: string;
}

/** Everything one agent or one token could reach and did reach, and how to cut it off alone. */
export interface BlastRadius {
  subject:
    | { kind: "agent"; name: string; spiffe_id: string; status: string }
    | { kind: "token"; jti: string; client_id: string; sub: string; task_id: string | null };
  since_ms: number | null;
  until_ms: number | null;
  could_reach: Grant[];
  did_reach: Reach[];
  /** The agent's own tasks, or the token's task. */
  tasks: TaskSummary[];
  /** The agent's tokens, or the token itself. */
  tokens: TokenSummary[];
  /** Tasks delegated from those tasks (for a token: from that token) at any depth, with their tokens. */
  delegated: (TaskSummary & { tokens: TokenSummary[] })[];
  leases: LeaseSummary[];
  account_checkouts: AccountHolding[];
  breakglass: BreakglassWindow[];
  injected_credentials: InjectedCredential[];
  /** The `writ revoke` command that cuts off this agent or token and nothing else. */
  revoke: { command: string; args: string[] };
}

/** Collects the blast radius of an agent (`--agent`) or of one token (`--token`), within an optional window. */
export async function blastRadius(context: BrokerContext, query: BlastRadiusQuery): Promise<BlastRadius> {
  if ((query.agent === undefined) === (query.token === undefined)) {
    throw new WritError("invalid_request", "give exactly one of --agent NAME or --token JTI");
  }
  const window = parseWindow(query.since, query.until, context.clock.nowMs());
  return query.agent !== undefined
    ? agentRadius(context, query.agent, window)
    : tokenRadius(context, query.token as string, window);
}

async function agentRadius(context: BrokerContext, given: string, window: TimeWindow): Promise<BlastRadius> {
  const id = identityOf(context, "agent", given);
  const name = id.slice(id.lastIndexOf("/") + 1);
  const agent = await getAgent(context, name);
  if (agent === undefined) throw new WritError("not_found", `agent "${given}" not found`);

  const tasks = await tasksOfAgent(context, name, window);
  const taskIds = tasks.map((task) => task.id);
  const tokens = await tokensOf(context, { clientId: id, taskIds }, window);
  const delegated = await delegatedTasks(context, taskIds, window);
  const delegatedIds = new Set(delegated.map((task) => task.id));

  const grants = new Map<string, Grant>();
  for (const task of tasks) addGrants(grants, task.actions, task.live, task.id);

  const inScope = new Set([...taskIds, ...delegatedIds]);
  const calls = await allowedCalls(
    context,
    window,
    (event) =>
      event.actor === id ||
      dataString(event, "sub") === id ||
      dataStrings(event, "actors").includes(id) ||
      (event.task_id !== null && inScope.has(event.task_id)),
  );
  return assemble(context, window, {
    subject: { kind: "agent", name, spiffe_id: id, status: agent.status },
    grants,
    calls,
    tasks,
    tokens,
    delegated,
    breakglass: await breakglassWindows(context, { target: id }, window),
    holderTest: (holding) =>
      (holding.holder.kind === "task" && inScope.has(holding.holder.task_id)) || holding.identity === id,
    revokeArgs: ["revoke", "--agent", name],
  });
}

async function tokenRadius(context: BrokerContext, jti: string, window: TimeWindow): Promise<BlastRadius> {
  const [token] = await tokensOf(context, { jti }, {});
  if (token === undefined) throw new WritError("not_found", `token "${jti}" not found`);
  const task = token.task_id === null ? undefined : (await tasksByIds(context, [token.task_id]))[0];
  const tasks = task === undefined ? [] : [task];
  const delegated = await delegatedTasks(context, [], window, jti);
  const delegatedIds = new Set(delegated.map((child) => child.id));

  const grants = new Map<string, Grant>();
  const granted = await tokenGrant(context, jti);
  addGrants(grants, granted, token.live, jti);

  const calls = await allowedCalls(
    context,
    window,
    (event) => event.jti === jti || (event.task_id !== null && delegatedIds.has(event.task_id)),
  );
  const breakglassId = task?.breakglass_id ?? null;
  return assemble(context, window, {
    subject: { kind: "token", jti, client_id: token.client_id, sub: token.subject, task_id: token.task_id },
    grants,
    calls,
    tasks,
    tokens: [token],
    delegated,
    breakglass: breakglassId === null ? [] : await breakglassWindows(context, { id: breakglassId }, {}),
    holderTest: (holding) =>
      holding.holder.kind === "task" &&
      (holding.holder.task_id === token.task_id || delegatedIds.has(holding.holder.task_id)),
    revokeArgs: ["revoke", "--token", jti],
  });
}

interface Parts {
  subject: BlastRadius["subject"];
  grants: Map<string, Grant>;
  calls: AllowedCalls;
  tasks: TaskSummary[];
  tokens: TokenSummary[];
  delegated: BlastRadius["delegated"];
  breakglass: BreakglassWindow[];
  holderTest: (holding: AccountHolding) => boolean;
  revokeArgs: string[];
}

async function assemble(context: BrokerContext, window: TimeWindow, parts: Parts): Promise<BlastRadius> {
  const taskIds = [...parts.tasks.map((task) => task.id), ...parts.delegated.map((task) => task.id)];
  const holdings = await replayHoldings(context, () => true);
  for (const opened of parts.breakglass) opened.uses = parts.calls.breakglassUses.get(opened.id) ?? 0;
  return {
    subject: parts.subject,
    since_ms: window.sinceMs ?? null,
    until_ms: window.untilMs ?? null,
    could_reach: [...parts.grants.values()],
    did_reach: parts.calls.reach,
    tasks: parts.tasks,
    tokens: parts.tokens,
    delegated: parts.delegated,
    leases: await leasesOfTasks(context, taskIds),
    account_checkouts: holdings.filter(
      (holding) => parts.holderTest(holding) && overlaps(window, holding.checked_out_ms, holdingEnd(holding)),
    ),
    breakglass: parts.breakglass,
    injected_credentials: await injectedCredentials(context, parts.calls.reach),
    revoke: { command: `writ ${parts.revokeArgs.map(shellWord).join(" ")}`, args: parts.revokeArgs },
  };
}

/** Quotes a word for a POSIX shell when it contains anything but safe characters. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9._:/=-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
