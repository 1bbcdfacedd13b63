import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import type { AuditRecord } from "../chain.js";
import { accountHolders, type AccountHolding } from "./account-holders.js";
import { TaskLookup, type OnBehalfOf } from "./principals.js";
import { compileResourcePattern } from "./resource-pattern.js";
import { dataString, dataStrings, scanEvents } from "./scan.js";
import { parseTime, parseWindow, type TimeWindow } from "./time.js";

/** The parameters of `writ audit who`, as strings straight from the API query. */
export interface WhoQuery {
  tool?: string;
  action?: string;
  resource?: string;
  account?: string;
  at?: string;
  since?: string;
  until?: string;
}

/** One identity that acted on the tool or resource, on one chain of authority from one root task. */
export interface WhoIdentity {
  /** The SPIFFE ID that acted: the outermost `act.sub` of its token, else `sub`. */
  actor: string;
  on_behalf_of: OnBehalfOf;
  task_ids: string[];
  allowed: number;
  denied: number;
  /** Calls held for a step-up approval. */
  held: number;
  first_ms: number;
  last_ms: number;
}

export type WhoAnswer =
  | {
      kind: "tool";
      tool: string | null;
      action: string | null;
      resource: string | null;
      since_ms: number | null;
      until_ms: number | null;
      identities: WhoIdentity[];
    }
  | {
      kind: "account";
      account: string;
      at_ms: number | null;
      since_ms: number | null;
      until_ms: number | null;
      holders: AccountHolding[];
    };

const decisionKinds = ["tool_call.allowed", "tool_call.denied", "tool_call.held"] as const;

/**
 * Finds who acted on a tool, action or resource in a time window, grouped by acting identity and
 * chain of authority, or who held a shared account at an instant or during a window.
 */
export async function whoActed(context: BrokerContext, query: WhoQuery): Promise<WhoAnswer> {
  const nowMs = context.clock.nowMs();
  const window = parseWindow(query.since, query.until, nowMs);
  if (query.account !== undefined) {
    if (query.tool !== undefined || query.action !== undefined || query.resource !== undefined) {
      throw new WritError(
        "invalid_request",
        "--account cannot be combined with --tool, --action or --resource",
      );
    }
    const atMs = query.at === undefined ? undefined : parseTime("at", query.at, nowMs);
    if (atMs === undefined && window.sinceMs === undefined && window.untilMs === undefined) {
      throw new WritError("invalid_request", "--account needs --at TIME, or --since/--until for a window");
    }
    const holders = await accountHolders(context, query.account, atMs === undefined ? window : { atMs });
    return {
      kind: "account",
      account: query.account,
      at_ms: atMs ?? null,
      since_ms: atMs === undefined ? (window.sinceMs ?? null) : null,
      until_ms: atMs === undefined ? (window.untilMs ?? null) : null,
      holders,
    };
  }
  if (query.at !== undefined) {
    throw new WritError("invalid_request", "--at applies to --account; use --since and --until with --tool");
  }
  if (query.tool === undefined && query.resource === undefined) {
    throw new WritError("invalid_request", "name a --tool, a --resource or an --account");
  }
  return {
    kind: "tool",
    tool: query.tool ?? null,
    action: query.action ?? null,
    resource: query.resource ?? null,
    since_ms: window.sinceMs ?? null,
    until_ms: window.untilMs ?? null,
    identities: await identitiesOnTool(context, query, window),
  };
}

async function identitiesOnTool(
  context: BrokerContext,
  query: WhoQuery,
  window: TimeWindow,
): Promise<WhoIdentity[]> {
  const pattern =
    query.resource === undefined ? undefined : compileResourcePattern(query.resource, context.issuer);
  if (pattern?.tool !== undefined && query.tool !== undefined && pattern.tool !== query.tool) {
    throw new WritError(
      "invalid_request",
      `resource "${query.resource}" is not a resource of tool "${query.tool}"`,
    );
  }
  const tool = query.tool ?? pattern?.tool;

  const matching: { event: AuditRecord; verdict: "allowed" | "denied" | "held" }[] = [];
  await scanEvents(context.store, { ...window, kinds: decisionKinds }, (event) => {
    if (tool !== undefined && dataString(event, "tool") !== tool) return;
    if (query.action !== undefined && dataString(event, "action") !== query.action) return;
    if (pattern !== undefined && !pattern.matches(dataString(event, "path") ?? "")) return;
    matching.push({ event, verdict: event.kind.slice("tool_call.".length) as "allowed" | "denied" | "held" });
  });

  const lookup = new TaskLookup(context);
  const byChain = new Map<string, WhoIdentity>();
  for (const { event, verdict } of matching) {
    const chain = await lookup.onBehalfOf(event.task_id, {
      sub: dataString(event, "sub"),
      actors: dataStrings(event, "actors"),
    });
    const key = JSON.stringify([event.actor, chain.initiator, chain.root_task_id, chain.sub, chain.actors]);
    let identity = byChain.get(key);
    if (identity === undefined) {
      identity = {
        actor: event.actor,
        on_behalf_of: chain,
        task_ids: [],
        allowed: 0,
        denied: 0,
        held: 0,
        first_ms: event.time,
        last_ms: event.time,
      };
      byChain.set(key, identity);
    }
    identity[verdict] += 1;
    identity.last_ms = event.time;
    if (event.task_id !== null && !identity.task_ids.includes(event.task_id))
      identity.task_ids.push(event.task_id);
  }
  return [...byChain.values()];
}
