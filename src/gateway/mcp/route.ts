import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { Clock } from "../../clock.js";
import { dpopNonceLifetimeSeconds } from "../../config/defaults.js";
import { DpopNonces } from "../../dpop/nonces.js";
import type { ReplayCache } from "../../dpop/replay-cache.js";
import { dpopAlgorithms, type DpopPolicy } from "../../dpop/verify-proof.js";
import { WritError, isWritError } from "../../errors/writ-error.js";
import { logFields } from "../../log/fields.js";
import { headerValues } from "../../server/headers.js";
import type { AccessTokenClaims } from "../../tokens/access-token.js";
import type { McpToolConfig } from "../../tools/mcp-config.js";
import { RequestAuthenticator } from "../authenticate.js";
import type { GatewayBackend } from "../backend.js";
import { actorChain } from "../decision.js";
import type { RiskScorer } from "../risk.js";
import { newMcpOutcome, recordMcp, type McpCaller } from "./decide.js";
import { mcpErrorCodes } from "./errors.js";
import { headerMismatch, type RawMessage } from "./headers.js";
import { mcpActions } from "./match.js";
import { metadataPath, registerMetadataRoute } from "./metadata-route.js";
import { buildMcpServer } from "./server.js";
import { UpstreamPool, type UpstreamPoolOptions } from "./upstreams.js";

export interface McpRouteDependencies {
  backend: GatewayBackend;
  risk: RiskScorer;
  clock: Clock;
  log: Logger;
  dpop: DpopPolicy;
  replay: ReplayCache;
  upstreams?: Pick<UpstreamPoolOptions, "maxUpstreams" | "idleMs" | "rootDir">;
}

const toolNamePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Largest JSON-RPC message accepted from an agent, in bytes. */
const maxMessageBytes = 4 * 1024 * 1024;
/** Methods relayed to the SDK server, which handles them itself or runs the handlers of `buildMcpServer`. */
const relayedMethods = new Set([
  "initialize",
  "ping",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "prompts/list",
  "prompts/get",
]);
/** Notifications the SDK server takes; any other notification, and every response, is dropped. */
const relayedNotifications = new Set(["notifications/initialized", "notifications/cancelled"]);

/**
 * Registers `/mcp/<tool>`: the enforcement point for MCP tools, served as a stateless Streamable HTTP
 * endpoint. Every POST is checked for its Origin, authenticated with a DPoP proof that must carry a
 * server nonce, checked against revocations, and then handed to a per-request MCP server that decides
 * each call with Cedar. Also registers the tools' Protected Resource Metadata.
 */
export function registerMcpRoute(app: FastifyInstance, dependencies: McpRouteDependencies): void {
  const nonces = new DpopNonces(dependencies.clock, dpopNonceLifetimeSeconds);
  const authenticator = new RequestAuthenticator(
    dependencies.backend,
    { ...dependencies.dpop, nonces },
    dependencies.clock,
    dependencies.replay,
  );
  const pool = new UpstreamPool({
    backend: dependencies.backend,
    clock: dependencies.clock,
    log: dependencies.log,
    ...dependencies.upstreams,
  });
  app.addHook("onClose", async () => pool.close());
  const publicOrigin = new URL(dependencies.backend.publicUrl).origin;
  const context: RouteContext = { ...dependencies, nonces, authenticator, pool, publicOrigin };

  registerMetadataRoute(app, dependencies.backend);
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      "*",
      { parseAs: "string", bodyLimit: maxMessageBytes },
      (_request, body, done) => done(null, body),
    );
    scope.post("/mcp/:tool", (request, reply) => handle(request, reply, context));
    // Stateless: no server-initiated stream to resume and no session to delete.
    scope.route({
      method: ["GET", "DELETE"],
      url: "/mcp/:tool",
      handler: (_request, reply) =>
        reply
          .code(405)
          .header("Allow", "POST")
          .send(rpcError(null, mcpErrorCodes.invalidRequest, "use POST")),
    });
  });
}

interface RouteContext extends McpRouteDependencies {
  nonces: DpopNonces;
  authenticator: RequestAuthenticator;
  pool: UpstreamPool;
  publicOrigin: string;
}

async function handle(
  request: FastifyRequest,
  reply: FastifyReply,
  context: RouteContext,
): Promise<FastifyReply | void> {
  const toolName = (request.params as { tool: string }).tool;
  const { backend } = context;
  reply.header("Cache-Control", "no-store").header("DPoP-Nonce", context.nonces.issue());

  // Browsers send Origin; a page of another origin must not reach a loopback gateway (DNS rebinding).
  const origins = headerValues(request, "origin");
  if (origins.length > 1 || (origins.length === 1 && origins[0] !== context.publicOrigin)) {
    return reply.code(403).send(rpcError(null, mcpErrorCodes.invalidRequest, "origin not allowed"));
  }
  if (!toolNamePattern.test(toolName))
    return reply.code(404).send({ error: "not_found", error_description: "no such tool" });

  let claims: AccessTokenClaims;
  try {
    if (!backend.revocations.isFresh()) {
      throw new WritError("temporarily_unavailable", "the gateway cannot confirm revocations; retry later", {
        detail: "revocation feed silent past its bound",
      });
    }
    claims = await context.authenticator.authenticate(
      {
        authorizations: headerValues(request, "authorization"),
        proofs: headerValues(request, "dpop"),
        method: "POST",
        url: `${backend.publicUrl}/mcp/${toolName}`,
      },
      `${backend.issuer}/mcp/${toolName}`,
    );
    const chain = actorChain(claims);
    const revoked = backend.revocations.revocationOf({
      jti: claims.jti,
      task_id: claims.task_id,
      identities: [chain.sub, ...chain.actors],
      iat: claims.iat,
    });
    if (revoked !== undefined)
      throw new WritError("invalid_token", "access token is not valid", { detail: revoked });
  } catch (error) {
    return refuse(request, reply, context, toolName, error);
  }

  const tool = await backend.tool(toolName);
  const config = tool?.config as Partial<McpToolConfig> | undefined;
  if (
    tool === undefined ||
    tool.kind !== "mcp" ||
    (config?.command === undefined && config?.upstream === undefined)
  ) {
    return reply.code(404).send({ error: "not_found", error_description: "no such tool" });
  }

  let message: unknown;
  try {
    message = JSON.parse(typeof request.body === "string" ? request.body : "");
  } catch {
    return reply.code(400).send(rpcError(null, mcpErrorCodes.parseError, "the body is not JSON"));
  }
  if (Array.isArray(message) || typeof message !== "object" || message === null) {
    const outcome = newMcpOutcome(Array.isArray(message) ? "batch" : "invalid", null);
    outcome.reason = Array.isArray(message) ? "JSON-RPC batches are not accepted" : "not a JSON-RPC message";
    await recordMcp(backend, claims, toolName, outcome, "denied");
    return reply.code(400).send(
      rpcError(null, mcpErrorCodes.invalidRequest, `${outcome.reason}`, {
        decision_id: outcome.decisionId,
      }),
    );
  }
  const raw = message as RawMessage & { id?: unknown };
  const id = typeof raw.id === "string" || typeof raw.id === "number" ? raw.id : null;
  const mismatch = headerMismatch(request.headers, raw);
  if (mismatch !== undefined) {
    context.log.info(
      { [logFields.requestId]: request.id, [logFields.taskId]: claims.task_id, [logFields.detail]: mismatch },
      "mcp headers disagree with the body",
    );
    return reply.code(400).send(rpcError(id, mcpErrorCodes.headerMismatch, `header mismatch: ${mismatch}`));
  }

  const method = typeof raw.method === "string" ? raw.method : undefined;
  const isRequest = method !== undefined && id !== null;
  if (!isRequest) {
    // A response (the gateway sends the agent no requests) or a notification nothing here consumes.
    if (method === undefined || !relayedNotifications.has(method)) return reply.code(202).send();
  } else if (!relayedMethods.has(method)) {
    const outcome = newMcpOutcome(method, null);
    outcome.reason = "the gateway does not relay this method";
    await recordMcp(backend, claims, toolName, outcome, "denied");
    return reply.code(200).send(
      rpcError(id, mcpErrorCodes.denied, `method "${method}" is not allowed`, {
        decision_id: outcome.decisionId,
      }),
    );
  }

  const grant = claims.authorization_details?.find((detail) => detail.type === "agent_task");
  const taskId = claims.task_id;
  const folders = context.pool.folderPaths(tool.name, taskId ?? claims.jti);
  const caller: McpCaller = {
    claims,
    task: taskId === undefined ? undefined : await backend.task(taskId),
    tool,
    actions: mcpActions(tool.actions),
    tokenActions: (grant?.actions ?? []).map((action) => `${tool.name}:${action}`),
    pathBase:
      config.command === undefined ? { cwd: "/", home: "/" } : { cwd: folders.work, home: folders.home },
  };
  const server = buildMcpServer({ ...context, pool: context.pool }, caller, config as McpToolConfig);
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  await server.connect(transport);
  reply.hijack();
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined) reply.raw.setHeader(name, value as string);
  reply.raw.on("close", () => {
    void transport.close();
    void server.close();
  });
  await transport.handleRequest(request.raw, reply.raw, message);
}

/** Sends the RFC 6750 and RFC 9449 challenge for an authentication failure, with the metadata URL. */
async function refuse(
  request: FastifyRequest,
  reply: FastifyReply,
  context: RouteContext,
  toolName: string,
  error: unknown,
): Promise<FastifyReply> {
  const writError = isWritError(error)
    ? error
    : new WritError("server_error", "internal error", { cause: error });
  const fields = {
    [logFields.requestId]: request.id,
    [logFields.errorCode]: writError.code,
    [logFields.detail]: writError.detail,
    tool: toolName,
  };
  if (writError.status >= 500)
    context.log.error({ ...fields, err: writError.cause ?? writError }, "mcp request failed");
  else context.log.info(fields, "mcp request rejected");

  if (writError.code === "temporarily_unavailable") {
    return reply.code(503).send({ error: writError.code, error_description: writError.description });
  }
  if (writError.status >= 500)
    return reply.code(500).send({ error: "server_error", error_description: "internal error" });
  const metadata = `${context.backend.publicUrl}${metadataPath(toolName)}`;
  const presented = headerValues(request, "authorization").length > 0;
  const challenge = [
    ...(presented
      ? [`error="${writError.code}"`, `error_description="${writError.description.replace(/"/g, "'")}"`]
      : []),
    `algs="${dpopAlgorithms.join(" ")}"`,
    `resource_metadata="${metadata}"`,
  ];
  return reply
    .code(401)
    .header("WWW-Authenticate", `DPoP ${challenge.join(", ")}`)
    .send({ error: writError.code, error_description: writError.description });
}

function rpcError(
  id: string | number | null,
  code: number,
  message: string,
  data?: Record<string, unknown>,
): unknown {
  return { jsonrpc: "2.0", id, error: { code, message, ...(data === undefined ? {} : { data }) } };
}
