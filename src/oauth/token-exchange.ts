import { randomUUID } from "node:crypto";
import { decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload } from "jose";
import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import type { VerifiedProof } from "../dpop/verify-proof.js";
import { WritError, isWritError } from "../errors/writ-error.js";
import { getAgentBySpiffeId, type Agent } from "../identity/agents.js";
import { getTask, isTaskLive, toRow, type Task } from "../tasks/tasks.js";
import { getTool } from "../tools/registry.js";
import { verifyAccessToken, type AccessTokenClaims } from "../tokens/access-token.js";
import { isTokenLive } from "./introspection.js";
import { single } from "./params.js";
import {
  issueTaskToken,
  spendOneTimeIdentifiers,
  type Attribution,
  type TokenRequest,
  type TokenResponse,
} from "./token-endpoint.js";

export const tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";
export const accessTokenTypeUri = "urn:ietf:params:oauth:token-type:access_token";
/** The token type of a delegation ticket, a URN in writ's own namespace. */
export const delegationTicketType = "urn:writ:params:oauth:token-type:delegation-ticket";
/** The JOSE `typ` of a delegation ticket, so that it never passes as an access token, nor one as it. */
export const delegationTicketJwtType = "writ-delegation+jwt";
/** Maximum life of a delegation ticket, in seconds: it only carries a hand-over. */
export const delegationTicketTtlSeconds = 60;

/** The claims of a delegation ticket. */
interface TicketClaims extends JWTPayload {
  sub: string;
  jti: string;
  exp: number;
  task_id: string;
  may_act: { sub: string };
}

/**
 * Handles the token-exchange grant (RFC 8693) for delegation, in two steps. With an access token as
 * subject, the parent agent exchanges its own token for a single-use delegation ticket naming the
 * sub-agent (`may_act`) and a new child task whose actions and deadline are within the parent's.
 * With a ticket as subject, the named sub-agent redeems it for its own token, bound to its own key.
 */
export async function handleTokenExchange(
  context: BrokerContext,
  request: TokenRequest,
  attribution: Attribution,
  agent: Agent,
  proof: VerifiedProof,
): Promise<TokenResponse> {
  if (single(request.params, "scope") !== undefined) {
    throw new WritError("invalid_scope", "scope is not used: name actions in authorization_details");
  }
  const subjectTokenType = single(request.params, "subject_token_type");
  const subjectToken = single(request.params, "subject_token");
  if (subjectToken === undefined || subjectToken === "")
    throw new WritError("invalid_request", 'parameter "subject_token" is missing');
  if (subjectTokenType === accessTokenTypeUri)
    return issueTicket(context, request, attribution, agent, proof, subjectToken);
  if (subjectTokenType === delegationTicketType)
    return redeemTicket(context, request, attribution, agent, proof, subjectToken);
  throw new WritError(
    "invalid_request",
    `subject_token_type must be ${accessTokenTypeUri} or ${delegationTicketType}`,
  );
}

async function issueTicket(
  context: BrokerContext,
  request: TokenRequest,
  attribution: Attribution,
  agent: Agent,
  proof: VerifiedProof,
  subjectToken: string,
): Promise<TokenResponse> {
  if (single(request.params, "requested_token_type") !== delegationTicketType) {
    throw new WritError("invalid_request", `requested_token_type must be ${delegationTicketType}`);
  }
  let claims: AccessTokenClaims;
  try {
    claims = await verifyAccessToken(
      subjectToken,
      { issuer: context.issuer, clockSkewSeconds: context.config.clock_skew_seconds },
      context,
    );
  } catch (error) {
    throw new WritError("invalid_grant", "the subject token is not a valid access token", {
      detail: isWritError(error) ? error.detail : String(error),
    });
  }
  // No party presents another party's credential: the token must be the caller's own, and the proof
  // must come from the key it is bound to.
  if (claims.client_id !== agent.spiffe_id) {
    throw new WritError("invalid_grant", "the subject token was not issued to this client", {
      detail: `client_id ${claims.client_id}`,
    });
  }
  if (proof.jkt !== claims.cnf.jkt) {
    throw new WritError("invalid_grant", "the DPoP proof is not signed by the subject token's key", {
      detail: "jkt mismatch",
    });
  }
  if (!(await isTokenLive(context, claims)) || claims.task_id === undefined) {
    throw new WritError("invalid_grant", "the subject token is revoked, expired or not for a task");
  }
  const parent = await getTask(context, claims.task_id);
  const nowS = epochSeconds(context.clock);
  if (parent === undefined || parent.agent_name !== agent.name || !isTaskLive(parent, nowS)) {
    throw new WritError("invalid_grant", "the parent task is not active");
  }
  attribution.taskId = parent.id;

  const audience = single(request.params, "audience");
  const child = audience === undefined ? undefined : await getAgentBySpiffeId(context, audience);
  if (child === undefined || child.status !== "active" || child.name === agent.name) {
    throw new WritError("invalid_target", "audience must name another active agent by its SPIFFE ID", {
      detail: `audience ${String(audience)}`,
    });
  }
  if (child.environment !== parent.environment) {
    throw new WritError("invalid_target", "the sub-agent is in another environment than the task");
  }
  if (parent.depth + 1 > context.config.max_delegation_depth) {
    throw new WritError(
      "invalid_grant",
      `delegation deeper than ${context.config.max_delegation_depth} is not allowed`,
    );
  }
  const narrowed = parseDelegation(single(request.params, "authorization_details"), parent, nowS);
  for (const resource of request.params.get("resource") ?? []) {
    // The resource must be exactly the resource URI of a tool the delegated actions name.
    const delegatedTools = parent.tools.filter((name) =>
      narrowed.actions.some((action) => action.startsWith(`${name}:`)),
    );
    const uris = await Promise.all(
      delegatedTools.map(async (name) => (await getTool(context, name))?.resource_uri),
    );
    const tool = delegatedTools.find((_name, index) => uris[index] === resource);
    if (tool === undefined)
      throw new WritError("invalid_target", "a resource is outside the delegated actions", {
        detail: resource,
      });
  }

  const childTask: Task = {
    id: randomUUID(),
    agent_name: child.name,
    initiator: `task:${parent.id}`,
    intent: narrowed.intent ?? parent.intent,
    tools: [...new Set(narrowed.actions.map((action) => action.slice(0, action.indexOf(":"))))],
    actions: narrowed.actions,
    environment: parent.environment,
    deadline_s: Math.min(
      parent.deadline_s,
      narrowed.ttlSeconds === undefined ? parent.deadline_s : nowS + narrowed.ttlSeconds,
    ),
    status: "active",
    parent_task_id: parent.id,
    created_at: context.clock.nowMs(),
    ended_at: null,
    end_reason: null,
    subject: parent.subject ?? agent.spiffe_id,
    actor_chain: [agent.spiffe_id, ...parent.actor_chain],
    depth: parent.depth + 1,
    breakglass_id: parent.breakglass_id,
  };
  const key = context.keys.current();
  const jti = randomUUID();
  const expiresAtS = Math.min(nowS + delegationTicketTtlSeconds, childTask.deadline_s);
  const ticket = await new SignJWT({ task_id: childTask.id, may_act: { sub: child.spiffe_id } })
    .setProtectedHeader({ alg: key.alg, typ: delegationTicketJwtType, kid: key.kid })
    .setIssuer(context.issuer)
    .setAudience(context.issuer)
    .setSubject(childTask.subject ?? agent.spiffe_id)
    .setJti(jti)
    .setIssuedAt(nowS)
    .setExpirationTime(expiresAtS)
    .sign(key.privateKey);

  await context.audit.append(
    {
      kind: "task.delegated",
      actor: agent.spiffe_id,
      task_id: childTask.id,
      jti,
      data: {
        parent_task_id: parent.id,
        sub: childTask.subject,
        delegate: child.spiffe_id,
        actors: childTask.actor_chain,
        depth: childTask.depth,
        actions: childTask.actions,
        deadline_s: childTask.deadline_s,
        ticket_exp: expiresAtS,
        parent_jti: claims.jti,
        request_id: request.requestId,
      },
    },
    async (trx) => {
      await spendOneTimeIdentifiers(trx, request.replay);
      await trx.insertInto("tasks").values(toRow(childTask)).execute();
    },
  );
  return {
    access_token: ticket,
    issued_token_type: delegationTicketType,
    token_type: "N_A",
    expires_in: expiresAtS - nowS,
  } as unknown as TokenResponse;
}

async function redeemTicket(
  context: BrokerContext,
  request: TokenRequest,
  attribution: Attribution,
  agent: Agent,
  proof: VerifiedProof,
  ticket: string,
): Promise<TokenResponse> {
  let claims: TicketClaims;
  try {
    const kid = decodeProtectedHeader(ticket).kid;
    const key = typeof kid === "string" ? context.keys.find(kid) : undefined;
    if (key === undefined) throw new Error(`unknown kid ${String(kid)}`);
    const { payload } = await jwtVerify(ticket, key.publicKey, {
      algorithms: [key.alg],
      typ: delegationTicketJwtType,
      issuer: context.issuer,
      audience: context.issuer,
      requiredClaims: ["exp", "jti", "sub", "task_id", "may_act"],
      currentDate: new Date(context.clock.nowMs()),
      clockTolerance: context.config.clock_skew_seconds,
    });
    claims = payload as TicketClaims;
  } catch (error) {
    throw new WritError("invalid_grant", "the delegation ticket is not valid", {
      detail: (error as Error).message,
    });
  }
  attribution.taskId = claims.task_id;
  if (claims.may_act?.sub !== agent.spiffe_id) {
    throw new WritError("invalid_grant", "the delegation ticket names another agent", {
      detail: `may_act ${String(claims.may_act?.sub)}`,
    });
  }
  if (
    !(await context.replay.remember(
      "delegation_ticket",
      claims.jti,
      claims.exp + context.config.clock_skew_seconds,
    ))
  ) {
    throw new WritError("invalid_grant", "the delegation ticket was already used", {
      detail: `jti ${claims.jti}`,
    });
  }
  const task = await getTask(context, claims.task_id);
  if (
    task === undefined ||
    task.agent_name !== agent.name ||
    !isTaskLive(task, epochSeconds(context.clock))
  ) {
    throw new WritError("invalid_grant", "the delegated task is not active");
  }
  return issueTaskToken(context, request, agent, proof, task, undefined);
}

interface Delegation {
  actions: string[];
  intent?: string;
  ttlSeconds?: number;
}

/** Parses the narrowed task of a delegation; anything wider than the parent is refused whole. */
function parseDelegation(value: string | undefined, parent: Task, nowS: number): Delegation {
  if (value === undefined)
    throw new WritError(
      "invalid_authorization_details",
      "authorization_details naming the delegated actions is required",
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new WritError("invalid_authorization_details", "authorization_details is not valid JSON");
  }
  const entry = (Array.isArray(parsed) && parsed.length === 1 ? parsed[0] : undefined) as
    Record<string, unknown> | undefined;
  if (typeof entry !== "object" || entry === null || entry.type !== "agent_task") {
    throw new WritError(
      "invalid_authorization_details",
      "authorization_details must hold exactly one agent_task object",
    );
  }
  const actions = entry.actions;
  if (
    !Array.isArray(actions) ||
    actions.length === 0 ||
    !actions.every((action) => typeof action === "string")
  ) {
    throw new WritError("invalid_authorization_details", "agent_task actions must list TOOL:ACTION strings");
  }
  const wider = actions.find((action) => !parent.actions.includes(action as string));
  if (wider !== undefined) {
    throw new WritError(
      "invalid_authorization_details",
      `action "${String(wider)}" is not among the parent task's actions`,
    );
  }
  if (entry.task_id !== undefined && entry.task_id !== parent.id) {
    throw new WritError("invalid_authorization_details", "task_id must be the parent task's");
  }
  const delegation: Delegation = { actions: [...new Set(actions as string[])] };
  if (entry.intent !== undefined) {
    if (typeof entry.intent !== "string" || entry.intent.trim() === "" || entry.intent.length > 2000) {
      throw new WritError("invalid_authorization_details", "intent must be 1 to 2000 characters");
    }
    delegation.intent = entry.intent;
  }
  if (entry.ttl_seconds !== undefined) {
    if (
      typeof entry.ttl_seconds !== "number" ||
      !Number.isInteger(entry.ttl_seconds) ||
      entry.ttl_seconds < 1
    ) {
      throw new WritError("invalid_authorization_details", "ttl_seconds must be a positive whole number");
    }
    if (entry.ttl_seconds > parent.deadline_s - nowS) {
      // A longer life than the parent's is a widening, refused rather than silently cut.
      throw new WritError(
        "invalid_authorization_details",
        "ttl_seconds reaches past the parent task's deadline",
      );
    }
    delegation.ttlSeconds = entry.ttl_seconds;
  }
  return delegation;
}
