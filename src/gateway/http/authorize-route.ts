import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { TLSSocket } from "node:tls";
import { WritError } from "../../errors/writ-error.js";
import { logFields } from "../../log/fields.js";
import { headerValues } from "../../server/headers.js";
import { renderInjection } from "./inject.js";
import type { HttpToolConfig } from "../../tools/http-config.js";
import { enforce, newOutcome, refuse, type ToolRouteDependencies } from "./tool-route.js";

/** A proxy allowed to ask for decisions: a registered gateway identified by its TLS certificate. */
export interface DecisionCaller {
  id: string;
  /** The gateway's registered name, which a tool must list in its `gateways` to be decided here. */
  name: string;
  /** The public URL the proxy serves tools at; DPoP `htu` is checked against it. */
  publicUrl: string;
}

/** Finds the registered gateway presenting a client certificate with this SHA-256 fingerprint. */
export type CallerByCertificate = (fingerprint: string) => Promise<DecisionCaller | undefined>;

const prefix = "/v1/authorize";

/**
 * Registers the decision API for proxies that are not writ: any method at
 * `/v1/authorize/tools/<tool>/<path>` (Envoy `ext_authz` with `path_prefix`), and `GET /v1/authorize`
 * with `X-Original-Method` and `X-Original-URI` (nginx `auth_request`). It decides exactly as the
 * gateway does and answers 200 with the headers to inject, or 401/403 with a DPoP challenge. The
 * caller must be a registered gateway authenticated by mutual TLS; anyone else gets 403 and nothing.
 */
export function registerAuthorizeRoute(
  app: FastifyInstance,
  dependencies: ToolRouteDependencies,
  callerByCertificate: CallerByCertificate,
): void {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_request, payload, done) => {
      // The decision never reads the body; drain it so the connection can be reused.
      payload.resume();
      done(null, undefined);
    });
    const handler = (request: FastifyRequest, reply: FastifyReply) =>
      authorize(request, reply, dependencies, callerByCertificate);
    scope.get(prefix, handler);
    scope.all(`${prefix}/*`, handler);
  });
}

async function authorize(
  request: FastifyRequest,
  reply: FastifyReply,
  dependencies: ToolRouteDependencies,
  callerByCertificate: CallerByCertificate,
): Promise<FastifyReply> {
  const caller = await identifyCaller(request, callerByCertificate);
  if (caller === undefined) {
    dependencies.log.info(
      { [logFields.requestId]: request.id },
      "decision request without a registered gateway certificate",
    );
    return reply.code(403).header("Cache-Control", "no-store").send({
      error: "access_denied",
      error_description: "only a registered gateway may ask for decisions",
    });
  }

  const rawUrl = request.raw.url ?? prefix;
  let method = request.method;
  let target = rawUrl.slice(prefix.length);
  if (target === "" || target.startsWith("?")) {
    const originalMethod = headerValues(request, "x-original-method");
    const originalUri = headerValues(request, "x-original-uri");
    if (originalMethod.length !== 1 || originalUri.length !== 1) {
      return reply.code(400).send({
        error: "invalid_request",
        error_description: "send exactly one X-Original-Method and one X-Original-URI",
      });
    }
    method = (originalMethod[0] as string).toUpperCase();
    target = originalUri[0] as string;
  }
  const queryAt = target.indexOf("?");
  const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
  const outcome = newOutcome(method);
  outcome.via = caller.id;
  try {
    // The proxy receives the tool's credential, so only a gateway the tool is assigned to may ask,
    // and only for tools whose injection it can perform: headers, not query parameters.
    const toolName = rawPath.startsWith("/tools/")
      ? (rawPath.slice("/tools/".length).split("/")[0] ?? "")
      : "";
    const tool = toolName === "" ? undefined : await dependencies.backend.tool(toolName);
    const config = tool?.config as Partial<HttpToolConfig> | undefined;
    if (tool === undefined || !(config?.gateways ?? []).includes(caller.name)) {
      throw new WritError("not_found", "no such tool", {
        detail: `tool ${toolName} is not assigned to ${caller.id}`,
      });
    }
    if ((config?.inject ?? []).some((rule) => rule.location === "query")) {
      throw new WritError("not_found", "no such tool", {
        detail: `tool ${toolName} injects into the query, which an external proxy cannot do`,
      });
    }
    const allowed = await enforce(
      dependencies,
      {
        method,
        rawPath,
        authorizations: headerValues(request, "authorization"),
        proofs: headerValues(request, "dpop"),
        publicUrl: caller.publicUrl,
      },
      outcome,
    );
    if (allowed === undefined) {
      return reply
        .code(403)
        .header("Cache-Control", "no-store")
        .header("Writ-Decision-Id", outcome.decisionId)
        .header("WWW-Authenticate", 'DPoP error="insufficient_scope"')
        .send({
          error: "insufficient_scope",
          error_description: "this request is not allowed for the task",
          decision_id: outcome.decisionId,
        });
    }
    const injection = await renderInjection(dependencies.backend, allowed.tool.name, allowed.config);
    return reply
      .code(200)
      .header("Cache-Control", "no-store")
      .header("Writ-Decision-Id", outcome.decisionId)
      .header("Writ-Path", allowed.path)
      .headers(injection.headers)
      .send();
  } catch (error) {
    return refuse(request, reply, dependencies, error, outcome);
  }
}

async function identifyCaller(
  request: FastifyRequest,
  callerByCertificate: CallerByCertificate,
): Promise<DecisionCaller | undefined> {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== "function") return undefined;
  const certificate = socket.getPeerCertificate();
  if (
    certificate === null ||
    typeof certificate.fingerprint256 !== "string" ||
    certificate.fingerprint256 === ""
  ) {
    return undefined;
  }
  return callerByCertificate(certificate.fingerprint256.replace(/:/g, "").toLowerCase());
}
