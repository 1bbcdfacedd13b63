import type { BrokerContext } from "../../broker/context.js";
import { getTool } from "../../tools/registry.js";
import type { AuditRecord } from "../chain.js";
import { dataString, scanEvents } from "./scan.js";
import type { TimeWindow } from "./time.js";

/** A tool action an identity was granted, and whether a live task or token still grants it. */
export interface Grant {
  tool: string;
  action: string;
  live: boolean;
  /** The tasks (for an agent) or the token (for a token) that granted it. */
  granted_by: string[];
}

/** Allowed calls of one identity to one tool action. */
export interface Reach {
  tool: string;
  action: string;
  /** The identity that made the calls; a delegate's calls show the delegate. */
  actor: string;
  calls: number;
  first_ms: number;
  last_ms: number;
}

/** A tool whose upstream credential the gateway injected into allowed calls. */
export interface InjectedCredential {
  tool: string;
  /** The places the credential went, such as `header:Authorization` or `env:PGPASSWORD`, never its value. */
  injections: string[];
  /** The names of the stored secrets the injections read. */
  secrets: string[];
  calls: number;
}

/** Adds `TOOL:ACTION` entries to a grant list, merging repeats. */
export function addGrants(
  grants: Map<string, Grant>,
  entries: readonly string[],
  live: boolean,
  source: string,
): void {
  for (const entry of entries) {
    const separator = entry.indexOf(":");
    if (separator < 1) continue;
    const grant = grants.get(entry) ?? {
      tool: entry.slice(0, separator),
      action: entry.slice(separator + 1),
      live: false,
      granted_by: [],
    };
    grant.live ||= live;
    if (!grant.granted_by.includes(source)) grant.granted_by.push(source);
    grants.set(entry, grant);
  }
}

/** The result of `allowedCalls`: calls grouped by tool, action and actor, and uses per break-glass window. */
export interface AllowedCalls {
  reach: Reach[];
  breakglassUses: Map<string, number>;
}

/** Groups the allowed tool calls in the window that `selects` accepts. */
export async function allowedCalls(
  context: BrokerContext,
  window: TimeWindow,
  selects: (event: AuditRecord) => boolean,
): Promise<AllowedCalls> {
  const reach = new Map<string, Reach>();
  const breakglassUses = new Map<string, number>();
  await scanEvents(context.store, { ...window, kinds: ["tool_call.allowed"] }, (event) => {
    if (!selects(event)) return;
    const tool = dataString(event, "tool") ?? "";
    const action = dataString(event, "action") ?? "";
    const key = JSON.stringify([tool, action, event.actor]);
    const found = reach.get(key);
    if (found === undefined) {
      reach.set(key, {
        tool,
        action,
        actor: event.actor,
        calls: 1,
        first_ms: event.time,
        last_ms: event.time,
      });
    } else {
      found.calls += 1;
      found.last_ms = event.time;
    }
    const breakglassId = dataString(event, "breakglass_id");
    if (breakglassId !== undefined)
      breakglassUses.set(breakglassId, (breakglassUses.get(breakglassId) ?? 0) + 1);
  });
  return { reach: [...reach.values()], breakglassUses };
}

/** Lists the tools among `reach` whose registration injects an upstream credential. */
export async function injectedCredentials(
  context: BrokerContext,
  reach: readonly Reach[],
): Promise<InjectedCredential[]> {
  const calls = new Map<string, number>();
  for (const entry of reach) calls.set(entry.tool, (calls.get(entry.tool) ?? 0) + entry.calls);
  const injected: InjectedCredential[] = [];
  for (const [name, count] of calls) {
    const tool = await getTool(context, name);
    if (tool === undefined) continue;
    const injections: string[] = [];
    const secrets = new Set<string>();
    for (const rule of objectList(tool.config.inject)) {
      injections.push(`${String(rule.location)}:${String(rule.name)}`);
      for (const secret of stringList(rule.secrets)) secrets.add(secret);
    }
    for (const variable of objectList(tool.config.env)) {
      const named = stringList(variable.secrets);
      if (named.length === 0) continue;
      injections.push(`env:${String(variable.name)}`);
      for (const secret of named) secrets.add(secret);
    }
    if (injections.length > 0) injected.push({ tool: name, injections, secrets: [...secrets], calls: count });
  }
  return injected;
}

function objectList(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value)
    ? value.filter((item): item is Record<string, unknown> => typeof item === "object" && item !== null)
    : [];
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : [];
}
