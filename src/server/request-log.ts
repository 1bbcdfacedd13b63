import { LogController, type FastifyReply, type FastifyRequest } from "fastify";

/**
 * Logs each request once, when it completes, with its method, path (never the query, which may
 * carry values a caller did not mean to log), status and duration, instead of Fastify's two lines
 * with the whole request and response objects. The request id is on every line already.
 */
export class RequestLog extends LogController {
  constructor() {
    super({ requestIdLogLabel: "request_id" });
  }

  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const url = request.raw.url ?? "";
    const queryAt = url.indexOf("?");
    const fields = {
      method: request.method,
      path: queryAt === -1 ? url : url.slice(0, queryAt),
      status: reply.statusCode,
      response_time_ms: Math.round(reply.elapsedTime * 100) / 100,
    };
    if (error !== null && error !== undefined) reply.log.error({ ...fields, err: error }, "request failed");
    else reply.log.info(fields, "request completed");
  }
}
