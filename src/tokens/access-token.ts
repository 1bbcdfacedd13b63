import { randomUUID } from "node:crypto";
import { decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload } from "jose";
import { epochSeconds, type Clock } from "../clock.js";
import { WritError } from "../errors/writ-error.js";
import type { AgentTaskGrant } from "./authorization-details.js";
import type { SigningKeyRing } from "./signing-keys.js";

/** The JOSE header `typ` of access tokens (RFC 9068 section 2.1). */
export const accessTokenType = "at+jwt";

/** The claims of a writ access token (RFC 9068), sender-constrained by DPoP. */
export interface AccessTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  aud: string;
  client_id: string;
  jti: string;
  iat: number;
  exp: number;
  cnf: { jkt: string };
  task_id?: string;
  authorization_details?: AgentTaskGrant[];
  roles?: string[];
  /** The current actor and, nested inside, the earlier ones (RFC 8693 section 4.1). */
  act?: ActorClaim;
  breakglass_id?: string;
  /** Set on a person's token for joining an agent's task. */
  task_join?: boolean;
}

/** An `act` claim: the actor's SPIFFE ID, with the actor before it nested inside. */
export interface ActorClaim {
  sub: string;
  act?: ActorClaim;
}

/** Builds nested `act` claims from actors listed current first. */
export function actClaim(actors: readonly string[]): ActorClaim | undefined {
  let claim: ActorClaim | undefined;
  for (const actor of [...actors].reverse())
    claim = claim === undefined ? { sub: actor } : { sub: actor, act: claim };
  return claim;
}

export interface MintRequest {
  issuer: string;
  subject: string;
  clientId: string;
  audience: string;
  jkt: string;
  /** Epoch seconds; the caller has already capped it at the task's deadline. */
  expiresAtS: number;
  taskId?: string;
  authorizationDetails?: AgentTaskGrant[];
  roles?: string[];
  /** Actors, current first, for the nested `act` claim. */
  actors?: string[];
  breakglassId?: string;
  taskJoin?: boolean;
}

/** Mints a signed access token; returns the compact JWT and its claims. */
export async function mintAccessToken(
  request: MintRequest,
  dependencies: { keys: SigningKeyRing; clock: Clock },
): Promise<{ token: string; claims: AccessTokenClaims }> {
  const key = dependencies.keys.current();
  const claims: AccessTokenClaims = {
    iss: request.issuer,
    sub: request.subject,
    aud: request.audience,
    client_id: request.clientId,
    jti: randomUUID(),
    iat: epochSeconds(dependencies.clock),
    exp: request.expiresAtS,
    cnf: { jkt: request.jkt },
  };
  if (request.taskId !== undefined) claims.task_id = request.taskId;
  if (request.authorizationDetails !== undefined) claims.authorization_details = request.authorizationDetails;
  if (request.roles !== undefined) claims.roles = request.roles;
  const act = request.actors === undefined ? undefined : actClaim(request.actors);
  if (act !== undefined) claims.act = act;
  if (request.breakglassId !== undefined) claims.breakglass_id = request.breakglassId;
  if (request.taskJoin === true) claims.task_join = true;
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, typ: accessTokenType, kid: key.kid })
    .sign(key.privateKey);
  return { token, claims };
}

/**
 * Verifies a writ access token's signature and standard claims: a key of the ring, with the algorithm
 * pinned to that key, `typ` `at+jwt`, the issuer, the audience when given, and `exp`. Throws
 * `invalid_token` with the precise reason in `detail`.
 */
export async function verifyAccessToken(
  token: string,
  options: { issuer: string; audience?: string; clockSkewSeconds: number },
  dependencies: { keys: SigningKeyRing; clock: Clock },
): Promise<AccessTokenClaims> {
  let kid: unknown;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch (error) {
    throw new WritError("invalid_token", "malformed access token", {
      detail: "header cannot be decoded",
      cause: error,
    });
  }
  const key = typeof kid === "string" ? dependencies.keys.find(kid) : undefined;
  if (key === undefined)
    throw new WritError("invalid_token", "access token is not valid", {
      detail: `unknown kid ${String(kid)}`,
    });
  try {
    const { payload } = await jwtVerify(token, key.publicKey, {
      algorithms: [key.alg],
      typ: accessTokenType,
      issuer: options.issuer,
      ...(options.audience === undefined ? {} : { audience: options.audience }),
      requiredClaims: ["exp", "iat", "jti", "sub", "client_id", "cnf"],
      currentDate: new Date(dependencies.clock.nowMs()),
      clockTolerance: options.clockSkewSeconds,
    });
    const claims = payload as AccessTokenClaims;
    if (typeof claims.cnf?.jkt !== "string") throw new Error("cnf.jkt missing");
    return claims;
  } catch (error) {
    throw new WritError("invalid_token", "access token is not valid", {
      detail: (error as Error).message,
      cause: error,
    });
  }
}
