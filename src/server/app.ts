import { randomUUID } from "node:crypto";
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from "fastify";
import { WritError } from "../errors/writ-error.js";
import type { BrokerContext } from "../broker/context.js";
import type { Gateway } from "../gateway/gateway.js";
import { maxRequestBodyBytes } from "../config/defaults.js";
import { sendError } from "./errors.js";
import { RequestLog } from "./request-log.js";
import { registerApprovalRoutes } from "./routes/approvals.js";
import { registerAuditRoutes } from "./routes/audit.js";
import { registerAuditExportRoute } from "./routes/audit-export.js";
import { registerAuditQuestionRoutes } from "./routes/audit-questions.js";
import { registerPolicyRoutes } from "./routes/policies.js";
import { registerGatewayRoutes } from "./routes/gateways.js";
import { registerIdentityRoutes } from "./routes/identities.js";
import { registerOAuthRoutes } from "./routes/oauth.js";
import { registerRevocationFeed } from "./routes/revocations.js";
import { registerTaskRoutes } from "./routes/tasks.js";
import { registerSystemRoutes } from "./routes/systems.js";
import { registerAccountRoutes } from "./routes/accounts.js";

/**
 * Builds the broker's HTTP application. It never derives a URL from `Host` or `X-Forwarded-*`:
 * every URL it issues or checks comes from the configured public URL.
 */
export function buildApp(
  context: BrokerContext,
  options: {
    https?: { cert: Buffer; key: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean };
    gateway?: Gateway;
  } = {},
): FastifyInstance {
  const app = Fastify({
    loggerInstance: context.log,
    genReqId: () => randomUUID(),
    logController: new RequestLog(),
    // Request ids are generated here, never taken from a client header.
    requestIdHeader: false,
    bodyLimit: maxRequestBodyBytes,
    trustProxy: false,
    // Revocation feed followers hold connections open; closing must not wait for them to leave.
    forceCloseConnections: true,
    // Errors Fastify raises before routing, such as a malformed percent-escape, get the same body as
    // every other refusal.
    frameworkErrors: (error: Error, request: FastifyRequest, reply: FastifyReply) =>
      sendError(
        context,
        request,
        reply,
        new WritError("invalid_request", "the request URL is malformed", { cause: error }),
      ),
    ...(options.https === undefined ? {} : { https: options.https }),
  } as FastifyServerOptions);

  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "string" },
    (_request, body, done) => {
      done(null, body);
    },
  );

  app.setErrorHandler((error, request, reply) => sendError(context, request, reply, error));
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send({ error: "not_found", error_description: "no such endpoint", request_id: request.id }),
  );

  registerOAuthRoutes(app, context);
  registerRevocationFeed(app, context);
  registerIdentityRoutes(app, context);
  registerTaskRoutes(app, context);
  registerAuditRoutes(app, context);
  registerAuditExportRoute(app, context);
  registerAuditQuestionRoutes(app, context);
  registerPolicyRoutes(app, context);
  registerGatewayRoutes(app, context);
  registerApprovalRoutes(app, context);
  registerSystemRoutes(app, context);
  registerAccountRoutes(app, context);
  options.gateway?.register(app);
  app.get("/healthz", async () => ({ status: "ok" }));
  return app;
}
