import type { FastifyInstance } from "fastify";
import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { getAgent } from "../../identity/agents.js";
import { getHumanBySpiffeId } from "../../identity/humans.js";
import {
  addPolicies,
  listSitePolicies,
  policiesInForce,
  removePolicy,
  splitPolicies,
} from "../../policy/policies.js";
import { listSecretNames, setSecret } from "../../secrets/secrets.js";
import { getTool, listTools } from "../../tools/registry.js";
import { apiRoute, bodyObject, stringMember } from "./api.js";

/** Registers the API for policies and secrets. */
export function registerPolicyRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "POST", "/v1/policies", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    const stored = await addPolicies(
      context,
      caller.id,
      stringMember(body, "text"),
      stringMember(body, "id", true) || "site",
    );
    reply.code(201);
    return { policies: stored };
  });

  apiRoute(app, context, "GET", "/v1/policies", ["admin", "auditor", "gateway"], async () => ({
    site: await listSitePolicies(context),
    in_force: await policiesInForce(context),
    schema: context.policy.schema(),
  }));

  apiRoute(app, context, "POST", "/v1/policies/:id/remove", ["admin"], async (caller, request) => {
    const { id } = request.params as { id: string };
    await removePolicy(context, caller.id, id);
    return { removed: id };
  });

  apiRoute(app, context, "POST", "/v1/policies/validate", ["admin", "auditor"], async (_caller, request) => {
    const body = bodyObject(request);
    const policies = splitPolicies(stringMember(body, "text"), stringMember(body, "id", true) || "site");
    const problems = context.policy.check(await listTools(context), policies);
    return { valid: problems.length === 0, problems, policies: Object.keys(policies) };
  });

  apiRoute(app, context, "POST", "/v1/policies/test", ["admin", "auditor"], async (_caller, request) => {
    const body = bodyObject(request);
    const toolName = stringMember(body, "tool");
    const actionName = stringMember(body, "action");
    const tool = await getTool(context, toolName);
    const action = tool?.actions.find((candidate) => candidate.name === actionName);
    if (tool === undefined || action === undefined)
      throw new WritError("not_found", `tool action "${toolName}:${actionName}" not found`);
    const agentName = stringMember(body, "agent");
    const agent = await getAgent(context, agentName);
    if (agent === undefined) throw new WritError("not_found", `agent "${agentName}" not found`);
    const granted = Array.isArray(body.token_actions)
      ? (body.token_actions as string[])
      : [`${tool.name}:${action.name}`];
    // A person acts in the agent's task, as with a join token; the principal is then the person.
    let principal: { type: "Agent" | "Human"; id: string } = { type: "Agent", id: agent.spiffe_id };
    if (body.human !== undefined) {
      const humanId = stringMember(body, "human");
      const human = await getHumanBySpiffeId(context, humanId);
      if (human === undefined) throw new WritError("not_found", `person "${humanId}" not found`);
      principal = { type: "Human", id: human.spiffe_id };
    }
    return context.policy.evaluate({
      principal,
      action: `${tool.name}:${action.name}`,
      tool,
      context: {
        intent: typeof body.intent === "string" ? body.intent : "",
        environment: typeof body.environment === "string" ? body.environment : agent.environment,
        deadline: typeof body.deadline === "number" ? body.deadline : 0,
        delegation_depth: typeof body.delegation_depth === "number" ? body.delegation_depth : 0,
        method: typeof body.method === "string" ? body.method : "",
        path: typeof body.path === "string" ? body.path : "",
        risk: action.risk,
        risk_score: typeof body.risk_score === "number" ? body.risk_score : 0,
        action_name: `${tool.name}:${action.name}`,
        token_actions: granted,
        task_join: body.task_join === true,
        breakglass: body.breakglass === true,
      },
    });
  });

  apiRoute(app, context, "POST", "/v1/secrets/:name", ["admin"], async (caller, request) => {
    const { name } = request.params as { name: string };
    const value = stringMember(bodyObject(request), "value");
    await setSecret(context, caller.id, name, Buffer.from(value, "utf8"));
    return { name };
  });

  apiRoute(app, context, "GET", "/v1/secrets", ["admin"], async () => ({
    secrets: await listSecretNames(context),
  }));
}
