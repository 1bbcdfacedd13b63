import type { FastifyInstance } from "fastify";
import { getApproval, listApprovals, requireApproval } from "../../approvals/approvals.js";
import { decideApproval } from "../../approvals/decide.js";
import { requestStepUp, type StepUpRequest } from "../../approvals/step-up.js";
import type { BrokerContext } from "../../broker/context.js";
import {
  endBreakglass,
  listBreakglass,
  noteBreakglass,
  requestBreakglass,
  requireBreakglass,
} from "../../breakglass/breakglass.js";
import { WritError } from "../../errors/writ-error.js";
import { apiRoute, bodyObject, stringMember } from "./api.js";

/** People who may see approvals and windows; whether one may vote is decided by each request's rule. */
const people = ["admin", "approver", "auditor"];

/** Registers the API for approvals, step-up requests from gateways, and break-glass windows. */
export function registerApprovalRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "GET", "/v1/approvals", people, async (_caller, request) => {
    const { status } = request.query as { status?: string };
    return { approvals: await listApprovals(context, status === undefined ? {} : { status }) };
  });

  apiRoute(app, context, "GET", "/v1/approvals/:id", people, async (_caller, request) => {
    const { id } = request.params as { id: string };
    return requireApproval(context, id);
  });

  for (const decision of ["approve", "reject"] as const) {
    apiRoute(app, context, "POST", `/v1/approvals/:id/${decision}`, people, async (caller, request) => {
      const { id } = request.params as { id: string };
      if ((await getApproval(context, id)) === undefined)
        throw new WritError("not_found", `approval "${id}" not found`);
      return decideApproval(context, caller.id, id, decision);
    });
  }

  apiRoute(app, context, "POST", "/v1/approvals/step-up", ["gateway"], async (_caller, request) => {
    const body = bodyObject(request);
    const stepUp: StepUpRequest = {
      task_id: stringMember(body, "task_id"),
      requester: stringMember(body, "requester"),
      tool: stringMember(body, "tool"),
      action: stringMember(body, "action"),
      method: stringMember(body, "method"),
      target: stringMember(body, "target"),
      body_sha256: stringMember(body, "body_sha256"),
    };
    if (!/^[0-9a-f]{64}$/.test(stepUp.body_sha256))
      throw new WritError("invalid_request", '"body_sha256" must be 64 lowercase hex digits');
    return requestStepUp(context, stepUp);
  });

  apiRoute(app, context, "POST", "/v1/breakglass", ["admin", "approver"], async (caller, request, reply) => {
    const body = bodyObject(request);
    if (!Array.isArray(body.actions) || !body.actions.every((entry) => typeof entry === "string")) {
      throw new WritError("invalid_request", '"actions" must be an array of TOOL:ACTION strings');
    }
    if (typeof body.duration_s !== "number")
      throw new WritError("invalid_request", '"duration_s" must be a number of seconds');
    const breakglass = await requestBreakglass(context, caller.id, {
      ...(typeof body.agent === "string" ? { agent: body.agent } : {}),
      ...(typeof body.human === "string" ? { human: body.human } : {}),
      actions: body.actions as string[],
      reason: stringMember(body, "reason"),
      duration_s: body.duration_s,
    });
    reply.code(201);
    return breakglass;
  });

  apiRoute(app, context, "GET", "/v1/breakglass", people, async (_caller, request) => {
    const { status } = request.query as { status?: string };
    return { breakglass: await listBreakglass(context, status === undefined ? {} : { status }) };
  });

  apiRoute(app, context, "GET", "/v1/breakglass/:id", people, async (_caller, request) => {
    const { id } = request.params as { id: string };
    return requireBreakglass(context, id);
  });

  apiRoute(app, context, "POST", "/v1/breakglass/:id/end", ["admin", "approver"], async (caller, request) => {
    const { id } = request.params as { id: string };
    return endBreakglass(context, caller.id, id);
  });

  apiRoute(
    app,
    context,
    "POST",
    "/v1/breakglass/:id/note",
    ["admin", "approver"],
    async (caller, request) => {
      const { id } = request.params as { id: string };
      return noteBreakglass(context, caller.id, id, stringMember(bodyObject(request), "text"));
    },
  );
}
