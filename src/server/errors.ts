import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { WritError, isWritError } from "../errors/writ-error.js";
import { logFields } from "../log/fields.js";
import type { BrokerContext } from "../broker/context.js";
import { dpopAlgorithms } from "../dpop/verify-proof.js";

/** The body of every error response: the OAuth error, a short description and the request id. */
export interface ErrorBody {
  error: string;
  error_description: string;
  request_id: string;
}

/**
 * Turns any thrown value into the wire error. Domain errors keep their code and description; store
 * constraint violations become `conflict`; anything else becomes a generic `server_error` whose
 * detail goes only to the log.
 */
export function toWritError(error: unknown): WritError {
  if (isWritError(error)) return error;
  const fastifyError = error as FastifyError;
  if (fastifyError.validation !== undefined || fastifyError.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    return new WritError("invalid_request", fastifyError.message);
  }
  if (fastifyError.statusCode === 413) return new WritError("invalid_request", "request body is too large");
  if (fastifyError.statusCode === 400) return new WritError("invalid_request", fastifyError.message);
  if (isConstraintViolation(error))
    return new WritError("conflict", "the object already exists", { cause: error });
  return new WritError("server_error", "internal error; the server log has the detail", { cause: error });
}

function isConstraintViolation(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === "23505" || (typeof code === "string" && code.startsWith("SQLITE_CONSTRAINT"));
}

/** Sends an error response; 401 responses carry the `WWW-Authenticate: DPoP` challenge of RFC 9449. */
export function sendError(
  context: BrokerContext,
  request: FastifyRequest,
  reply: FastifyReply,
  error: unknown,
  options: { challenge?: boolean } = {},
): FastifyReply {
  const writError = toWritError(error);
  const fields = {
    [logFields.requestId]: request.id,
    [logFields.errorCode]: writError.code,
    [logFields.detail]: writError.detail,
  };
  if (writError.status >= 500)
    request.log.error({ ...fields, err: writError.cause ?? writError }, "request failed");
  else request.log.info(fields, "request refused");

  let status = writError.status;
  if (writError.code === "use_dpop_nonce") {
    reply.header("DPoP-Nonce", context.nonces.issue());
    if (options.challenge === true) status = 401;
  }
  if (
    options.challenge === true &&
    (writError.code === "invalid_token" || writError.code === "invalid_dpop_proof")
  ) {
    status = 401;
  }
  if (status === 401 && options.challenge === true) {
    reply.header(
      "WWW-Authenticate",
      `DPoP error="${writError.code}", error_description="${quoteSafe(writError.description)}", algs="${dpopAlgorithms.join(" ")}"`,
    );
  }
  const body: ErrorBody = {
    error: writError.code,
    error_description: writError.description,
    request_id: request.id,
  };
  return reply.code(status).header("Cache-Control", "no-store").send(body);
}

function quoteSafe(text: string): string {
  return text.replace(/["\\\r\n]/g, "'");
}

export { WritError };
