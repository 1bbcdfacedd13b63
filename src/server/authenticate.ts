import type { FastifyRequest } from "fastify";
import type { BrokerContext } from "../broker/context.js";
import { adminApiResource } from "../broker/context.js";
import { verifyDpopProof } from "../dpop/verify-proof.js";
import { WritError } from "../errors/writ-error.js";
import { isTokenLive } from "../oauth/introspection.js";
import { verifyAccessToken, type AccessTokenClaims } from "../tokens/access-token.js";
import { headerValues } from "./headers.js";

/** The person behind an authenticated API request. */
export interface ApiCaller {
  /** The caller's SPIFFE ID, the actor of every audit event the request causes. */
  id: string;
  roles: string[];
  claims: AccessTokenClaims;
}

/**
 * Authenticates a request that carries a DPoP-bound token of this broker: exactly one
 * `Authorization: DPoP` header, a proof by the token's key for this method and URL, and a token that
 * is still live (not revoked, its task active, its subject enabled). Returns the token's claims;
 * every failure is `invalid_token` or `invalid_dpop_proof`. The caller checks the audience.
 */
export async function authenticateDpopRequest(
  context: BrokerContext,
  request: FastifyRequest,
): Promise<AccessTokenClaims> {
  const authorizations = headerValues(request, "authorization");
  if (authorizations.length !== 1) {
    throw new WritError("invalid_token", "exactly one Authorization header is required", {
      detail: `${authorizations.length} Authorization headers`,
    });
  }
  const [scheme, token, ...rest] = (authorizations[0] as string).split(" ");
  if (scheme?.toLowerCase() !== "dpop" || token === undefined || token === "" || rest.length > 0) {
    throw new WritError("invalid_token", "use the DPoP authorization scheme", {
      detail: `scheme ${String(scheme)}`,
    });
  }

  const claims = await verifyAccessToken(
    token,
    {
      issuer: context.issuer,
      clockSkewSeconds: context.config.clock_skew_seconds,
    },
    context,
  );
  const path = request.url.split("?")[0] ?? "/";
  const proof = await verifyDpopProof(
    {
      proofs: headerValues(request, "dpop"),
      method: request.method,
      url: `${context.issuer}${path}`,
      accessToken: token,
    },
    {
      maxAgeSeconds: context.config.dpop_proof_max_age_seconds,
      maxFutureSeconds: context.config.dpop_proof_max_future_seconds,
      clockSkewSeconds: context.config.clock_skew_seconds,
    },
    { clock: context.clock, replay: context.replay },
  );
  if (proof.jkt !== claims.cnf.jkt) {
    throw new WritError("invalid_dpop_proof", "the DPoP proof is not signed by the token's key", {
      detail: "jkt mismatch",
    });
  }
  if (!(await isTokenLive(context, claims))) {
    throw new WritError("invalid_token", "access token is not valid", {
      detail: `token ${claims.jti} revoked`,
    });
  }
  return claims;
}

/**
 * Authenticates an admin API request: a live DPoP-bound token whose audience is the API. Every
 * failure is answered with 401 and a DPoP challenge, or 403 for a token meant for something else.
 */
export async function authenticateApiRequest(
  context: BrokerContext,
  request: FastifyRequest,
): Promise<ApiCaller> {
  const claims = await authenticateDpopRequest(context, request);
  // A valid token for a tool, such as an agent's, authenticates its holder but is not for the API.
  if (claims.aud !== adminApiResource(context)) {
    throw new WritError("access_denied", "this token is not for the API", {
      detail: `aud ${String(claims.aud)}`,
    });
  }
  return { id: claims.sub, roles: Array.isArray(claims.roles) ? claims.roles : [], claims };
}

/** Throws `access_denied` unless the caller has one of `roles`. */
export function requireRole(caller: ApiCaller, ...roles: string[]): void {
  if (!roles.some((role) => caller.roles.includes(role))) {
    throw new WritError("access_denied", `this needs the ${roles.join(" or ")} role`, { detail: caller.id });
  }
}
