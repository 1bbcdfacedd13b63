import type { FastifyInstance } from "fastify";
import type { JWK } from "jose";
import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { addAgent, listAgents, requireAgent, setAgentStatus } from "../../identity/agents.js";
import { addBinding, listBindings } from "../../identity/bindings.js";
import { addHuman, listHumans } from "../../identity/humans.js";
import { revokeAgent } from "../../revocation/revoke.js";
import { apiRoute, bodyObject, stringMember } from "./api.js";

/** Registers the API for agents, their federated bindings, and people. */
export function registerIdentityRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "POST", "/v1/agents", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    const agent = await addAgent(context, caller.id, {
      name: stringMember(body, "name"),
      owner: stringMember(body, "owner"),
      environment: stringMember(body, "environment"),
      ...(body.public_jwk === undefined ? {} : { public_jwk: jwkMember(body.public_jwk) }),
    });
    reply.code(201);
    return agent;
  });

  apiRoute(app, context, "GET", "/v1/agents", ["admin", "auditor"], async () => ({
    agents: await listAgents(context),
  }));

  apiRoute(app, context, "GET", "/v1/agents/:name", ["admin", "auditor"], async (_caller, request) => {
    const { name } = request.params as { name: string };
    const agent = await requireAgent(context, name);
    return { ...agent, bindings: await listBindings(context, name) };
  });

  for (const [verb, status] of [
    ["disable", "disabled"],
    ["enable", "active"],
  ] as const) {
    apiRoute(app, context, "POST", `/v1/agents/:name/${verb}`, ["admin"], async (caller, request) => {
      const { name } = request.params as { name: string };
      if (status === "disabled") {
        await revokeAgent(context, caller.id, name, { endTasks: false });
        return requireAgent(context, name);
      }
      return setAgentStatus(context, caller.id, name, status);
    });
  }

  apiRoute(app, context, "POST", "/v1/agents/:name/bindings", ["admin"], async (caller, request, reply) => {
    const { name } = request.params as { name: string };
    const binding = await addBinding(context, caller.id, name, bodyObject(request));
    reply.code(201);
    return binding;
  });

  apiRoute(app, context, "POST", "/v1/humans", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    const roles = body.roles;
    if (!Array.isArray(roles) || !roles.every((role) => typeof role === "string")) {
      throw new WritError("invalid_request", '"roles" must be an array of strings');
    }
    const human = await addHuman(context, caller.id, {
      display_name: stringMember(body, "display_name"),
      email: typeof body.email === "string" ? body.email : null,
      roles: roles as string[],
      public_jwk: jwkMember(body.public_jwk),
    });
    reply.code(201);
    return human;
  });

  apiRoute(app, context, "GET", "/v1/humans", ["admin", "auditor"], async () => ({
    humans: await listHumans(context),
  }));
}

function jwkMember(value: unknown): JWK {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new WritError("invalid_request", '"public_jwk" must be a JWK object');
  }
  return value as JWK;
}
