import type { FastifyInstance } from "fastify";
import type { BrokerContext } from "../../broker/context.js";
import { readAuditEvents, readStoredHead } from "../../audit/read.js";
import { auditJwks } from "../../audit/audit-key.js";
import { readStoredCheckpoints } from "../../audit/checkpointer.js";
import { verifyEvidence } from "../../audit/checkpoint-verify.js";
import { taskStory } from "../../audit/task-story.js";
import { WritError } from "../../errors/writ-error.js";
import { apiRoute } from "./api.js";

/** The largest page of audit events one request returns. */
const maxPage = 1000;

/** Registers the API that reads and verifies the audit log. */
export function registerAuditRoutes(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "GET", "/v1/audit", ["admin", "auditor"], async (_caller, request) => {
    const query = request.query as { after?: string; limit?: string; task?: string };
    const after = query.after === undefined ? 0 : Number(query.after);
    const limit = query.limit === undefined ? maxPage : Number(query.limit);
    if (!Number.isInteger(after) || after < 0 || !Number.isInteger(limit) || limit < 1 || limit > maxPage) {
      throw new WritError("invalid_request", `"after" must be a sequence number and "limit" 1 to ${maxPage}`);
    }
    return {
      events: await readAuditEvents(context.store, {
        after,
        limit,
        ...(query.task === undefined ? {} : { taskId: query.task }),
      }),
    };
  });

  apiRoute(app, context, "GET", "/v1/audit/tasks/:id", ["admin", "auditor"], async (_caller, request) => {
    const { id } = request.params as { id: string };
    return taskStory(context, id);
  });

  apiRoute(app, context, "GET", "/v1/audit/verify", ["admin", "auditor"], async () => {
    await context.queue.drain();
    const checkpoints = await readStoredCheckpoints(context.store);
    return verifyEvidence(
      await readAuditEvents(context.store),
      [{ source: "store", checkpoints }],
      auditJwks(context.auditKey),
      undefined,
      await readStoredHead(context.store),
    );
  });

  // The audit key's public half is public, like the token JWKS, so that anyone holding an export or a
  // checkpoint can verify it.
  app.get("/v1/audit/jwks", async (_request, reply) =>
    reply.header("Cache-Control", "public, max-age=300").send(auditJwks(context.auditKey)),
  );
}
