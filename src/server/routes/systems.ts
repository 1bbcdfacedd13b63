import type { FastifyInstance, FastifyRequest } from "fastify";
import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { readTaskCredential } from "../../leases/credentials.js";
import { decideCredentialRelease } from "../../leases/release.js";
import { listLeases } from "../../leases/leases.js";
import { logFields } from "../../log/fields.js";
import { addSystem, listSystems, requireSystem, systemResourceUri } from "../../systems/systems.js";
import { addTemplate, listTemplates } from "../../systems/templates.js";
import type { AccessTokenClaims } from "../../tokens/access-token.js";
import { authenticateDpopRequest } from "../authenticate.js";
import { sendError } from "../errors.js";
import { apiRoute, bodyObject, stringMember } from "./api.js";
import { accountActionName, getAccount } from "../../accounts/accounts.js";
import { checkInAccount, checkOutAccount } from "../../accounts/checkout.js";

/** Registers the API for systems, their templates, leases, and the credential fetch by agents. */
export function registerSystemRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "POST", "/v1/systems", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    const system = await addSystem(context, caller.id, {
      name: stringMember(body, "name"),
      kind: stringMember(body, "kind"),
      dsn: stringMember(body, "dsn"),
      password_secret: stringMember(body, "password_secret"),
      environment: stringMember(body, "environment"),
    });
    reply.code(201);
    return system;
  });

  apiRoute(app, context, "GET", "/v1/systems", ["admin", "auditor"], async () => ({
    systems: await listSystems(context),
  }));

  apiRoute(app, context, "GET", "/v1/systems/:name", ["admin", "auditor"], async (_caller, request) => {
    const { name } = request.params as { name: string };
    const system = await requireSystem(context, name);
    return { ...system, templates: await listTemplates(context, name) };
  });

  apiRoute(app, context, "POST", "/v1/systems/:name/templates", ["admin"], async (caller, request, reply) => {
    const { name } = request.params as { name: string };
    const body = bodyObject(request);
    const template = await addTemplate(context, caller.id, name, stringMember(body, "name"), {
      member_of: stringArray(body, "member_of"),
      grants: stringArray(body, "grants"),
      ...(typeof body.database === "string" ? { database: body.database } : {}),
      ...(typeof body.successor === "string" ? { successor: body.successor } : {}),
      ...(body.connection_limit === undefined ? {} : { connection_limit: body.connection_limit as number }),
    });
    reply.code(201);
    return template;
  });

  apiRoute(app, context, "GET", "/v1/leases", ["admin", "auditor"], async (_caller, request) => {
    const query = request.query as { state?: string; task?: string };
    return {
      leases: await listLeases(context, {
        ...(query.state === undefined ? {} : { state: query.state }),
        ...(query.task === undefined ? {} : { task_id: query.task }),
      }),
    };
  });

  // An agent fetches its task's credential with a token whose audience is the system's resource URI.
  app.get("/v1/systems/:name/credentials", async (request, reply) => {
    const { name } = request.params as { name: string };
    let claims: AccessTokenClaims;
    try {
      claims = await authenticateSystemRequest(context, request, systemResourceUri(context.issuer, name));
    } catch (error) {
      return sendError(context, request, reply, error, { challenge: true });
    }
    try {
      const taskId = claims.task_id as string;
      const decision = await decideCredentialRelease(context, claims, name);
      const decided = {
        system: name,
        template: decision.template,
        decision_id: decision.decision_id,
        decision: decision.allowed ? "allow" : "deny",
        reason: decision.reason,
        policies: decision.policies,
        errors: decision.errors,
        task_join: claims.task_join === true,
      };
      const fields = {
        [logFields.taskId]: taskId,
        [logFields.clientId]: claims.client_id,
        [logFields.decisionId]: decision.decision_id,
      };
      if (!decision.allowed) {
        await context.audit.append({
          kind: "credential.denied",
          actor: decision.actor,
          task_id: taskId,
          jti: claims.jti,
          data: decided,
        });
        request.log.info(fields, "credential release denied by policy");
        return reply
          .code(403)
          .header("Cache-Control", "no-store")
          .header("WWW-Authenticate", 'DPoP error="insufficient_scope"')
          .send({
            error: "insufficient_scope",
            error_description: "policy does not release this credential to the caller",
            decision_id: decision.decision_id,
          });
      }
      const credential = await readTaskCredential(context, name, taskId);
      await context.audit.append({
        kind: "credential.fetched",
        actor: decision.actor,
        task_id: taskId,
        jti: claims.jti,
        data: { ...decided, role: credential.role, lease_id: credential.lease_id },
      });
      request.log.info({ ...fields, lease_id: credential.lease_id }, "credential fetched");
      return reply.header("Cache-Control", "no-store").header("Pragma", "no-cache").send(credential);
    } catch (error) {
      return sendError(context, request, reply, error);
    }
  });

  registerAgentAccountRoutes(app, context);
}

/**
 * Registers the checkout of a shared account by an agent, for its own task: the token's audience is
 * the system's resource URI and its actions name `account.NAME`, which the task got by listing
 * `SYSTEM:account.NAME`. The response carries the password, so it is never cached.
 */
export function registerAgentAccountRoutes(app: FastifyInstance, context: BrokerContext): void {
  const authorise = async (
    request: FastifyRequest,
  ): Promise<{ claims: AccessTokenClaims; account: string }> => {
    const { name, account } = request.params as { name: string; account: string };
    const claims = await authenticateSystemRequest(context, request, systemResourceUri(context.issuer, name));
    const grant = claims.authorization_details?.find((detail) => detail.type === "agent_task");
    const found = await getAccount(context, account);
    if (
      found === undefined ||
      found.system !== name ||
      !(grant?.actions ?? []).includes(accountActionName(account))
    ) {
      throw new WritError(
        "access_denied",
        `this task may not check out account "${account}" of system "${name}"`,
      );
    }
    return { claims, account };
  };

  app.post("/v1/systems/:name/accounts/:account/checkout", async (request, reply) => {
    let authorised: { claims: AccessTokenClaims; account: string };
    try {
      authorised = await authorise(request);
    } catch (error) {
      return sendError(context, request, reply, error, { challenge: true });
    }
    try {
      const body = (request.body ?? {}) as Record<string, unknown>;
      const checkout = await checkOutAccount(context, authorised.claims.client_id, authorised.account, {
        task: authorised.claims.task_id as string,
        ...(typeof body.duration_s === "number" ? { duration_s: body.duration_s } : {}),
        ...(typeof body.wait_s === "number" ? { wait_s: body.wait_s } : {}),
      });
      request.log.info(
        {
          [logFields.taskId]: authorised.claims.task_id,
          [logFields.clientId]: authorised.claims.client_id,
          account: authorised.account,
        },
        "account checked out by an agent",
      );
      return reply.header("Cache-Control", "no-store").header("Pragma", "no-cache").send(checkout);
    } catch (error) {
      return sendError(context, request, reply, error);
    }
  });

  app.post("/v1/systems/:name/accounts/:account/checkin", async (request, reply) => {
    let authorised: { claims: AccessTokenClaims; account: string };
    try {
      authorised = await authorise(request);
    } catch (error) {
      return sendError(context, request, reply, error, { challenge: true });
    }
    try {
      return reply
        .header("Cache-Control", "no-store")
        .send(
          await checkInAccount(
            context,
            authorised.claims.client_id,
            authorised.account,
            authorised.claims.task_id as string,
          ),
        );
    } catch (error) {
      return sendError(context, request, reply, error);
    }
  });
}

/**
 * Authenticates an agent's request for a system: a live DPoP-bound token for a task whose audience is
 * the system's resource URI. Returns the token's claims.
 */
async function authenticateSystemRequest(
  context: BrokerContext,
  request: FastifyRequest,
  audience: string,
): Promise<AccessTokenClaims> {
  const claims = await authenticateDpopRequest(context, request);
  if (claims.aud !== audience || claims.task_id === undefined) {
    throw new WritError("invalid_token", "this token is not for this system", {
      detail: `aud ${String(claims.aud)}, task ${String(claims.task_id)}`,
    });
  }
  return claims;
}

function stringArray(body: Record<string, unknown>, name: string): string[] {
  const value = body[name];
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((entry) => typeof entry === "string")) {
    throw new WritError("invalid_request", `"${name}" must be an array of strings`);
  }
  return value as string[];
}
