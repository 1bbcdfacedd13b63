import { createHash, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { Clock } from "../../clock.js";
import { stepUpRetryAfterSeconds } from "../../config/defaults.js";
import { dpopAlgorithms } from "../../dpop/verify-proof.js";
import { WritError, isWritError } from "../../errors/writ-error.js";
import { logFields } from "../../log/fields.js";
import { headerValues } from "../../server/headers.js";
import type { AccessTokenClaims } from "../../tokens/access-token.js";
import type { HttpToolConfig } from "../../tools/http-config.js";
import type { Tool, ToolAction } from "../../tools/registry.js";
import { rejectIfRevoked, type RequestAuthenticator } from "../authenticate.js";
import type { GatewayBackend } from "../backend.js";
import { actorChain, currentActor, principalOf, taskContext } from "../decision.js";
import type { RiskScorer } from "../risk.js";
import { Forwarder } from "./forward.js";
import { matchActions, parseHttpPattern, type HttpPattern } from "./match-action.js";
import { normalisePath } from "./normalise-path.js";
import { renderInjection, withInjectedQuery } from "./inject.js";

export interface ToolRouteDependencies {
  backend: GatewayBackend;
  authenticator: RequestAuthenticator;
  risk: RiskScorer;
  clock: Clock;
  log: Logger;
}

const toolNamePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The decision on one request, for the audit event and the response. */
export interface Outcome {
  decisionId: string;
  claims?: AccessTokenClaims;
  tool?: string;
  action?: string;
  method: string;
  path?: string;
  policies: string[];
  errors: string[];
  riskScore?: number;
  /** The task's initiator: a person's SPIFFE ID, a schedule, or the parent task. */
  initiator?: string;
  reason: string;
  /** The external proxy that asked for this decision, when it came through the decision API. */
  via?: string;
  /** For an action that needs approval: the approval request of this exact call and its state. */
  approvalId?: string;
  approvalStatus?: "granted" | "pending" | "rejected";
  /** The address the request came from: the socket's peer, never a forwarding header. */
  clientIp?: string;
  /** The verdict already in the audit log. A later failure is then recorded as a failure, not a second verdict. */
  recorded?: "allowed" | "denied" | "held";
}

/**
 * Registers `/tools/<tool>/<path>`, the enforcement point for HTTP tools. Every request is
 * authenticated, checked against revocations, normalised, matched to an action and decided by
 * Cedar. The decision is durable in the audit log before anything is forwarded.
 */
export function registerToolRoute(app: FastifyInstance, dependencies: ToolRouteDependencies): void {
  const forwarder = new Forwarder();
  app.addHook("onClose", async () => forwarder.close());

  app.register(async (scope) => {
    // Bodies are streamed to the upstream as received, never parsed here.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
    scope.all("/tools/*", (request, reply) => handle(request, reply, dependencies, forwarder));
  });
}

async function handle(
  request: FastifyRequest,
  reply: FastifyReply,
  dependencies: ToolRouteDependencies,
  forwarder: Forwarder,
): Promise<FastifyReply> {
  const rawUrl = originForm(request.raw.url ?? "/");
  const queryAt = rawUrl.indexOf("?");
  const outcome = newOutcome(request.method);
  outcome.clientIp = request.ip;
  try {
    const allowed = await enforce(
      dependencies,
      {
        method: request.method,
        rawPath: queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt),
        authorizations: headerValues(request, "authorization"),
        proofs: headerValues(request, "dpop"),
        publicUrl: dependencies.backend.publicUrl,
        query: queryAt === -1 ? "" : rawUrl.slice(queryAt + 1),
        readBody: (maxBytes) => bufferBody(request, maxBytes),
      },
      outcome,
    );
    if (allowed === undefined && outcome.approvalId !== undefined) return sendHeld(reply, outcome);
    if (allowed === undefined) {
      return sendDenial(
        reply,
        403,
        "insufficient_scope",
        "this request is not allowed for the task",
        outcome,
      );
    }
    const rawQuery = queryAt === -1 ? "" : rawUrl.slice(queryAt + 1);
    return await forward(request, reply, dependencies, forwarder, allowed, rawQuery, outcome);
  } catch (error) {
    return refuse(request, reply, dependencies, error, outcome);
  }
}

/**
 * Returns a request target in origin form. An absolute-form target (RFC 9112 section 3.2.2), which a
 * server must accept, loses its scheme and authority, and the rest is kept byte for byte. writ
 * builds every URL it checks from its public URL, so the authority is not used.
 */
export function originForm(target: string): string {
  if (target.startsWith("/")) return target;
  const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(target);
  if (authority === null) return target;
  const rest = target.slice(authority[0].length);
  return rest.startsWith("/") ? rest : `/${rest}`;
}

/** A request as enforcement reads it: its method, raw target path and credentials. */
export interface EnforcementRequest {
  method: string;
  /** The request target's path as received, `/tools/<tool>/…`, without the query. */
  rawPath: string;
  authorizations: string[];
  proofs: string[];
  /** The URL base the client called, from which the DPoP `htu` is built. */
  publicUrl: string;
  /** The query exactly as received, without `?`; part of what a step-up approval is bound to. */
  query?: string;
  /**
   * Buffers the request body, failing past `maxBytes`. It is absent where the enforcement point never
   * receives the body (the decision API), so actions that need approval are denied there.
   */
  readBody?: (maxBytes: number) => Promise<Buffer>;
}

/** An allowed request: the tool, its settings and the normalised path that was authorised. */
export interface AllowedRequest {
  tool: Tool;
  config: HttpToolConfig;
  path: string;
  /** The buffered body an approval was bound to; forwarded in place of the request stream. */
  body?: Buffer;
}

export function newOutcome(method: string): Outcome {
  return { decisionId: randomUUID(), method, policies: [], errors: [], reason: "" };
}

/**
 * Decides one tool request: authentication, revocation, path normalisation, action matching and
 * Cedar. Returns the allowed request once its decision is durable in the audit log, or undefined
 * once its denial is. A request refused earlier throws a domain error, and the caller records it.
 */
export async function enforce(
  dependencies: ToolRouteDependencies,
  request: EnforcementRequest,
  outcome: Outcome,
): Promise<AllowedRequest | undefined> {
  const { backend } = dependencies;
  const rest = request.rawPath.startsWith("/tools/") ? request.rawPath.slice("/tools/".length) : "";
  const slash = rest.indexOf("/");
  const toolName = slash === -1 ? rest : rest.slice(0, slash);
  const toolPath = slash === -1 ? "/" : rest.slice(slash);

  if (!toolNamePattern.test(toolName)) throw new WritError("not_found", "no such tool");
  outcome.tool = toolName;
  if (!backend.revocations.isFresh()) {
    throw new WritError("temporarily_unavailable", "the gateway cannot confirm revocations; retry later", {
      detail: "revocation feed silent past its bound",
    });
  }
  const { claims, proofVerified } = await dependencies.authenticator.begin(
    {
      authorizations: request.authorizations,
      proofs: request.proofs,
      method: request.method,
      url: `${request.publicUrl}${request.rawPath}`,
    },
    `${backend.issuer}/tools/${toolName}`,
  );
  // The decision is prepared while the proof's signature is checked, and none of it is used or
  // recorded until the proof has passed. A bad proof is reported before any other error. Revocation
  // is checked after the proof, as close as possible to recording the decision.
  let prepared: PreparedDecision;
  let tool: Tool;
  let httpConfig: HttpToolConfig;
  try {
    ({ tool, config: httpConfig } = await httpTool(backend, toolName));
    const normalised = normalisePath(toolPath, { caseSensitive: httpConfig.case_sensitive });
    if (!normalised.ok)
      throw new WritError("invalid_request", "the request path is not allowed", {
        detail: normalised.problem,
      });
    prepared = await decide(dependencies, tool, claims, request.method, normalised.path);
  } catch (error) {
    await proofVerified;
    outcome.claims = claims;
    rejectIfRevoked(backend.revocations, claims);
    throw error;
  }
  await proofVerified;
  outcome.claims = claims;
  rejectIfRevoked(backend.revocations, claims);
  Object.assign(outcome, prepared.outcome);
  if (prepared.countedTask !== undefined) dependencies.risk.count(prepared.countedTask, tool.name);
  const path = outcome.path as string;

  if (!prepared.allowed) {
    dependencies.risk.recordDenial(claims.task_id ?? claims.jti);
    await record(dependencies, outcome, "denied");
    return undefined;
  }
  let body: Buffer | undefined;
  const approval = tool.actions.find((action) => action.name === outcome.action)?.approval;
  if (approval !== undefined) {
    body = await settleStepUp(dependencies, request, claims, tool, httpConfig, path, outcome);
    if (body === undefined) {
      await record(dependencies, outcome, outcome.approvalStatus === "pending" ? "held" : "denied");
      return undefined;
    }
  }
  await record(dependencies, outcome, "allowed");
  return { tool, config: httpConfig, path, ...(body === undefined ? {} : { body }) };
}

/** Finds the HTTP tool a request names; throws `not_found` otherwise. */
async function httpTool(
  backend: GatewayBackend,
  toolName: string,
): Promise<{ tool: Tool; config: HttpToolConfig }> {
  const tool = await backend.tool(toolName);
  const config = tool?.config as Partial<HttpToolConfig> | undefined;
  if (tool === undefined || tool.kind !== "http" || config?.upstream === undefined) {
    throw new WritError("not_found", "no such tool", { detail: "tool missing or has no upstream" });
  }
  return { tool, config: config as HttpToolConfig };
}

/**
 * Settles a call that policy allows but whose action needs approval. The approval is bound to the
 * task, action, method, path, query and SHA-256 of the body, so the body is buffered (up to the
 * tool's `max_body_bytes`) and those same bytes are forwarded. Returns the body when an approval was
 * spent, or undefined with the outcome saying why the call is held or denied.
 */
async function settleStepUp(
  dependencies: ToolRouteDependencies,
  request: EnforcementRequest,
  claims: AccessTokenClaims,
  tool: Tool,
  config: HttpToolConfig,
  path: string,
  outcome: Outcome,
): Promise<Buffer | undefined> {
  if (request.readBody === undefined || claims.task_id === undefined) {
    outcome.reason = "the action needs approval of the exact call, which this enforcement point cannot see";
    return undefined;
  }
  const body = await request.readBody(config.max_body_bytes);
  const query = request.query ?? "";
  const result = await dependencies.backend.stepUp({
    task_id: claims.task_id,
    requester: currentActor(actorChain(claims)),
    tool: tool.name,
    action: outcome.action ?? "",
    method: request.method,
    target: query === "" ? path : `${path}?${query}`,
    body_sha256: createHash("sha256").update(body).digest("hex"),
  });
  outcome.approvalId = result.approval_id;
  outcome.approvalStatus = result.status;
  if (result.status === "granted") return body;
  outcome.reason = result.status === "pending" ? "held until people approve the call" : "approval rejected";
  return undefined;
}

/** Reads the whole request body, failing with `invalid_request` once it passes `maxBytes`. */
async function bufferBody(request: FastifyRequest, maxBytes: number): Promise<Buffer> {
  const stream = request.body as Readable | null | undefined;
  if (request.method === "GET" || request.method === "HEAD" || stream === null || stream === undefined) {
    return Buffer.alloc(0);
  }
  const tooLarge = () => new WritError("invalid_request", `request body is larger than ${maxBytes} bytes`);
  if (Number(request.headers["content-length"] ?? 0) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += bytes.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(bytes);
  }
  return Buffer.concat(chunks);
}

/** Parsed action patterns by tool, so a pattern is parsed once per cached tool, not per request. */
const patterns = new WeakMap<Tool, (ToolAction & { pattern: HttpPattern })[]>();

function parsedActions(tool: Tool): (ToolAction & { pattern: HttpPattern })[] {
  let parsed = patterns.get(tool);
  if (parsed === undefined) {
    parsed = tool.actions.map((action) => ({ ...action, pattern: parseHttpPattern(action.spec) }));
    patterns.set(tool, parsed);
  }
  return parsed;
}

/**
 * Decision prepared before the request's proof is verified: the outcome fields it sets, and the task
 * whose request count rises once the proof has passed.
 */
interface PreparedDecision {
  allowed: boolean;
  outcome: Pick<Outcome, "path" | "action" | "initiator" | "riskScore" | "policies" | "errors" | "reason">;
  countedTask?: string;
}

/**
 * Matches the action, scores the risk and evaluates Cedar without changing any state, so it may run
 * before the request's proof is verified. The risk score includes this request without recording it.
 */
async function decide(
  dependencies: ToolRouteDependencies,
  tool: Tool,
  claims: AccessTokenClaims,
  method: string,
  path: string,
): Promise<PreparedDecision> {
  const outcome: PreparedDecision["outcome"] = { path, policies: [], errors: [], reason: "" };
  const grant = claims.authorization_details?.find((detail) => detail.type === "agent_task");
  const tokenActions = (grant?.actions ?? []).map((action) => `${tool.name}:${action}`);
  const caseSensitive = (tool.config as Partial<HttpToolConfig>).case_sensitive !== false;
  const candidates = matchActions(parsedActions(tool), method, path, caseSensitive);
  if (candidates.length === 0) {
    outcome.reason = "no action of the tool matches the request";
    return { allowed: false, outcome };
  }
  // Among the matching actions, the first the token names is decided; else the first, to be denied.
  const chosen =
    candidates.find((action) => tokenActions.includes(`${tool.name}:${action.name}`)) ?? candidates[0];
  if (chosen === undefined) return { allowed: false, outcome };
  outcome.action = chosen.name;

  const taskId = claims.task_id;
  const task = taskId === undefined ? undefined : await dependencies.backend.task(taskId);
  if (task === undefined || grant === undefined) {
    outcome.reason = "the token names no task";
    return { allowed: false, outcome };
  }
  outcome.initiator = task.initiator;
  outcome.riskScore = dependencies.risk.preview(task.id, tool.name);
  const result = dependencies.backend.policy.evaluate({
    principal: principalOf(claims),
    action: `${tool.name}:${chosen.name}`,
    tool,
    context: {
      ...taskContext(task, grant, claims),
      method,
      path,
      risk: chosen.risk,
      risk_score: outcome.riskScore,
      action_name: `${tool.name}:${chosen.name}`,
      token_actions: tokenActions,
    },
  });
  outcome.policies = result.policies;
  outcome.errors = result.errors;
  outcome.reason = result.decision === "allow" ? "permitted by policy" : "denied by policy";
  return { allowed: result.decision === "allow", outcome, countedTask: task.id };
}

async function forward(
  request: FastifyRequest,
  reply: FastifyReply,
  dependencies: ToolRouteDependencies,
  forwarder: Forwarder,
  allowed: AllowedRequest,
  rawQuery: string,
  outcome: Outcome,
): Promise<FastifyReply> {
  const { tool, config, path } = allowed;
  const injection = await renderInjection(dependencies.backend, tool.name, config);
  // A revocation may have arrived while the decision was being made durable. It is checked again
  // after the last wait before the request leaves, so nothing goes upstream once it is known.
  if (outcome.claims !== undefined) rejectIfRevoked(dependencies.backend.revocations, outcome.claims);
  const search = injection.query.length > 0 ? withInjectedQuery(rawQuery, injection.query) : rawQuery;
  const hasBody =
    request.method !== "GET" &&
    request.method !== "HEAD" &&
    request.body !== undefined &&
    request.body !== null;
  const body = allowed.body === undefined ? (request.body as Readable) : Readable.from([allowed.body]);

  const upstream = await forwarder.forward(
    {
      url: `${config.upstream}${path}${search === "" ? "" : `?${search}`}`,
      method: request.method,
      headers: request.headers,
      injected: injection.headers,
      body: hasBody ? body : null,
      timeoutMs: config.timeout_ms,
      maxBodyBytes: config.max_body_bytes,
    },
    injection.echoForms,
  );
  if (!Buffer.isBuffer(upstream.body)) {
    // The status and head are sent by then, so the agent learns of the failure from the connection
    // closing before the body's end, and the audit log from a `tool_call.failed` event.
    upstream.body.on("error", (error) => {
      const fields = {
        [logFields.decisionId]: outcome.decisionId,
        [logFields.taskId]: outcome.claims?.task_id,
        [logFields.jti]: outcome.claims?.jti,
      };
      dependencies.log.info({ ...fields, err: error }, "upstream response stream failed");
      outcome.reason = isWritError(error)
        ? (error.detail ?? error.description)
        : `the upstream response was cut short: ${(error as Error).message}`;
      record(dependencies, outcome, "failed").catch((auditError: unknown) =>
        dependencies.log.error({ ...fields, err: auditError }, "audit of a failed tool request failed"),
      );
    });
  }
  return reply
    .code(upstream.status)
    .headers({ ...upstream.headers, "writ-decision-id": outcome.decisionId })
    .send(upstream.body);
}

/**
 * Appends the decision to the audit log, and the request is forwarded only once this resolves.
 * `failed` records that an allowed call did not complete, because the upstream failed or the token
 * was revoked before it left. Each decision id thus has one verdict.
 */
async function record(
  dependencies: ToolRouteDependencies,
  outcome: Outcome,
  verdict: "allowed" | "denied" | "held" | "failed",
): Promise<void> {
  const claims = outcome.claims;
  const chain = claims === undefined ? undefined : actorChain(claims);
  await dependencies.backend.record({
    kind: `tool_call.${verdict}`,
    actor: chain === undefined ? "anonymous" : currentActor(chain),
    task_id: claims?.task_id ?? null,
    jti: claims?.jti ?? null,
    data: {
      decision_id: outcome.decisionId,
      decision: verdict === "allowed" || verdict === "failed" ? "allow" : "deny",
      reason: outcome.reason,
      initiator: outcome.initiator ?? null,
      sub: chain?.sub ?? null,
      actors: chain?.actors ?? [],
      tool: outcome.tool ?? null,
      action: outcome.action ?? null,
      method: outcome.method,
      path: outcome.path ?? null,
      policies: outcome.policies,
      errors: outcome.errors,
      risk_score: outcome.riskScore ?? null,
      jkt: claims?.cnf.jkt ?? null,
      via: outcome.via ?? null,
      breakglass_id: claims?.breakglass_id ?? null,
      approval_id: outcome.approvalId ?? null,
      client_ip: outcome.clientIp ?? null,
    },
  });
  if (verdict !== "failed") outcome.recorded = verdict;
}

export async function refuse(
  request: FastifyRequest,
  reply: FastifyReply,
  dependencies: ToolRouteDependencies,
  error: unknown,
  outcome: Outcome,
): Promise<FastifyReply> {
  const writError = isWritError(error)
    ? error
    : new WritError("server_error", "internal error", { cause: error });
  outcome.reason = writError.detail ?? writError.description;
  const fields = {
    [logFields.requestId]: request.id,
    [logFields.decisionId]: outcome.decisionId,
    [logFields.taskId]: outcome.claims?.task_id,
    [logFields.jti]: outcome.claims?.jti,
    [logFields.errorCode]: writError.code,
    [logFields.detail]: writError.detail,
  };
  if (writError.status >= 500)
    dependencies.log.error({ ...fields, err: writError.cause ?? writError }, "tool request failed");
  else dependencies.log.info(fields, "tool request refused");
  if (reply.sent) return reply;
  const verdict = outcome.recorded === "allowed" ? "failed" : "denied";
  try {
    await record(dependencies, outcome, verdict);
  } catch (auditError) {
    dependencies.log.error({ ...fields, err: auditError }, `audit of a ${verdict} tool request failed`);
  }
  if (
    writError.code === "invalid_token" ||
    writError.code === "invalid_dpop_proof" ||
    writError.code === "use_dpop_nonce"
  ) {
    return sendDenial(reply, 401, writError.code, writError.description, outcome);
  }
  if (writError.code === "not_found") return sendDenial(reply, 404, "not_found", "no such tool", outcome);
  if (writError.code === "invalid_request")
    return sendDenial(reply, 400, "invalid_request", writError.description, outcome);
  if (writError.code === "temporarily_unavailable") {
    return sendDenial(reply, 503, "temporarily_unavailable", writError.description, outcome);
  }
  return sendDenial(reply, 500, "server_error", "internal error; the gateway log has the detail", outcome);
}

/** Responds to a call held for approval (pending) or refused by people (rejected): 403 with the approval. */
function sendHeld(reply: FastifyReply, outcome: Outcome): FastifyReply {
  const pending = outcome.approvalStatus === "pending";
  const description = pending ? "this call is held until people approve it" : "people rejected this call";
  if (pending) reply.header("Retry-After", String(stepUpRetryAfterSeconds));
  return reply
    .code(403)
    .header("WWW-Authenticate", `DPoP error="insufficient_scope", error_description="${description}"`)
    .header("Cache-Control", "no-store")
    .header("Writ-Decision-Id", outcome.decisionId)
    .send({
      error: "insufficient_scope",
      error_description: description,
      decision_id: outcome.decisionId,
      approval_id: outcome.approvalId,
      status: outcome.approvalStatus,
    });
}

function sendDenial(
  reply: FastifyReply,
  status: number,
  code: string,
  description: string,
  outcome: Outcome,
): FastifyReply {
  if (status === 401 || status === 403) {
    reply.header(
      "WWW-Authenticate",
      `DPoP error="${code}", error_description="${description.replace(/"/g, "'")}", algs="${dpopAlgorithms.join(" ")}"`,
    );
  }
  return reply
    .code(status)
    .header("Cache-Control", "no-store")
    .header("Writ-Decision-Id", outcome.decisionId)
    .send({ error: code, error_description: description, decision_id: outcome.decisionId });
}
