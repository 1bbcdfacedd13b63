import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import { WritError, isWritError } from "../errors/writ-error.js";
import { getAgentBySpiffeId } from "../identity/agents.js";
import { getTask, isTaskLive } from "../tasks/tasks.js";
import { verifyAccessToken, type AccessTokenClaims } from "../tokens/access-token.js";
import { authenticateCaller, mayReadTokenState } from "./caller.js";
import { required, single, type FormParams } from "./params.js";
import { getGatewayBySpiffeId } from "../identity/gateways.js";
import { parseSpiffeId } from "../identity/spiffe.js";

/** An introspection response (RFC 7662 section 2.2). */
export type IntrospectionResponse =
  | { active: false }
  | {
      active: true;
      token_type: "DPoP";
      cnf: { jkt: string };
      sub: string;
      client_id: string;
      aud: string;
      iss: string;
      exp: number;
      iat: number;
      jti: string;
      task_id?: string;
      authorization_details?: AccessTokenClaims["authorization_details"];
    };

/**
 * Handles `POST /oauth/introspect`. The caller authenticates as itself and must be allowed to read
 * token state. A token is active only when its signature verifies, it has not expired or been
 * revoked, its task is active and before its deadline, and its agent is enabled. DPoP proofs are not
 * checked here: introspection reports on a token, it does not use one.
 */
export async function handleIntrospection(
  context: BrokerContext,
  params: FormParams,
): Promise<IntrospectionResponse> {
  const caller = await authenticateCaller(context, params);
  if (!mayReadTokenState(caller)) {
    throw new WritError("access_denied", "the caller may not introspect tokens", { detail: caller.clientId });
  }
  const token = required(params, "token");
  // writ issues access tokens only, and RFC 7662 section 2.1 requires searching past a wrong hint, so
  // the hint is read only to reject a repeated parameter.
  single(params, "token_type_hint");

  let claims: AccessTokenClaims;
  try {
    claims = await verifyAccessToken(
      token,
      { issuer: context.issuer, clockSkewSeconds: context.config.clock_skew_seconds },
      context,
    );
  } catch (error) {
    if (isWritError(error) && error.code === "invalid_token") return { active: false };
    throw error;
  }
  if (!(await isTokenLive(context, claims))) return { active: false };

  return {
    active: true,
    token_type: "DPoP",
    cnf: { jkt: claims.cnf.jkt },
    sub: claims.sub,
    client_id: claims.client_id,
    aud: claims.aud,
    iss: claims.iss,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    ...(claims.task_id === undefined ? {} : { task_id: claims.task_id }),
    ...(claims.authorization_details === undefined
      ? {}
      : { authorization_details: claims.authorization_details }),
  };
}

/** Returns whether a verified token is still usable according to the store. */
export async function isTokenLive(context: BrokerContext, claims: AccessTokenClaims): Promise<boolean> {
  const row = await context.store.db
    .selectFrom("tokens")
    .select(["revoked_at"])
    .where("jti", "=", claims.jti)
    .executeTakeFirst();
  if (row === undefined || row.revoked_at !== null) return false;
  const nowS = epochSeconds(context.clock);
  if (claims.task_id !== undefined) {
    const task = await getTask(context, claims.task_id);
    if (task === undefined || !isTaskLive(task, nowS)) return false;
  }
  const agent = await getAgentBySpiffeId(context, claims.sub);
  if (agent !== undefined && agent.status !== "active") return false;
  if (parseSpiffeId(claims.sub)?.path[0] === "gateway") {
    const gateway = await getGatewayBySpiffeId(context, claims.sub);
    if (gateway?.status !== "active") return false;
  }
  return true;
}
