import type { FastifyInstance, FastifyRequest } from "fastify";
import { blastRadius } from "../../audit/questions/blast-radius.js";
import { listEvents } from "../../audit/questions/filters.js";
import { whoActed } from "../../audit/questions/who.js";
import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { apiRoute } from "./api.js";

/** Registers the investigation API: filtered events, who acted, and an agent's or token's blast radius. */
export function registerAuditQuestionRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "GET", "/v1/audit/events", ["admin", "auditor"], async (_caller, request) =>
    listEvents(
      context,
      stringQuery(request, [
        "since",
        "until",
        "agent",
        "human",
        "task",
        "tool",
        "decision",
        "breakglass",
        "after",
        "limit",
      ]),
    ),
  );

  apiRoute(app, context, "GET", "/v1/audit/who", ["admin", "auditor"], async (_caller, request) =>
    whoActed(
      context,
      stringQuery(request, ["tool", "action", "resource", "account", "at", "since", "until"]),
    ),
  );

  apiRoute(app, context, "GET", "/v1/audit/blast-radius", ["admin", "auditor"], async (_caller, request) =>
    blastRadius(context, stringQuery(request, ["agent", "token", "since", "until"])),
  );
}

/**
 * Reads the named query parameters as single strings. An unknown or repeated parameter is rejected,
 * so that a misspelt filter never silently widens a result.
 */
function stringQuery<Name extends string>(
  request: FastifyRequest,
  names: readonly Name[],
): Partial<Record<Name, string>> {
  const query = (request.query ?? {}) as Record<string, unknown>;
  const result: Partial<Record<Name, string>> = {};
  for (const [name, value] of Object.entries(query)) {
    if (!(names as readonly string[]).includes(name)) {
      throw new WritError("invalid_request", `unknown query parameter "${name}": use ${names.join(", ")}`);
    }
    if (typeof value !== "string") {
      throw new WritError("invalid_request", `query parameter "${name}" is given more than once`);
    }
    result[name as Name] = value;
  }
  return result;
}
