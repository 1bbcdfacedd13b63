import type { FastifyInstance } from "fastify";
import { addAccount, listAccounts } from "../../accounts/accounts.js";
import { checkInAccount, checkOutAccount } from "../../accounts/checkout.js";
import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { apiRoute, bodyObject, stringMember } from "./api.js";

/** Registers the API for shared accounts: registration, checkout and check-in. */
export function registerAccountRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "POST", "/v1/accounts", ["admin"], async (caller, request, reply) => {
    const body = bodyObject(request);
    const account = await addAccount(context, caller.id, {
      name: stringMember(body, "name"),
      kind: stringMember(body, "kind"),
      system: stringMember(body, "system"),
      role: stringMember(body, "role"),
      ...(body.rotate_every_s === undefined ? {} : { rotate_every_s: integerMember(body, "rotate_every_s") }),
    });
    reply.code(201);
    return account;
  });

  apiRoute(app, context, "GET", "/v1/accounts", ["admin", "auditor"], async () => ({
    accounts: await listAccounts(context),
  }));

  // The response carries the password, so it goes only to an admin and is never cached (apiRoute
  // sends every result with Cache-Control: no-store).
  apiRoute(app, context, "POST", "/v1/accounts/:name/checkout", ["admin"], async (caller, request) => {
    const { name } = request.params as { name: string };
    const body = bodyObject(request);
    return checkOutAccount(context, caller.id, name, {
      ...(typeof body.task === "string" ? { task: body.task } : {}),
      ...(typeof body.human === "string" ? { human: body.human } : {}),
      ...(body.duration_s === undefined ? {} : { duration_s: integerMember(body, "duration_s") }),
      ...(body.wait_s === undefined ? {} : { wait_s: integerMember(body, "wait_s") }),
    });
  });

  apiRoute(app, context, "POST", "/v1/accounts/:name/checkin", ["admin"], async (caller, request) => {
    const { name } = request.params as { name: string };
    return checkInAccount(context, caller.id, name);
  });
}

function integerMember(body: Record<string, unknown>, name: string): number {
  const value = body[name];
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new WritError("invalid_request", `"${name}" must be an integer`);
  }
  return value;
}
