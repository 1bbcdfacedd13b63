import type { BrokerContext } from "../../broker/context.js";
import { spiffeId } from "../../identity/spiffe.js";
import type { AuditRecord } from "../chain.js";
import { TaskLookup, type OnBehalfOf } from "./principals.js";
import { dataString, scanEvents } from "./scan.js";
import { overlaps, type TimeWindow } from "./time.js";

/** The holder of a shared account as `account.checked_out` records it. */
export type AccountHolder =
  { kind: "task"; task_id: string; agent: string } | { kind: "human"; human_id: string; spiffe_id: string };

/** One checkout of a shared account, from checkout to check-in, expiry or a later checkout. */
export interface AccountHolding {
  account: string;
  system: string | null;
  role: string | null;
  holder: AccountHolder;
  /** The SPIFFE ID that held the password: the task's agent, or the person. */
  identity: string;
  /** For a task holder, on whose behalf the task ran; null for a person. */
  on_behalf_of: OnBehalfOf | null;
  checkout_seq: number;
  checked_out_ms: number;
  expires_at_ms: number | null;
  /** When the holding ended by check-in or an expiry event; null while no such event exists. */
  ended_ms: number | null;
  ended_by: "checked_in" | "expired" | "checked_out_again" | null;
}

/** The audit events that move a shared account between holders. */
export const accountEventKinds = ["account.checked_out", "account.checked_in", "account.expired"] as const;

/**
 * Returns who held a shared account at one instant (`atMs`) or at any time during a window, replaying
 * the account's checkout, check-in and expiry events in order. A holding with no end event ends at
 * its `expires_at`, because the password is rotated then even if the expiry event is not written yet.
 */
export async function accountHolders(
  context: BrokerContext,
  account: string,
  when: { atMs: number } | TimeWindow,
): Promise<AccountHolding[]> {
  const holdings = await replayHoldings(context, (event) => dataString(event, "account") === account);
  return holdings.filter((holding) => {
    const endMs = holdingEnd(holding);
    if ("atMs" in when) return holding.checked_out_ms <= when.atMs && (endMs === null || when.atMs < endMs);
    return overlaps(when, holding.checked_out_ms, endMs);
  });
}

/** Returns when a holding ended or ends: its end event, else its expiry, else null (open). */
export function holdingEnd(holding: AccountHolding): number | null {
  return holding.ended_ms ?? holding.expires_at_ms;
}

/** Replays every account event that `selects` accepts into holdings, oldest first. */
export async function replayHoldings(
  context: BrokerContext,
  selects: (event: AuditRecord) => boolean,
): Promise<AccountHolding[]> {
  const lookup = new TaskLookup(context);
  const holdings: AccountHolding[] = [];
  const open = new Map<string, AccountHolding>();
  const events: AuditRecord[] = [];
  await scanEvents(context.store, { kinds: accountEventKinds }, (event) => {
    if (selects(event)) events.push(event);
  });

  for (const event of events) {
    const account = dataString(event, "account");
    if (account === undefined) continue;
    const current = open.get(account);
    if (event.kind !== "account.checked_out") {
      if (current === undefined) continue;
      current.ended_ms = event.time;
      current.ended_by = event.kind === "account.checked_in" ? "checked_in" : "expired";
      open.delete(account);
      continue;
    }
    const holder = parseHolder(event.data.holder);
    if (holder === undefined) continue;
    if (current !== undefined) {
      current.ended_ms = event.time;
      current.ended_by = "checked_out_again";
    }
    const expiresAt = event.data.expires_at;
    const holding: AccountHolding = {
      account,
      system: dataString(event, "system") ?? null,
      role: dataString(event, "role") ?? null,
      holder,
      identity: holder.kind === "human" ? holder.spiffe_id : agentIdentity(context, holder.agent),
      on_behalf_of: holder.kind === "task" ? await lookup.onBehalfOf(holder.task_id) : null,
      checkout_seq: event.seq,
      checked_out_ms: event.time,
      expires_at_ms: typeof expiresAt === "number" ? expiresAt : null,
      ended_ms: null,
      ended_by: null,
    };
    holdings.push(holding);
    open.set(account, holding);
  }
  return holdings;
}

function parseHolder(value: unknown): AccountHolder | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const holder = value as Record<string, unknown>;
  if (holder.kind === "task" && typeof holder.task_id === "string" && typeof holder.agent === "string") {
    return { kind: "task", task_id: holder.task_id, agent: holder.agent };
  }
  if (
    holder.kind === "human" &&
    typeof holder.human_id === "string" &&
    typeof holder.spiffe_id === "string"
  ) {
    return { kind: "human", human_id: holder.human_id, spiffe_id: holder.spiffe_id };
  }
  return undefined;
}

/** Returns an agent's SPIFFE ID whether the event names the agent by name or by SPIFFE ID. */
function agentIdentity(context: BrokerContext, agent: string): string {
  if (agent.startsWith("spiffe://")) return agent;
  try {
    return spiffeId(context.config.trust_domain, "agent", agent);
  } catch {
    return agent;
  }
}
