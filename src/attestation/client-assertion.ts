import { decodeJwt, importJWK, jwtVerify, type CryptoKey, type JWK, type JWTPayload } from "jose";
import { epochSeconds, type Clock } from "../clock.js";
import { WritError } from "../errors/writ-error.js";
import type { ReplayCache } from "../dpop/replay-cache.js";
import { acceptedClientAlgorithms } from "../identity/keys.js";

/** The only client assertion type accepted (RFC 7523 section 2.2). */
export const jwtBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/** What a client authenticates with: its registered public key, when the client may authenticate. */
export interface ClientKey {
  clientId: string;
  publicJwk: JWK;
  /** False for a disabled identity, which fails authentication exactly as an unknown one does. */
  enabled: boolean;
}

export interface AssertionPolicy {
  /** The issuer identifier, which must be the assertion's single `aud`. */
  issuer: string;
  maxLifetimeSeconds: number;
  clockSkewSeconds: number;
}

/**
 * Authenticates a client by its private_key_jwt assertion (RFC 7523): `iss` and `sub` equal its
 * client_id, `aud` is the issuer as one string, `exp - iat` stays within the policy, and `jti` has
 * not been used before. Every failure is `invalid_client` with the precise reason in `detail` only,
 * so an unknown client and a bad signature look the same to the caller.
 */
export async function authenticateClient(
  params: { clientAssertion: unknown; clientAssertionType: unknown; clientId: unknown },
  policy: AssertionPolicy,
  dependencies: {
    clock: Clock;
    replay: ReplayCache;
    findClient: (clientId: string) => Promise<ClientKey | undefined>;
    /** Imports a registered key; a caching importer spares one import per request. */
    importKey?: (jwk: JWK) => Promise<CryptoKey | Uint8Array>;
  },
): Promise<{ clientId: string; payload: JWTPayload }> {
  if (params.clientAssertionType !== jwtBearerAssertionType || typeof params.clientAssertion !== "string") {
    throw clientError(
      "client authentication requires private_key_jwt",
      "missing or wrong client_assertion_type",
    );
  }
  let unverified: JWTPayload;
  try {
    unverified = decodeJwt(params.clientAssertion);
  } catch (error) {
    throw clientError("malformed client assertion", "assertion cannot be decoded", error);
  }
  const clientId = unverified.sub;
  if (typeof clientId !== "string" || unverified.iss !== clientId) {
    throw clientError("client assertion iss and sub must both be the client_id", "iss and sub differ");
  }
  if (params.clientId !== undefined && params.clientId !== clientId) {
    throw clientError(
      "client_id does not match the client assertion",
      `client_id ${String(params.clientId)}`,
    );
  }

  const client = await dependencies.findClient(clientId);
  if (client === undefined || !client.enabled) {
    throw clientError("client authentication failed", `client ${clientId} is unknown or disabled`);
  }

  let payload: JWTPayload;
  try {
    const key = await (dependencies.importKey ?? importPublicKey)(client.publicJwk);
    ({ payload } = await jwtVerify(params.clientAssertion, key, {
      algorithms: [...acceptedClientAlgorithms],
      issuer: clientId,
      subject: clientId,
      audience: policy.issuer,
      requiredClaims: ["exp", "iat", "jti"],
      currentDate: new Date(dependencies.clock.nowMs()),
      clockTolerance: policy.clockSkewSeconds,
    }));
  } catch (error) {
    throw clientError(
      "client authentication failed",
      `assertion of ${clientId}: ${(error as Error).message}`,
      error,
    );
  }

  if (typeof payload.aud !== "string") {
    throw clientError("client assertion aud must be the issuer as a single string", "aud is an array");
  }
  const exp = payload.exp as number;
  const iat = payload.iat as number;
  if (exp - iat > policy.maxLifetimeSeconds) {
    throw clientError("client assertion lifetime is too long", `exp - iat = ${exp - iat} s`);
  }
  if (iat > epochSeconds(dependencies.clock) + policy.clockSkewSeconds) {
    throw clientError("client assertion iat is in the future", `iat ${iat}`);
  }
  const jti = payload.jti as string;
  if (jti.length === 0 || jti.length > 256)
    throw clientError("client assertion jti is invalid", "jti length");
  if (!(await dependencies.replay.remember(`assertion:${clientId}`, jti, exp + policy.clockSkewSeconds))) {
    throw clientError("client assertion was already used", `jti ${jti} replayed by ${clientId}`);
  }
  return { clientId, payload };
}

function importPublicKey(jwk: JWK): Promise<CryptoKey | Uint8Array> {
  return importJWK(jwk, algorithmOf(jwk));
}

/** Returns the JWS algorithm a registered public key verifies with. */
export function algorithmOf(jwk: JWK): string {
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return "Ed25519";
  if (jwk.kty === "EC" && jwk.crv === "P-256") return "ES256";
  if (jwk.kty === "EC" && jwk.crv === "P-384") return "ES384";
  if (jwk.kty === "RSA") return typeof jwk.alg === "string" ? jwk.alg : "RS256";
  throw new TypeError(`unsupported key type "${jwk.kty}"`);
}

function clientError(description: string, detail: string, cause?: unknown): WritError {
  return new WritError("invalid_client", description, { detail, cause });
}
