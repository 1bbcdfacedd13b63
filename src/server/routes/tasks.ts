import type { FastifyInstance } from "fastify";
import type { BrokerContext } from "../../broker/context.js";
import { taskTtlSeconds } from "../../config/defaults.js";
import { WritError } from "../../errors/writ-error.js";
import { endTasks, revokeAgent, revokeToken } from "../../revocation/revoke.js";
import { listTasks, requireTask, startTask } from "../../tasks/tasks.js";
import { joinTask } from "../../tasks/join.js";
import { parseSpiffeId } from "../../identity/spiffe.js";
import { addTool, listTools, getTool } from "../../tools/registry.js";
import { apiRoute, bodyObject, stringMember } from "./api.js";

/** Registers the API for tools, tasks, revocation and key rotation. */
export function registerTaskRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "POST", "/v1/tools", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    if (!Array.isArray(body.actions)) throw new WritError("invalid_request", '"actions" must be an array');
    const tool = await addTool(context, caller.id, {
      name: stringMember(body, "name"),
      kind: stringMember(body, "kind"),
      environment: stringMember(body, "environment"),
      actions: body.actions as { name: string; spec?: string; risk?: string }[],
      ...(typeof body.config === "object" && body.config !== null
        ? { config: body.config as Record<string, unknown> }
        : {}),
    });
    reply.code(201);
    return tool;
  });

  apiRoute(app, context, "GET", "/v1/tools", ["admin", "auditor", "gateway"], async () => ({
    tools: await listTools(context),
  }));

  apiRoute(
    app,
    context,
    "GET",
    "/v1/tools/:name",
    ["admin", "auditor", "gateway"],
    async (_caller, request) => {
      const { name } = request.params as { name: string };
      const tool = await getTool(context, name);
      if (tool === undefined) throw new WritError("not_found", `tool "${name}" not found`);
      return tool;
    },
  );

  apiRoute(app, context, "POST", "/v1/tasks", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    if (!Array.isArray(body.actions) || !body.actions.every((entry) => typeof entry === "string")) {
      throw new WritError("invalid_request", '"actions" must be an array of TOOL:ACTION strings');
    }
    const schedule = typeof body.schedule === "string" ? body.schedule : undefined;
    const task = await startTask(context, caller.id, {
      agent: stringMember(body, "agent"),
      initiator: schedule === undefined ? caller.id : `schedule:${schedule}`,
      intent: stringMember(body, "intent"),
      actions: body.actions as string[],
      environment: stringMember(body, "environment"),
      ttl_seconds: body.ttl_seconds === undefined ? taskTtlSeconds : (body.ttl_seconds as number),
    });
    reply.code(201);
    return task;
  });

  apiRoute(app, context, "GET", "/v1/tasks", ["admin", "auditor"], async (_caller, request) => {
    const query = request.query as { agent?: string; status?: string };
    return {
      tasks: await listTasks(context, {
        ...(query.agent === undefined ? {} : { agent: query.agent }),
        ...(query.status === undefined ? {} : { status: query.status }),
      }),
    };
  });

  apiRoute(
    app,
    context,
    "GET",
    "/v1/tasks/:id",
    ["admin", "auditor", "gateway"],
    async (_caller, request) => {
      const { id } = request.params as { id: string };
      return requireTask(context, id);
    },
  );

  apiRoute(app, context, "POST", "/v1/tasks/:id/end", ["admin"], async (caller, request) => {
    const { id } = request.params as { id: string };
    const task = await requireTask(context, id);
    if (task.status !== "active") throw new WritError("conflict", `task "${id}" is already ${task.status}`);
    return endTasks(context, caller.id, [id], "completed", "ended by an operator");
  });

  apiRoute(app, context, "POST", "/v1/tasks/:id/join", ["admin"], async (caller, request) => {
    const { id } = request.params as { id: string };
    const tool = stringMember(bodyObject(request), "tool");
    if (parseSpiffeId(caller.id)?.path[0] !== "human")
      throw new WritError("access_denied", "only a person joins a task");
    return joinTask(context, caller.id, id, tool);
  });

  apiRoute(app, context, "POST", "/v1/revoke", ["admin"], async (caller, request) => {
    const body = bodyObject(request);
    const targets = ["agent", "task", "token"].filter((key) => typeof body[key] === "string");
    if (targets.length !== 1)
      throw new WritError("invalid_request", 'name exactly one of "agent", "task" or "token"');
    if (typeof body.agent === "string") return revokeAgent(context, caller.id, body.agent);
    if (typeof body.task === "string") {
      await requireTask(context, body.task);
      return endTasks(context, caller.id, [body.task], "revoked", "revoked by an operator");
    }
    return revokeToken(context, caller.id, body.token as string);
  });

  apiRoute(app, context, "POST", "/v1/keys/rotate", ["admin"], async (caller) => {
    // The new key is committed together with its audit event, so no key signs before it is audited.
    const rotated = await context.keys.rotate(context.config.signing_alg, (trx, keys) =>
      context.audit.appendWithin(trx, { kind: "signing_key.rotated", actor: caller.id, data: keys }),
    );
    await context.keys.load(context.config.signing_alg);
    return rotated;
  });
}
