import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { listHumans } from "../../identity/humans.js";
import { toolResourceUri } from "../../tools/registry.js";
import type { AuditRecord } from "../chain.js";
import { identityOf } from "./principals.js";
import { dataString, dataStrings, scanEvents } from "./scan.js";
import { parseWindow } from "./time.js";

/** The filters of `writ audit events`, as the API takes them: strings straight from the query. */
export interface EventQuery {
  since?: string;
  until?: string;
  agent?: string;
  human?: string;
  task?: string;
  tool?: string;
  decision?: string;
  breakglass?: string;
  after?: string;
  limit?: string;
}

export interface EventPage {
  events: AuditRecord[];
  /** The `after` value that continues the listing, or null when no matching event is left. */
  next_after: number | null;
}

const defaultLimit = 100;
const maxLimit = 1000;

/** Lists the audit events that pass every given filter, in sequence order, one page at a time. */
export async function listEvents(context: BrokerContext, query: EventQuery): Promise<EventPage> {
  const after = wholeNumber("after", query.after, 0);
  const limit = wholeNumber("limit", query.limit, defaultLimit);
  if (limit < 1 || limit > maxLimit) {
    throw new WritError("invalid_request", `invalid limit ${limit}: use 1 to ${maxLimit}`);
  }
  const window = parseWindow(query.since, query.until, context.clock.nowMs());
  const tests = await buildTests(context, query);

  const events: AuditRecord[] = [];
  let more = false;
  await scanEvents(
    context.store,
    { ...window, afterSeq: after, ...(query.task === undefined ? {} : { taskIds: [query.task] }) },
    (event) => {
      if (!tests.every((test) => test(event))) return true;
      if (events.length === limit) {
        more = true;
        return false;
      }
      events.push(event);
      return true;
    },
  );
  return { events, next_after: more ? (events.at(-1)?.seq ?? null) : null };
}

type EventTest = (event: AuditRecord) => boolean;

async function buildTests(context: BrokerContext, query: EventQuery): Promise<EventTest[]> {
  const tests: EventTest[] = [];
  if (query.agent !== undefined) tests.push(await agentTest(context, query.agent));
  if (query.human !== undefined) tests.push(await humanTest(context, query.human));
  if (query.tool !== undefined) {
    const name = query.tool;
    const audiences = [
      toolResourceUri(context.issuer, "http", name),
      toolResourceUri(context.issuer, "mcp", name),
    ];
    tests.push(
      (event) => dataString(event, "tool") === name || audiences.includes(dataString(event, "aud") ?? ""),
    );
  }
  if (query.decision !== undefined) {
    if (query.decision !== "allow" && query.decision !== "deny") {
      throw new WritError("invalid_request", `invalid decision "${query.decision}": use allow or deny`);
    }
    const decision = query.decision;
    tests.push((event) => dataString(event, "decision") === decision);
  }
  if (query.breakglass !== undefined) {
    if (query.breakglass !== "true") {
      throw new WritError(
        "invalid_request",
        `invalid breakglass "${query.breakglass}": use true or leave it out`,
      );
    }
    tests.push(
      (event) => event.kind.startsWith("breakglass.") || dataString(event, "breakglass_id") !== undefined,
    );
  }
  return tests;
}

/**
 * Matches the events an agent took part in: it acted, it is the token's `sub` or an actor of the
 * chain, an event names it as agent or delegate, or the event belongs to one of its tasks.
 */
async function agentTest(context: BrokerContext, agent: string): Promise<EventTest> {
  const id = identityOf(context, "agent", agent);
  const name = id.slice(id.lastIndexOf("/") + 1);
  const rows = await context.store.db
    .selectFrom("tasks")
    .select("id")
    .where("agent_name", "=", name)
    .execute();
  const tasks = new Set(rows.map((row) => row.id));
  return (event) =>
    event.actor === id ||
    dataString(event, "sub") === id ||
    dataStrings(event, "actors").includes(id) ||
    dataString(event, "agent") === id ||
    dataString(event, "delegate") === id ||
    (event.task_id !== null && tasks.has(event.task_id));
}

/**
 * Matches the events a person took part in: they acted or joined, they are named as initiator,
 * requester or holder, or the event belongs to a task they started. The person is given by SPIFFE ID,
 * by id, or by a display name that only one person has.
 */
async function humanTest(context: BrokerContext, person: string): Promise<EventTest> {
  const humans = await listHumans(context);
  const byId = humans.filter((human) => human.spiffe_id === person || human.id === person);
  const matches = byId.length > 0 ? byId : humans.filter((human) => human.display_name === person);
  if (matches.length === 0) throw new WritError("not_found", `person "${person}" not found`);
  if (matches.length > 1) {
    throw new WritError(
      "invalid_request",
      `${matches.length} people are named "${person}": give the SPIFFE ID`,
    );
  }
  const id = (matches[0] as { spiffe_id: string }).spiffe_id;
  const rows = await context.store.db.selectFrom("tasks").select("id").where("initiator", "=", id).execute();
  const tasks = new Set(rows.map((row) => row.id));
  return (event) => {
    const holder = event.data.holder as { spiffe_id?: unknown } | undefined;
    return (
      event.actor === id ||
      dataStrings(event, "actors").includes(id) ||
      dataString(event, "initiator") === id ||
      dataString(event, "requester") === id ||
      holder?.spiffe_id === id ||
      (event.task_id !== null && tasks.has(event.task_id))
    );
  };
}

function wholeNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!/^\d{1,15}$/.test(value) || !Number.isSafeInteger(parsed)) {
    throw new WritError("invalid_request", `invalid ${name} "${value}": use a whole number`);
  }
  return parsed;
}
