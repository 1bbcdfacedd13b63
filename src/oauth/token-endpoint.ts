import type { BrokerContext } from "../broker/context.js";
import { adminApiResource } from "../broker/context.js";
import { authenticateClient } from "../attestation/client-assertion.js";
import { verifyPlatformJwt } from "../attestation/federation.js";
import { epochSeconds } from "../clock.js";
import { BoundedKeyCache, verifyDpopProof, type VerifiedProof } from "../dpop/verify-proof.js";
import { DeferredReplayCache } from "../dpop/replay-cache.js";
import type { Transaction } from "kysely";
import type { Database } from "../store/schema.js";
import { WritError, isWritError } from "../errors/writ-error.js";
import { getAgentBySpiffeId, type Agent } from "../identity/agents.js";
import { listBindings } from "../identity/bindings.js";
import { actorChain, currentActor } from "../gateway/decision.js";
import { logFields } from "../log/fields.js";
import { isTaskLive, getTask, type Task } from "../tasks/tasks.js";
import { mintAccessToken, type AccessTokenClaims } from "../tokens/access-token.js";
import { parseAgentTaskRequest, type AgentTaskGrant } from "../tokens/authorization-details.js";
import { getTool, getToolByResource, type Tool } from "../tools/registry.js";
import { describeClient, findClientKey, importClientKey, memoisedAgentLookup } from "./clients.js";
import { single, type FormParams } from "./params.js";
import { handleTokenExchange, tokenExchangeGrant } from "./token-exchange.js";

export const clientCredentialsGrant = "client_credentials";

/** How long a tool found by its resource URI is reused before it is read again, in milliseconds. */
const toolCacheMs = 1000;
const toolsByResource = new Map<string, { tool: Tool | undefined; atMs: number }>();

/** Finds a tool by resource URI, reading the store at most once a second per URI. */
async function toolByResource(context: BrokerContext, resource: string): Promise<Tool | undefined> {
  const cached = toolsByResource.get(resource);
  const now = context.clock.nowMs();
  if (cached !== undefined && now - cached.atMs < toolCacheMs) return cached.tool;
  const tool = await getToolByResource(context, resource);
  if (toolsByResource.size >= 10_000) toolsByResource.clear();
  toolsByResource.set(resource, { tool, atMs: now });
  return tool;
}

/** Imported DPoP proof keys by `alg:jkt`, so a client that keeps its key is not imported per request. */
const proofKeys = new BoundedKeyCache(10_000);
export const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer";

export interface TokenRequest {
  params: FormParams;
  /** Every value of the `DPoP` header. */
  proofs: string[];
  requestId: string;
  /** The request's one-time identifiers, written with its outcome; set by the endpoint itself. */
  replay?: DeferredReplayCache;
}

export interface TokenResponse {
  access_token: string;
  token_type: "DPoP";
  expires_in: number;
  authorization_details?: AgentTaskGrant[];
}

/** The caller of a request, as far as it is known when the request is refused. */
export interface Attribution {
  clientId?: string;
  taskId?: string;
}

/**
 * Handles `POST /oauth/token`. Every issuance is durable in the audit log before the token is
 * returned. Every refusal is audited with its precise reason and rethrown for the wire.
 */
export async function handleTokenRequest(
  context: BrokerContext,
  request: TokenRequest,
): Promise<TokenResponse> {
  const attribution: Attribution = {};
  try {
    return await issue(context, request, attribution);
  } catch (error) {
    const refusal = isWritError(error)
      ? error
      : new WritError("server_error", "token request failed", { cause: error });
    await auditRefusal(context, request, attribution, refusal);
    throw refusal;
  }
}

async function issue(
  context: BrokerContext,
  request: TokenRequest,
  attribution: Attribution,
): Promise<TokenResponse> {
  const grantType = single(request.params, "grant_type");
  if (grantType === undefined) throw new WritError("invalid_request", 'parameter "grant_type" is missing');
  if (
    grantType !== clientCredentialsGrant &&
    grantType !== jwtBearerGrant &&
    grantType !== tokenExchangeGrant
  ) {
    throw new WritError("unsupported_grant_type", `grant type "${grantType}" is not supported`);
  }

  // One-time identifiers are written with the issuance, in one transaction, and spent only by it.
  const replay = new DeferredReplayCache(context.clock);
  request.replay = replay;
  // The proof is checked first, so a client answered with use_dpop_nonce has not spent its assertion.
  const proof = await verifyDpopProof(
    { proofs: request.proofs, method: "POST", url: `${context.issuer}/oauth/token` },
    {
      maxAgeSeconds: context.config.dpop_proof_max_age_seconds,
      maxFutureSeconds: context.config.dpop_proof_max_future_seconds,
      clockSkewSeconds: context.config.clock_skew_seconds,
      ...(context.config.dpop_nonce_required ? { nonces: context.nonces } : {}),
    },
    { clock: context.clock, replay, keys: proofKeys },
  );

  if (grantType === jwtBearerGrant) {
    const agent = await attestFederated(context, request.params, attribution);
    return issueAgentToken(context, request, attribution, agent, proof);
  }

  attribution.clientId = single(request.params, "client_id");
  const lookupAgent = memoisedAgentLookup(context);
  const { clientId } = await authenticateClient(
    {
      clientAssertion: single(request.params, "client_assertion"),
      clientAssertionType: single(request.params, "client_assertion_type"),
      clientId: single(request.params, "client_id"),
    },
    {
      issuer: context.issuer,
      maxLifetimeSeconds: context.config.client_assertion_max_lifetime_seconds,
      clockSkewSeconds: context.config.clock_skew_seconds,
    },
    {
      clock: context.clock,
      replay,
      findClient: (id) => findClientKey(context, id, lookupAgent),
      importKey: importClientKey,
    },
  );
  attribution.clientId = clientId;

  const client = await describeClient(context, clientId, lookupAgent);
  if (client?.kind === "agent") {
    const agent = await lookupAgent(clientId);
    if (agent === undefined || agent.status !== "active") {
      throw new WritError("invalid_client", "client authentication failed", { detail: "agent disabled" });
    }
    if (grantType === tokenExchangeGrant)
      return handleTokenExchange(context, request, attribution, agent, proof);
    return issueAgentToken(context, request, attribution, agent, proof);
  }
  if (grantType === tokenExchangeGrant) {
    throw new WritError("unauthorized_client", "only agents delegate by token exchange");
  }
  if (client?.kind === "human" || client?.kind === "gateway") {
    return issueApiToken(context, request, clientId, client.roles, proof);
  }
  throw new WritError("invalid_client", "client authentication failed", {
    detail: `no identity for ${clientId}`,
  });
}

/** Authenticates an agent by a platform JWT matched against the agent's federated bindings. */
async function attestFederated(
  context: BrokerContext,
  params: FormParams,
  attribution: Attribution,
): Promise<Agent> {
  const clientId = single(params, "client_id");
  const assertion = single(params, "assertion");
  if (clientId === undefined || assertion === undefined) {
    throw new WritError(
      "invalid_request",
      "the jwt-bearer grant needs client_id (the agent's SPIFFE ID) and assertion",
    );
  }
  attribution.clientId = clientId;
  const agent = await getAgentBySpiffeId(context, clientId);
  const bindings = agent === undefined ? [] : await listBindings(context, agent.name);
  if (agent === undefined || agent.status !== "active" || bindings.length === 0) {
    throw new WritError("invalid_grant", "the assertion does not match a federated binding", {
      detail: `agent ${clientId} is unknown, disabled or has no binding`,
    });
  }
  const reasons: string[] = [];
  for (const binding of bindings) {
    try {
      await verifyPlatformJwt(binding.spec, assertion, { clock: context.clock, jwks: context.jwks });
      return agent;
    } catch (error) {
      if (isWritError(error) && error.code === "temporarily_unavailable") throw error;
      reasons.push(
        `binding ${binding.id}: ${isWritError(error) ? (error.detail ?? error.description) : String(error)}`,
      );
    }
  }
  throw new WritError("invalid_grant", "the assertion does not match a federated binding", {
    detail: reasons.join("; "),
  });
}

async function issueAgentToken(
  context: BrokerContext,
  request: TokenRequest,
  attribution: Attribution,
  agent: Agent,
  proof: VerifiedProof,
): Promise<TokenResponse> {
  const details = parseAgentTaskRequest(single(request.params, "authorization_details"));
  attribution.taskId = details.task_id;
  const nowS = epochSeconds(context.clock);
  const task = await getTask(context, details.task_id);
  if (task === undefined || task.agent_name !== agent.name || !isTaskLive(task, nowS)) {
    throw new WritError(
      "invalid_authorization_details",
      "the task is unknown, not active or not this agent's",
      {
        detail: task === undefined ? "unknown task" : `task of ${task.agent_name}, status ${task.status}`,
      },
    );
  }

  return issueTaskToken(context, request, agent, proof, task, details.actions);
}

/**
 * Issues an agent's token for one tool of a live task it runs: the `resource` names the tool (or the
 * task's only tool), and `requestedActions`, when given, narrow the token to some of the task's
 * actions for that tool. The token is durable in the audit log before it is returned.
 */
export async function issueTaskToken(
  context: BrokerContext,
  request: TokenRequest,
  agent: Agent,
  proof: VerifiedProof,
  task: Task,
  requestedActions: string[] | undefined,
): Promise<TokenResponse> {
  const nowS = epochSeconds(context.clock);
  const resources = request.params.get("resource") ?? [];
  if (resources.length > 1) throw new WritError("invalid_target", "request a token for exactly one resource");
  let resource = resources[0];
  if (resource === undefined) {
    if (task.tools.length !== 1)
      throw new WritError("invalid_target", "the task has several tools: name one as resource");
    resource = (await getTool(context, task.tools[0] as string))?.resource_uri ?? "";
  }
  const tool = await toolByResource(context, resource);
  if (tool === undefined || !task.tools.includes(tool.name)) {
    throw new WritError("invalid_target", "the resource is not a tool of this task", {
      detail: `resource ${resource}`,
    });
  }

  const taskActions = task.actions
    .filter((entry) => entry.startsWith(`${tool.name}:`))
    .map((entry) => entry.slice(tool.name.length + 1));
  const actions = requestedActions ?? taskActions;
  const outside = actions.find((action) => !taskActions.includes(action));
  if (outside !== undefined) {
    throw new WritError(
      "invalid_authorization_details",
      `action "${outside}" is not among the task's actions for this tool`,
    );
  }

  const grant: AgentTaskGrant = {
    type: "agent_task",
    task_id: task.id,
    locations: [tool.resource_uri],
    actions,
    environment: task.environment,
  };
  const expiresAtS = Math.min(nowS + context.config.access_token_ttl_seconds, task.deadline_s);
  const { token, claims } = await mintAccessToken(
    {
      issuer: context.issuer,
      // A delegated task keeps its root agent as `sub`; this agent is the current actor in `act`.
      subject: task.subject ?? agent.spiffe_id,
      clientId: agent.spiffe_id,
      audience: tool.resource_uri,
      jkt: proof.jkt,
      expiresAtS,
      taskId: task.id,
      authorizationDetails: [grant],
      ...(task.subject === null ? {} : { actors: [agent.spiffe_id, ...task.actor_chain] }),
      ...(task.breakglass_id === null ? {} : { breakglassId: task.breakglass_id }),
    },
    context,
  );
  await recordIssuance(context, claims, request.requestId, request.replay);
  return {
    access_token: token,
    token_type: "DPoP",
    expires_in: expiresAtS - nowS,
    authorization_details: [grant],
  };
}

/** Issues a token for the API to a person or a gateway; its `roles` claim carries what they may do. */
async function issueApiToken(
  context: BrokerContext,
  request: TokenRequest,
  clientId: string,
  roles: string[],
  proof: VerifiedProof,
): Promise<TokenResponse> {
  const resources = request.params.get("resource") ?? [];
  const apiResource = adminApiResource(context);
  if (resources.length > 1 || (resources.length === 1 && resources[0] !== apiResource)) {
    throw new WritError("invalid_target", `an API token is only for the API at ${apiResource}`);
  }
  if (single(request.params, "authorization_details") !== undefined) {
    throw new WritError("invalid_authorization_details", "an API token takes no authorization_details");
  }
  const nowS = epochSeconds(context.clock);
  const expiresAtS = nowS + context.config.admin_token_ttl_seconds;
  const { token, claims } = await mintAccessToken(
    {
      issuer: context.issuer,
      subject: clientId,
      clientId,
      audience: apiResource,
      jkt: proof.jkt,
      expiresAtS,
      roles,
    },
    context,
  );
  await recordIssuance(context, claims, request.requestId, request.replay);
  return { access_token: token, token_type: "DPoP", expires_in: expiresAtS - nowS };
}

/** Stores the token's row and its `token.issued` event in one transaction; resolves once durable. */
/** Writes a request's one-time identifiers in `trx`; a concurrent replay fails the transaction. */
export async function spendOneTimeIdentifiers(
  trx: Transaction<Database>,
  replay: DeferredReplayCache | undefined,
): Promise<void> {
  await replay?.commitWithin(trx, (scope) =>
    scope.startsWith("dpop:")
      ? new WritError("invalid_dpop_proof", "DPoP proof was already used", {
          detail: "replayed concurrently",
        })
      : new WritError("invalid_client", "client assertion was already used", {
          detail: "replayed concurrently",
        }),
  );
}

export async function recordIssuance(
  context: BrokerContext,
  claims: AccessTokenClaims,
  requestId: string,
  replay?: DeferredReplayCache,
): Promise<void> {
  // A delegated token's holder is its outermost actor, not `sub`, the root of the chain.
  const chain = actorChain(claims);
  await context.audit.append(
    {
      kind: "token.issued",
      actor: currentActor(chain),
      task_id: claims.task_id ?? null,
      jti: claims.jti,
      data: {
        sub: chain.sub,
        actors: chain.actors,
        client_id: claims.client_id,
        aud: claims.aud,
        jkt: claims.cnf.jkt,
        exp: claims.exp,
        actions: claims.authorization_details?.[0]?.actions ?? null,
        request_id: requestId,
      },
    },
    async (trx) => {
      await spendOneTimeIdentifiers(trx, replay);
      await trx
        .insertInto("tokens")
        .values({
          jti: claims.jti,
          task_id: claims.task_id ?? null,
          subject: claims.sub,
          client_id: claims.client_id,
          audience: claims.aud,
          jkt: claims.cnf.jkt,
          issued_at_s: claims.iat,
          expires_at_s: claims.exp,
          revoked_at: null,
        })
        .execute();
    },
  );
}

async function auditRefusal(
  context: BrokerContext,
  request: TokenRequest,
  attribution: Attribution,
  refusal: WritError,
): Promise<void> {
  const fields = {
    [logFields.requestId]: request.requestId,
    [logFields.clientId]: attribution.clientId,
    [logFields.taskId]: attribution.taskId,
    [logFields.errorCode]: refusal.code,
    [logFields.detail]: refusal.detail,
  };
  if (refusal.status >= 500)
    context.log.error({ ...fields, err: refusal.cause ?? refusal }, "token request failed");
  else context.log.info(fields, "token request refused");
  try {
    await context.audit.append({
      kind: "token.refused",
      // An unauthenticated caller has no identity yet; the claimed client id is kept apart in data.
      actor:
        refusal.code === "invalid_client" || attribution.clientId === undefined
          ? "anonymous"
          : attribution.clientId,
      task_id: attribution.taskId ?? null,
      data: {
        error: refusal.code,
        description: refusal.description,
        detail: refusal.detail ?? null,
        claimed_client_id: attribution.clientId ?? null,
        request_id: request.requestId,
      },
    });
  } catch (error) {
    context.log.error({ ...fields, err: error }, "audit of a token refusal failed");
  }
}
