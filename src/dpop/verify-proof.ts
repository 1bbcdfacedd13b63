import { createHash } from "node:crypto";
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  EmbeddedJWK,
  importJWK,
  jwtVerify,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from "jose";
import { epochSeconds, type Clock } from "../clock.js";
import { WritError } from "../errors/writ-error.js";
import type { DpopNonces } from "./nonces.js";
import type { ReplayCache } from "./replay-cache.js";

/** JWS algorithms accepted in DPoP proofs: asymmetric only. */
export const dpopAlgorithms = ["Ed25519", "EdDSA", "ES256", "ES384", "PS256", "RS256"];

/** Members that only a private or symmetric JWK has. */
const privateJwkMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

export interface DpopPolicy {
  maxAgeSeconds: number;
  maxFutureSeconds: number;
  clockSkewSeconds: number;
  /** When set, every proof must carry one of this source's current nonces. */
  nonces?: DpopNonces;
}

export interface DpopRequest {
  /** Every value of the `DPoP` header field as received; exactly one is accepted. */
  proofs: string[];
  /** The HTTP method of the request. */
  method: string;
  /** The URL the proof must name in `htu`, built from the configured public URL, never from `Host`. */
  url: string;
  /** The access token presented with the proof, whose hash `ath` must carry. */
  accessToken?: string;
  /** The token's `cnf.jkt`, checked before the signature so a foreign key is rejected cheaply. */
  expectedJkt?: string;
}

/** A key cache that starts over once it holds `maxEntries` keys, so its memory stays bounded. */
export class BoundedKeyCache implements DpopKeyCache {
  private readonly keys = new Map<string, CryptoKey | Uint8Array>();

  constructor(private readonly maxEntries: number) {}

  get(id: string): CryptoKey | Uint8Array | undefined {
    return this.keys.get(id);
  }

  set(id: string, key: CryptoKey | Uint8Array): void {
    if (this.keys.size >= this.maxEntries) this.keys.clear();
    this.keys.set(id, key);
  }
}

/** Imported proof keys by `alg:jkt`, so a client's key is imported once rather than per request. */
export interface DpopKeyCache {
  get(id: string): CryptoKey | Uint8Array | undefined;
  set(id: string, key: CryptoKey | Uint8Array): void;
}

export interface VerifiedProof {
  /** The RFC 7638 thumbprint of the proof's key, which `cnf.jkt` binds tokens to. */
  jkt: string;
  jwk: JWK;
  payload: JWTPayload;
}

/**
 * Verifies a DPoP proof as RFC 9449 section 4.3 prescribes: one header, `typ` `dpop+jwt`, an asymmetric
 * `alg`, a public `jwk` that verifies the signature, `htm` and `htu` matching the request, `iat`
 * within the window, the nonce when one is required, `ath` when a token is presented, and a `jti` not
 * seen before.
 */
export async function verifyDpopProof(
  request: DpopRequest,
  policy: DpopPolicy,
  dependencies: { clock: Clock; replay: ReplayCache; keys?: DpopKeyCache },
): Promise<VerifiedProof> {
  if (request.proofs.length === 0) throw proofError("missing DPoP proof", "no DPoP header");
  if (request.proofs.length > 1)
    throw proofError("more than one DPoP header", `${request.proofs.length} DPoP headers`);
  const proof = request.proofs[0] as string;

  let header;
  try {
    header = decodeProtectedHeader(proof);
  } catch (error) {
    throw proofError("malformed DPoP proof", "protected header cannot be decoded", error);
  }
  if (header.typ !== "dpop+jwt")
    throw proofError("DPoP proof typ must be dpop+jwt", `typ ${String(header.typ)}`);
  if (typeof header.alg !== "string" || !dpopAlgorithms.includes(header.alg)) {
    throw proofError("DPoP proof alg is not allowed", `alg ${String(header.alg)}`);
  }
  const jwk = header.jwk;
  if (typeof jwk !== "object" || jwk === null) throw proofError("DPoP proof has no jwk", "no jwk header");
  if (privateJwkMembers.some((member) => member in jwk)) {
    throw proofError("DPoP proof jwk must be a public key", "jwk carries private or symmetric key material");
  }

  let jkt: string;
  try {
    jkt = await thumbprintOf(jwk as JWK);
  } catch (error) {
    throw proofError("DPoP proof jwk is invalid", (error as Error).message, error);
  }
  if (request.expectedJkt !== undefined && jkt !== request.expectedJkt) {
    throw proofError("DPoP proof is not signed by the token's key", "jkt differs from cnf.jkt");
  }
  const cachedKey = dependencies.keys?.get(`${header.alg}:${jkt}`);

  let payload: JWTPayload;
  try {
    const key = cachedKey ?? EmbeddedJWK;
    ({ payload } = await jwtVerify(proof, key as typeof EmbeddedJWK, {
      typ: "dpop+jwt",
      algorithms: dpopAlgorithms,
      currentDate: new Date(dependencies.clock.nowMs()),
      clockTolerance: policy.clockSkewSeconds,
    }));
  } catch (error) {
    throw proofError("DPoP proof signature or claims are invalid", (error as Error).message, error);
  }

  if (payload.htm !== request.method) {
    throw proofError("DPoP proof htm does not match the request method", `htm ${String(payload.htm)}`);
  }
  if (
    typeof payload.htu !== "string" ||
    stripQueryAndFragment(payload.htu) !== stripQueryAndFragment(request.url)
  ) {
    throw proofError(
      "DPoP proof htu does not match the request URL",
      `htu ${String(payload.htu)}, expected ${request.url}`,
    );
  }

  const now = epochSeconds(dependencies.clock);
  const iat = payload.iat;
  if (typeof iat !== "number" || !Number.isFinite(iat))
    throw proofError("DPoP proof has no iat", "iat missing");
  if (iat > now + policy.maxFutureSeconds)
    throw proofError("DPoP proof iat is in the future", `iat ${iat}, now ${now}`);
  if (iat < now - policy.maxAgeSeconds - policy.clockSkewSeconds) {
    throw proofError("DPoP proof is too old", `iat ${iat}, now ${now}`);
  }
  if (typeof payload.jti !== "string" || payload.jti.length === 0 || payload.jti.length > 256) {
    throw proofError("DPoP proof jti is missing or invalid", "jti missing or longer than 256 characters");
  }

  if (policy.nonces !== undefined && !policy.nonces.accepts(payload.nonce)) {
    throw new WritError("use_dpop_nonce", "DPoP proof must carry the server nonce", {
      detail: payload.nonce === undefined ? "nonce missing" : "nonce unknown or expired",
    });
  }

  if (request.accessToken !== undefined) {
    const expected = createHash("sha256").update(request.accessToken).digest("base64url");
    if (payload.ath !== expected)
      throw proofError("DPoP proof ath does not match the access token", "ath mismatch");
  }

  if (cachedKey === undefined && dependencies.keys !== undefined) {
    dependencies.keys.set(`${header.alg}:${jkt}`, await importJWK(jwk as JWK, header.alg));
  }
  // The identifier is kept until the proof could no longer pass the iat check, plus the skew.
  const keepUntil =
    Math.max(iat, now) + policy.maxAgeSeconds + policy.maxFutureSeconds + policy.clockSkewSeconds;
  if (!(await dependencies.replay.remember(`dpop:${jkt}`, payload.jti, keepUntil))) {
    throw proofError("DPoP proof was already used", `jti ${payload.jti} replayed`);
  }
  return { jkt, jwk: jwk as JWK, payload };
}

/** Thumbprints by the JWK members they hash, bounded; a client's key is hashed once, not per proof. */
const thumbprints = new Map<string, string>();
const maxThumbprints = 10_000;

async function thumbprintOf(jwk: JWK): Promise<string> {
  // RFC 7638 hashes only the required members, so they alone identify the thumbprint.
  const id = JSON.stringify([jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.n, jwk.e]);
  let jkt = thumbprints.get(id);
  if (jkt === undefined) {
    jkt = await calculateJwkThumbprint(jwk, "sha256");
    if (thumbprints.size >= maxThumbprints) thumbprints.clear();
    thumbprints.set(id, jkt);
  }
  return jkt;
}

function stripQueryAndFragment(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return url;
  }
}

function proofError(description: string, detail: string, cause?: unknown): WritError {
  return new WritError("invalid_dpop_proof", description, { detail, cause });
}
