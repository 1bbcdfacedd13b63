import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { BrokerContext } from "../../broker/context.js";
import { authenticateApiRequest, requireRole, type ApiCaller } from "../authenticate.js";
import { sendError } from "../errors.js";
import { WritError } from "../../errors/writ-error.js";

export type ApiHandler = (
  caller: ApiCaller,
  request: FastifyRequest,
  reply: FastifyReply,
) => Promise<unknown>;

type Method = "GET" | "POST";

/**
 * Registers one admin API route: the caller is authenticated by a DPoP-bound token and must hold one
 * of `roles`. Authentication failures are 401 with a DPoP challenge; a missing role is 403.
 */
export function apiRoute(
  app: FastifyInstance,
  context: BrokerContext,
  method: Method,
  path: string,
  roles: string[],
  handler: ApiHandler,
): void {
  app.route({
    method,
    url: path,
    handler: async (request, reply) => {
      let caller: ApiCaller;
      try {
        caller = await authenticateApiRequest(context, request);
        requireRole(caller, ...roles);
      } catch (error) {
        return sendError(context, request, reply, error, { challenge: true });
      }
      try {
        const result = await handler(caller, request, reply);
        if (reply.sent) return reply;
        return reply.header("Cache-Control", "no-store").send(result);
      } catch (error) {
        return sendError(context, request, reply, error);
      }
    },
  });
}

/** Returns the JSON body as an object, or throws `invalid_request`. */
export function bodyObject(request: FastifyRequest): Record<string, unknown> {
  const body = request.body;
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new WritError("invalid_request", "the request body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** Reads a string member; throws `invalid_request` naming the member when it is missing. */
export function stringMember(body: Record<string, unknown>, name: string, optional = false): string {
  const value = body[name];
  if (value === undefined && optional) return "";
  if (typeof value !== "string") {
    throw new WritError("invalid_request", `"${name}" must be a string`);
  }
  return value;
}
