import type { FastifyInstance } from "fastify";
import type { JWK } from "jose";
import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { addGateway, getGatewayBySpiffeId, listGateways, setGatewayStatus } from "../../identity/gateways.js";
import { readSecret } from "../../secrets/secrets.js";
import type { HttpToolConfig } from "../../tools/http-config.js";
import { getTool } from "../../tools/registry.js";
import { logFields } from "../../log/fields.js";
import { apiRoute, bodyObject, stringMember } from "./api.js";

/** Registers the API for gateways: registration, decision recording and the credential API. */
export function registerGatewayRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "POST", "/v1/gateways", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    if (typeof body.public_jwk !== "object" || body.public_jwk === null) {
      throw new WritError("invalid_request", '"public_jwk" must be a JWK object');
    }
    const gateway = await addGateway(context, caller.id, {
      name: stringMember(body, "name"),
      public_jwk: body.public_jwk as JWK,
      tls_cert_sha256: typeof body.tls_cert_sha256 === "string" ? body.tls_cert_sha256 : null,
      public_url: typeof body.public_url === "string" ? body.public_url : null,
    });
    reply.code(201);
    return gateway;
  });

  apiRoute(app, context, "GET", "/v1/gateways", ["admin", "auditor"], async () => ({
    gateways: await listGateways(context),
  }));

  for (const [verb, status] of [
    ["disable", "disabled"],
    ["enable", "active"],
  ] as const) {
    apiRoute(app, context, "POST", `/v1/gateways/:name/${verb}`, ["admin"], async (caller, request) => {
      const { name } = request.params as { name: string };
      return setGatewayStatus(context, caller.id, name, status);
    });
  }

  // A separate gateway ships the decisions it already made durable in its local spool.
  apiRoute(app, context, "POST", "/v1/decisions", ["gateway"], async (caller, request) => {
    const body = bodyObject(request);
    if (!Array.isArray(body.events) || body.events.length === 0 || body.events.length > 1000) {
      throw new WritError("invalid_request", '"events" must be an array of 1 to 1000 decision events');
    }
    const inputs = body.events.map((entry: unknown): SubmittedDecision => {
      const event = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
      const kind = typeof event.kind === "string" ? event.kind : "";
      if (!/^tool_call\.(allowed|denied|held|failed)$/.test(kind)) {
        throw new WritError(
          "invalid_request",
          `a gateway records only tool_call.allowed, denied, held and failed events, not "${kind}"`,
        );
      }
      if (typeof event.actor !== "string")
        throw new WritError("invalid_request", "every event needs an actor");
      const data =
        typeof event.data === "object" && event.data !== null ? (event.data as Record<string, unknown>) : {};
      return {
        kind,
        actor: event.actor,
        task_id: typeof event.task_id === "string" ? event.task_id : null,
        jti: typeof event.jti === "string" ? event.jti : null,
        data: { ...data, gateway: caller.id },
      };
    });
    // An event that no real decision of this gateway could have produced is recorded as what it is,
    // a rejected submission by the gateway, and not as a tool call. The batch still succeeds, so one
    // such event cannot stall the gateway's spool behind it.
    const gateway = await getGatewayBySpiffeId(context, caller.id);
    const checked = await Promise.all(
      inputs.map(async (input) => {
        const problem = await decisionEventProblem(context, gateway?.name, input);
        if (problem === undefined) return input;
        request.log.warn(
          {
            [logFields.clientId]: caller.id,
            [logFields.taskId]: input.task_id,
            [logFields.jti]: input.jti,
            [logFields.decisionId]: input.data.decision_id,
            problem,
          },
          "gateway submitted a decision event that does not match a token or tool it serves",
        );
        return {
          kind: "gateway_event.rejected",
          actor: caller.id,
          task_id: null,
          jti: null,
          data: { reason: problem, gateway: caller.id, event: input },
        };
      }),
    );
    // Appended in order; group commit puts them in as few transactions as the queue allows.
    const records = await Promise.all(checked.map((input) => context.audit.append(input)));
    return { seqs: records.map((record) => record.seq) };
  });

  // The credential API releases a tool's secret only to a gateway the tool is assigned to, and only
  // a secret the tool's injection rules name. Every release is audited before the value leaves.
  apiRoute(
    app,
    context,
    "GET",
    "/v1/credentials/:tool/:secret",
    ["gateway"],
    async (caller, request, reply) => {
      const { tool: toolName, secret } = request.params as { tool: string; secret: string };
      const gateway = await getGatewayBySpiffeId(context, caller.id);
      const tool = await getTool(context, toolName);
      const config = tool?.config as Partial<HttpToolConfig> | undefined;
      const assigned = gateway !== undefined && (config?.gateways ?? []).includes(gateway.name);
      const named = (config?.inject ?? []).some((rule) => rule.secrets.includes(secret));
      if (!assigned || !named) {
        throw new WritError("not_found", "no such credential", {
          detail: `gateway ${caller.id} requested ${secret} of tool ${toolName}`,
        });
      }
      await context.audit.append({
        kind: "credential.released",
        actor: caller.id,
        data: { tool: toolName, secret, gateway: caller.id },
      });
      const value = await readSecret(context, secret);
      reply.header("Cache-Control", "no-store");
      return { value: value.toString("utf8") };
    },
  );
}

/** A decision event as a gateway submits it, after its shape was checked. */
interface SubmittedDecision {
  kind: string;
  actor: string;
  task_id: string | null;
  jti: string | null;
  data: Record<string, unknown>;
}

/**
 * Returns why a decision event could not come from a real decision of the gateway `gatewayName`, or
 * undefined when it could. An event without a token is an anonymous denial. An event with one names
 * a token writ issued, its task, and an identity of that token. An allowed, held or failed call
 * names a tool the gateway serves: an HTTP tool assigned to it, or an MCP tool, with the token's
 * audience. A denial may name any tool, since a gateway records requests for tools it does not know.
 */
async function decisionEventProblem(
  context: BrokerContext,
  gatewayName: string | undefined,
  event: SubmittedDecision,
): Promise<string | undefined> {
  if (gatewayName === undefined) return "the caller is not a registered gateway";
  if (event.jti === null) {
    if (event.actor !== "anonymous" || event.task_id !== null)
      return "an event without a token must be anonymous and name no task";
    return event.kind === "tool_call.denied" ? undefined : "only a denial can be anonymous";
  }
  const token = await context.store.db
    .selectFrom("tokens")
    .select(["task_id", "subject", "client_id", "audience"])
    .where("jti", "=", event.jti)
    .executeTakeFirst();
  if (token === undefined) return "the event names a token writ did not issue";
  if (token.task_id !== event.task_id) return "the event's task is not the token's";
  if (event.actor !== token.subject && event.actor !== token.client_id)
    return "the event's actor is not an identity of the token";
  if (event.kind === "tool_call.denied") return undefined;

  const toolName = typeof event.data.tool === "string" ? event.data.tool : "";
  const tool = await getTool(context, toolName);
  if (tool === undefined) return "the event names no registered tool";
  if (token.audience !== tool.resource_uri) return "the token is not for the event's tool";
  if (
    tool.kind === "http" &&
    !((tool.config as Partial<HttpToolConfig>).gateways ?? []).includes(gatewayName)
  )
    return "the tool is not assigned to this gateway";
  return undefined;
}
