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
import { rejectIfRevoked, RequestAuthenticator } from "../authenticate.js";
import type { GatewayBackend } from "../backend.js";
import type { RiskScorer } from "../risk.js";
import { newMcpOutcome, recordMcp, type McpCaller } from "./decide.js";
import { mcpErrorCodes } from "./errors.js";
import { headerMismatch, type RawMessage } from "./headers.js";
import { mcpActions } from "./match.js";
import { McpSessions, type SessionBinding } from "./sessions.js";
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
  // Relayed only where a site policy permits `Action::"protocol_method"`.
  "logging/setLevel",
  "completion/complete",
  "resources/subscribe",
  "resources/unsubscribe",
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
  const context: RouteContext = {
    ...dependencies,
    nonces,
    authenticator,
    pool,
    publicOrigin,
    sessions: new McpSessions(),
  };

  registerMetadataRoute(app, dependencies.backend);
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      "*",
      { parseAs: "string", bodyLimit: maxMessageBytes },
      (_request, body, done) => done(null, body),
    );
    scope.post("/mcp/:tool", (request, reply) => handle(request, reply, context));
    scope.delete("/mcp/:tool", (request, reply) => closeSession(request, reply, context));
    // No server-initiated stream: the gateway relays no server-to-client message.
    scope.route({
      method: ["GET"],
      url: "/mcp/:tool",
      handler: (_request, reply) =>
        reply
          .code(405)
          .header("Allow", "POST, DELETE")
          .send(rpcError(null, mcpErrorCodes.invalidRequest, "use POST")),
    });
  });
}

interface RouteContext extends McpRouteDependencies {
  nonces: DpopNonces;
  authenticator: RequestAuthenticator;
  pool: UpstreamPool;
  publicOrigin: string;
  sessions: McpSessions;
}

async function handle(
  request: FastifyRequest,
  reply: FastifyReply,
  context: RouteContext,
): Promise<FastifyReply | void> {
  const toolName = (request.params as { tool: string }).tool;
  const { backend } = context;
  reply.header("Cache-Control", "no-store").header("DPoP-Nonce", context.nonces.issue());

  if (!checkOriginAndTool(request, reply, context, toolName)) return reply;

  const claims = await authenticateRequest(request, reply, context, toolName, "POST");
  if (claims === undefined) return reply;

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
    outcome.clientIp = request.ip;
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
  const binding = sessionBinding(claims, toolName);
  const sessionIds = headerValues(request, "mcp-session-id");
  const nowS = Math.floor(context.clock.nowMs() / 1000);
  const session =
    sessionIds.length === 1 ? context.sessions.check(sessionIds[0] as string, binding, nowS) : undefined;
  if (sessionIds.length > 1 || session === "foreign" || session === "closed") {
    return reply
      .code(404)
      .send(rpcError(id, mcpErrorCodes.sessionNotFound, "no such session for this task and key"));
  }
  const isRequest = method !== undefined && id !== null;
  if (!isRequest) {
    // A response (the gateway sends the agent no requests) or a notification nothing here consumes.
    if (method === undefined || !relayedNotifications.has(method)) return reply.code(202).send();
  } else if (!relayedMethods.has(method)) {
    const outcome = newMcpOutcome(method, null);
    outcome.clientIp = request.ip;
    outcome.reason = "the gateway does not relay this method";
    await recordMcp(backend, claims, toolName, outcome, "denied");
    return reply.code(200).send(
      rpcError(id, mcpErrorCodes.denied, `method "${outcome.mcpMethod}" is not allowed`, {
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
    clientIp: request.ip,
    pathBase:
      config.command === undefined ? { cwd: "/", home: "/" } : { cwd: folders.work, home: folders.home },
  };
  if (method === "initialize") {
    const expiresS = caller.task?.deadline_s ?? claims.exp;
    const opened = context.sessions.open(binding, expiresS, nowS);
    if (opened !== undefined) reply.header("Mcp-Session-Id", opened);
  }
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

/** Ends an MCP session at the agent's request (`DELETE` with its `Mcp-Session-Id`). */
async function closeSession(
  request: FastifyRequest,
  reply: FastifyReply,
  context: RouteContext,
): Promise<FastifyReply> {
  const toolName = (request.params as { tool: string }).tool;
  reply.header("Cache-Control", "no-store").header("DPoP-Nonce", context.nonces.issue());
  if (!checkOriginAndTool(request, reply, context, toolName)) return reply;
  const claims = await authenticateRequest(request, reply, context, toolName, "DELETE");
  if (claims === undefined) return reply;
  const sessionIds = headerValues(request, "mcp-session-id");
  const closed =
    sessionIds.length === 1 &&
    context.sessions.close(
      sessionIds[0] as string,
      sessionBinding(claims, toolName),
      Math.floor(context.clock.nowMs() / 1000),
    );
  if (!closed) {
    return reply
      .code(404)
      .send(rpcError(null, mcpErrorCodes.sessionNotFound, "no such session for this task and key"));
  }
  return reply.code(204).send();
}

/** Refuses a foreign Origin (403) or a malformed tool name (404); true when the request may go on. */
function checkOriginAndTool(
  request: FastifyRequest,
  reply: FastifyReply,
  context: RouteContext,
  toolName: string,
): boolean {
  // Browsers send Origin; a page of another origin must not reach a loopback gateway (DNS rebinding).
  const origins = headerValues(request, "origin");
  if (origins.length > 1 || (origins.length === 1 && origins[0] !== context.publicOrigin)) {
    void reply.code(403).send(rpcError(null, mcpErrorCodes.invalidRequest, "origin not allowed"));
    return false;
  }
  if (!toolNamePattern.test(toolName)) {
    void reply.code(404).send({ error: "not_found", error_description: "no such tool" });
    return false;
  }
  return true;
}

function sessionBinding(claims: AccessTokenClaims, toolName: string): SessionBinding {
  return { taskId: claims.task_id ?? claims.jti, jkt: claims.cnf.jkt, tool: toolName };
}

/**
 * Authenticates one request: a fresh revocation view, a DPoP-bound token for this tool with a proof
 * of `method` carrying a server nonce, and no revocation of the token, task or identities. Sends the
 * rejection itself and returns undefined when any check fails.
 */
async function authenticateRequest(
  request: FastifyRequest,
  reply: FastifyReply,
  context: RouteContext,
  toolName: string,
  method: "POST" | "DELETE",
): Promise<AccessTokenClaims | undefined> {
  const { backend } = context;
  try {
    if (!backend.revocations.isFresh()) {
      throw new WritError("temporarily_unavailable", "the gateway cannot confirm revocations; retry later", {
        detail: "revocation feed silent past its bound",
      });
    }
    const claims = await context.authenticator.authenticate(
      {
        authorizations: headerValues(request, "authorization"),
        proofs: headerValues(request, "dpop"),
        method,
        url: `${backend.publicUrl}/mcp/${toolName}`,
      },
      `${backend.issuer}/mcp/${toolName}`,
    );
    rejectIfRevoked(backend.revocations, claims);
    return claims;
  } catch (error) {
    await refuse(request, reply, context, toolName, error);
    return undefined;
  }
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
  // A presented credential that fails is audited as a denial. The nonce handshake of every new client
  // and a request without a credential are not, because they carry no identity to record.
  if (presented && writError.code !== "use_dpop_nonce") {
    const outcome = newMcpOutcome("authenticate", null);
    outcome.reason = writError.detail ?? writError.description;
    outcome.clientIp = request.ip;
    try {
      await recordMcp(context.backend, undefined, toolName, outcome, "denied");
    } catch (auditError) {
      context.log.error(
        { ...fields, [logFields.decisionId]: outcome.decisionId, err: auditError },
        "audit of a rejected mcp request failed",
      );
    }
  }
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
