// The rows of each investigation result, which `renderTable` and `renderCsv` print. The columns are
// the same in both, and only the event detail is cut for the terminal.

import type { AuditRecord } from "../chain.js";
import type { BlastRadius } from "./blast-radius.js";
import { isoTime, type Cell, type Rows } from "./format.js";
import type { TokenSummary } from "./scope.js";
import type { WhoAnswer } from "./who.js";

/** Rows of an event listing. `detailChars` cuts the JSON detail column, for terminal output. */
export function eventRows(events: readonly AuditRecord[], detailChars?: number): Rows {
  return {
    header: ["SEQ", "TIME", "KIND", "ACTOR", "TASK", "TOOL", "ACTION", "DECISION", "BREAKGLASS", "DETAIL"],
    rows: events.map((event) => [
      event.seq,
      isoTime(event.time),
      event.kind,
      event.actor,
      event.task_id,
      text(event.data.tool),
      text(event.data.action),
      text(event.data.decision),
      text(event.data.breakglass_id),
      cut(JSON.stringify(event.data), detailChars),
    ]),
  };
}

/** Rows of a `who` result: one per identity and chain, or one per holding of a shared account. */
export function whoRows(answer: WhoAnswer): Rows {
  if (answer.kind === "account") {
    return {
      header: [
        "ACCOUNT",
        "HOLDER",
        "KIND",
        "TASK",
        "SUB",
        "INITIATOR",
        "CHECKED_OUT",
        "ENDED",
        "ENDED_BY",
        "EXPIRES",
      ],
      rows: answer.holders.map((holding) => [
        holding.account,
        holding.identity,
        holding.holder.kind,
        holding.holder.kind === "task" ? holding.holder.task_id : "",
        holding.on_behalf_of?.sub,
        holding.on_behalf_of?.initiator,
        isoTime(holding.checked_out_ms),
        isoTime(holding.ended_ms),
        holding.ended_by,
        isoTime(holding.expires_at_ms),
      ]),
    };
  }
  return {
    header: ["ACTOR", "SUB", "ACTORS", "INITIATOR", "TASKS", "ALLOWED", "DENIED", "HELD", "FIRST", "LAST"],
    rows: answer.identities.map((identity) => [
      identity.actor,
      identity.on_behalf_of.sub,
      identity.on_behalf_of.actors.join(" < "),
      identity.on_behalf_of.initiator,
      identity.task_ids.join(" "),
      identity.allowed,
      identity.denied,
      identity.held,
      isoTime(identity.first_ms),
      isoTime(identity.last_ms),
    ]),
  };
}

/** One row of a blast radius; absent cells print empty. */
interface RadiusRow {
  section: string;
  item: Cell;
  status?: Cell;
  count?: Cell;
  first?: Cell;
  last?: Cell;
  detail?: Cell;
}

/** Rows of a blast radius: one section per kind of reach, ending with the revoke command. */
export function blastRadiusRows(radius: BlastRadius): Rows {
  const rows: RadiusRow[] = [
    ...radius.could_reach.map((grant) => ({
      section: "could_reach",
      item: `${grant.tool}:${grant.action}`,
      status: grant.live ? "live" : "past",
      detail: `granted by ${grant.granted_by.join(" ")}`,
    })),
    ...radius.did_reach.map((reach) => ({
      section: "did_reach",
      item: `${reach.tool}:${reach.action}`,
      status: "allowed",
      count: reach.calls,
      first: isoTime(reach.first_ms),
      last: isoTime(reach.last_ms),
      detail: `by ${reach.actor}`,
    })),
    ...radius.tasks.map((task) => ({
      section: "task",
      item: task.id,
      status: task.status,
      first: isoTime(task.created_at),
      last: isoTime(task.ended_at),
      detail: `initiator ${task.initiator}; ${task.actions.join(" ")}`,
    })),
    ...radius.tokens.map((token) => tokenRow("token", token)),
  ];
  for (const task of radius.delegated) {
    rows.push({
      section: "delegated_task",
      item: task.id,
      status: task.status,
      first: isoTime(task.created_at),
      last: isoTime(task.ended_at),
      detail: `agent ${task.agent_name}, depth ${task.depth}, from task ${task.parent_task_id ?? ""}; ${task.actions.join(" ")}`,
    });
    rows.push(...task.tokens.map((token) => tokenRow("delegated_token", token)));
  }
  rows.push(
    ...radius.leases.map((lease) => ({
      section: "lease",
      item: lease.lease_id,
      status: lease.state,
      count: lease.credential_fetches,
      last: isoTime(lease.valid_until_ms),
      detail: `role ${lease.role ?? ""} on ${lease.system ?? ""} (template ${lease.template ?? ""}), task ${lease.task_id ?? ""}`,
    })),
    ...radius.account_checkouts.map((holding) => ({
      section: "account_checkout",
      item: holding.account,
      status: holding.ended_by ?? "held",
      first: isoTime(holding.checked_out_ms),
      last: isoTime(holding.ended_ms ?? holding.expires_at_ms),
      detail: `holder ${holding.identity}${holding.holder.kind === "task" ? ` for task ${holding.holder.task_id}` : ""}`,
    })),
    ...radius.breakglass.map((opened) => ({
      section: "breakglass",
      item: opened.id,
      status: opened.status,
      count: opened.uses,
      first: isoTime(opened.activated_at),
      last: isoTime(opened.ended_at ?? (opened.ends_at_s === null ? null : opened.ends_at_s * 1000)),
      detail: `${opened.actions.join(" ")}; requested by ${opened.requester}: ${opened.reason}`,
    })),
    ...radius.injected_credentials.map((injected) => ({
      section: "injected_credential",
      item: injected.tool,
      count: injected.calls,
      detail: `${injected.injections.join(" ")} from secret ${injected.secrets.join(" ")}`,
    })),
    { section: "revoke", item: radius.revoke.command },
  );
  return {
    header: ["SECTION", "ITEM", "STATUS", "COUNT", "FIRST", "LAST", "DETAIL"],
    rows: rows.map((row) => [row.section, row.item, row.status, row.count, row.first, row.last, row.detail]),
  };
}

function tokenRow(section: string, token: TokenSummary): RadiusRow {
  let status = token.live ? "live" : "ended";
  if (token.revoked_at !== null) status = "revoked";
  return {
    section,
    item: token.jti,
    status,
    first: isoTime(token.issued_at_s * 1000),
    last: isoTime(token.expires_at_s * 1000),
    detail: `tool ${token.tool ?? token.audience}, held by ${token.client_id}, task ${token.task_id ?? ""}`,
  };
}

function text(value: unknown): Cell {
  return typeof value === "string" || typeof value === "number" ? value : null;
}

function cut(value: string, chars: number | undefined): string {
  return chars === undefined || value.length <= chars ? value : `${value.slice(0, chars - 3)}...`;
}
