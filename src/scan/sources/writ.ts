import type { UsageEvent } from "../model.js";
import { toolchainOf } from "../toolchain.js";
import { text, type LogParser } from "./parser.js";

/**
 * writ's own audit events, as `writ audit list --json` prints them or as stored. A token is keyed by
 * its `jti`; events without one are keyed by the acting identity's SPIFFE ID.
 */
export const writParser: LogParser = {
  format: "writ",

  matches(record) {
    return typeof record.seq === "number" && typeof record.kind === "string" && "prev_hash" in record;
  },

  normalise(record, location) {
    const actor = text(record.actor);
    if (actor === undefined) return "writ audit event without actor";
    if (typeof record.time !== "number") return "writ audit event without a numeric time";
    const data = (typeof record.data === "object" && record.data !== null ? record.data : {}) as Record<
      string,
      unknown
    >;
    const jti = text(record.jti);
    const userAgent = text(data.user_agent);
    const event: UsageEvent = {
      format: "writ",
      credential: jti !== undefined ? `writ:jti:${jti}` : `writ:${actor}`,
      naming: "id",
      credentialKind: jti !== undefined ? "writ-token" : "writ-identity",
      longLived: false,
      principal: actor,
      principalKind: actor.includes("/agent/") ? "workload" : actor.includes("/human/") ? "human" : "service",
      userAgent,
      toolchain: toolchainOf(userAgent),
      time: record.time,
      internal: !actor.startsWith("spiffe://"),
      location,
      action: record.kind as string,
    };
    const source = text(data.ip) ?? text(data.client_ip) ?? text(data.source_ip);
    if (source !== undefined) event.source = source;
    const environment = text(data.environment);
    if (environment !== undefined) event.environment = environment;
    const tool = text(data.tool);
    if (tool !== undefined) event.service = tool;
    return event;
  },
};
