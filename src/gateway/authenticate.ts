import { decodeProtectedHeader, jwtVerify, type CryptoKey } from "jose";
import type { Clock } from "../clock.js";
import { epochSeconds } from "../clock.js";
import type { DpopPolicy } from "../dpop/verify-proof.js";
import { verifyDpopProof } from "../dpop/verify-proof.js";
import type { ReplayCache } from "../dpop/replay-cache.js";
import { WritError } from "../errors/writ-error.js";
import { accessTokenType, type AccessTokenClaims } from "../tokens/access-token.js";
import type { GatewayBackend } from "./backend.js";
import { actorChain } from "./decision.js";
import type { RevocationState } from "./revocation-state.js";

/** The largest number of verified tokens kept; past it the cache starts over. */
const maxCachedTokens = 50_000;
const maxCachedKeys = 50_000;

/** A request's credentials as received: every `Authorization` and `DPoP` header value. */
export interface PresentedCredentials {
  authorizations: string[];
  proofs: string[];
  method: string;
  /** The URL the proof must name, built from the gateway's public URL and the request target. */
  url: string;
}

/**
 * Authenticates tool requests: the access token offline against the broker's keys (cached until it
 * expires), then the DPoP proof that binds it to this request. The token's `cnf` triggers the binding
 * check, whatever scheme the client used, so a bound token sent as `Bearer` is rejected.
 */
export class RequestAuthenticator {
  private readonly tokens = new Map<string, AccessTokenClaims>();
  private readonly proofKeys = new Map<string, CryptoKey | Uint8Array>();

  constructor(
    private readonly backend: GatewayBackend,
    private readonly dpop: DpopPolicy,
    private readonly clock: Clock,
    private readonly replay: ReplayCache,
  ) {}

  /** Verifies the token for `audience` and its proof; returns the token's claims. */
  async authenticate(credentials: PresentedCredentials, audience: string): Promise<AccessTokenClaims> {
    const { claims, proofVerified } = await this.begin(credentials, audience);
    await proofVerified;
    return claims;
  }

  /**
   * Verifies the token for `audience` and starts verifying its proof on the thread pool, so the caller
   * can prepare its decision meanwhile. The caller must await `proofVerified` before it acts on the
   * claims, records them or reports any other error, because a bad proof outranks every other error.
   */
  async begin(
    credentials: PresentedCredentials,
    audience: string,
  ): Promise<{ claims: AccessTokenClaims; proofVerified: Promise<void> }> {
    if (credentials.authorizations.length !== 1) {
      throw new WritError("invalid_token", "exactly one Authorization header is required", {
        detail: `${credentials.authorizations.length} Authorization headers`,
      });
    }
    const [scheme, token, ...rest] = (credentials.authorizations[0] as string).split(" ");
    if (token === undefined || token === "" || rest.length > 0) {
      throw new WritError("invalid_token", "malformed Authorization header", {
        detail: "no token after the scheme",
      });
    }
    const claims = await this.verifyToken(token, audience);

    // Every writ token is sender-constrained: `cnf` demands the DPoP scheme and a proof.
    if (scheme?.toLowerCase() !== "dpop") {
      throw new WritError("invalid_token", "a DPoP-bound token must be sent with the DPoP scheme", {
        detail: `scheme ${String(scheme)}`,
      });
    }
    const proofVerified = verifyDpopProof(
      {
        proofs: credentials.proofs,
        method: credentials.method,
        url: credentials.url,
        accessToken: token,
        expectedJkt: claims.cnf.jkt,
      },
      this.dpop,
      { clock: this.clock, replay: this.replay, keys: this.proofKeys },
    ).then(() => {
      if (this.proofKeys.size > maxCachedKeys) this.proofKeys.clear();
    });
    // The caller awaits the promise later. This handler keeps a rejection that settles before then from
    // being reported as unhandled.
    proofVerified.catch(() => undefined);
    return { claims, proofVerified };
  }

  private async verifyToken(token: string, audience: string): Promise<AccessTokenClaims> {
    const cached = this.tokens.get(token);
    const nowS = epochSeconds(this.clock);
    if (cached !== undefined) {
      if (cached.aud !== audience)
        throw new WritError("invalid_token", "access token is not valid", { detail: "audience" });
      if (cached.exp + this.dpop.clockSkewSeconds > nowS) return cached;
      this.tokens.delete(token);
      throw new WritError("invalid_token", "access token is not valid", { detail: "expired" });
    }

    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch (error) {
      throw new WritError("invalid_token", "malformed access token", {
        detail: "header cannot be decoded",
        cause: error,
      });
    }
    const key = typeof kid === "string" ? await this.backend.verificationKey(kid) : undefined;
    if (key === undefined) {
      throw new WritError("invalid_token", "access token is not valid", {
        detail: `unknown kid ${String(kid)}`,
      });
    }
    let claims: AccessTokenClaims;
    try {
      const { payload } = await jwtVerify(token, key.key, {
        algorithms: [key.alg],
        typ: accessTokenType,
        issuer: this.backend.issuer,
        audience,
        requiredClaims: ["exp", "iat", "jti", "sub", "client_id", "cnf"],
        currentDate: new Date(this.clock.nowMs()),
        clockTolerance: this.dpop.clockSkewSeconds,
      });
      claims = payload as AccessTokenClaims;
    } catch (error) {
      throw new WritError("invalid_token", "access token is not valid", {
        detail: (error as Error).message,
        cause: error,
      });
    }
    if (typeof claims.cnf?.jkt !== "string" || typeof claims.aud !== "string") {
      throw new WritError("invalid_token", "access token is not valid", {
        detail: "cnf.jkt or aud malformed",
      });
    }
    if (this.tokens.size >= maxCachedTokens) this.tokens.clear();
    this.tokens.set(token, claims);
    return claims;
  }
}

/** Throws `invalid_token` when the token, its task or an identity of its actor chain is revoked. */
export function rejectIfRevoked(revocations: RevocationState, claims: AccessTokenClaims): void {
  const chain = actorChain(claims);
  const revoked = revocations.revocationOf({
    jti: claims.jti,
    task_id: claims.task_id,
    identities: [chain.sub, ...chain.actors],
    iat: claims.iat,
  });
  if (revoked !== undefined)
    throw new WritError("invalid_token", "access token is not valid", { detail: revoked });
}
