/**
 * Verification of platform JWTs for agents bound to an external issuer (Kubernetes service accounts,
 * GitHub Actions OIDC, SPIRE JWT-SVIDs, generic OIDC). The agent presents the platform token with the
 * JWT bearer grant (RFC 7523 section 2.1), and the broker accepts it only when the token matches one
 * federated binding exactly.
 */
import { stat, readFile } from "node:fs/promises";
import { isIPv4 } from "node:net";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  jwtVerify,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from "jose";

import type { Clock } from "../clock.js";
import { WritError } from "../errors/writ-error.js";

export type BindingKind = "kubernetes" | "github" | "spire" | "oidc";

const BINDING_KINDS: readonly BindingKind[] = ["kubernetes", "github", "spire", "oidc"];

/** A binding of one agent to exactly one workload of an external issuer. */
export interface FederatedBindingSpec {
  kind: BindingKind;
  /**
   * Expected `iss`, compared as an exact string. Required for every kind except `spire`, where the
   * JWT-SVID issuer is checked only when set.
   */
  issuer?: string;
  /** Expected audience: the token's `aud` must equal it or, for an array `aud`, contain it. */
  audience: string;
  /** Path of a JWKS (or, for `spire`, a SPIFFE bundle) document. Exactly one of `jwksFile` and `jwksUrl` is set. */
  jwksFile?: string;
  /** https URL, or http URL on a loopback host, of the JWKS or SPIFFE bundle. */
  jwksUrl?: string;
  /**
   * Claim names mapped to exact expected values. Every entry must match a JSON string in the token.
   * A name may be a dotted path through nested objects (`kubernetes.io.serviceaccount.uid`). For
   * `spire`, `claims.sub` is the exact SPIFFE ID of the workload.
   */
  claims: Record<string, string>;
}

/** Maximum `exp - iat` in seconds. Longer-lived platform tokens are rejected, so a stolen one is useful only briefly. */
export const MAX_ASSERTION_LIFETIME_SECONDS = 3600;

/** Maximum number of seconds by which `iat` and `nbf` may lie ahead of the broker's clock, to absorb clock skew. */
export const MAX_FUTURE_SKEW_SECONDS = 60;

/**
 * Asymmetric JWS algorithms only. `none` carries no signature, and an HMAC token would be checked with
 * a shared secret, which a public key set must never supply.
 */
export const ALLOWED_ALGORITHMS: readonly string[] = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];

/** Kubernetes service account uid claim in projected tokens: `kubernetes.io` → `serviceaccount` → `uid`. */
const KUBERNETES_UID_CLAIM = "kubernetes.io.serviceaccount.uid";
/** Kubernetes service account uid claim in legacy secret-based tokens, a flat key. */
const KUBERNETES_LEGACY_UID_CLAIM = "kubernetes.io/serviceaccount/service-account.uid";

/**
 * Claims that a binding may not constrain through `claims`: `iss` and `aud` have their own fields
 * (and `aud` may be an array), and the others change with every token.
 */
const RESERVED_CLAIMS = new Set(["iss", "aud", "exp", "iat", "nbf", "jti"]);

// ---------------------------------------------------------------------------------------------------
// Binding validation
// ---------------------------------------------------------------------------------------------------

function invalidBinding(description: string): WritError {
  return new WritError("invalid_binding", description);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function requireNonEmptyString(value: unknown, field: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw invalidBinding(`${field} must be a non-empty string`);
  }
  if (value.trim() !== value) {
    throw invalidBinding(`${field} must not start or end with whitespace`);
  }
  return value;
}

/** Throws when a value contains `*` or `?`, which an operator writes only when expecting a pattern match. */
function rejectWildcard(value: string, field: string): void {
  if (value.includes("*") || value.includes("?")) {
    throw invalidBinding(
      `${field} contains a wildcard ('*' or '?'). Bindings match exact values only, so name one workload`,
    );
  }
}

function isLoopbackHost(hostname: string): boolean {
  // URL.hostname brackets IPv6 addresses and normalises IPv4 shorthand such as 127.1 to 127.0.0.1.
  if (hostname === "localhost" || hostname === "[::1]") {
    return true;
  }
  return isIPv4(hostname) && hostname.startsWith("127.");
}

function validateJwksUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalidBinding("jwksUrl must be an absolute URL");
  }
  if (url.username !== "" || url.password !== "") {
    throw invalidBinding("jwksUrl must not contain credentials");
  }
  if (url.hash !== "") {
    throw invalidBinding("jwksUrl must not contain a fragment");
  }
  if (url.protocol === "https:") {
    return value;
  }
  if (url.protocol === "http:" && isLoopbackHost(url.hostname)) {
    return value;
  }
  throw invalidBinding(
    "jwksUrl must use https (plain http is allowed only for 127.0.0.0/8, ::1 and localhost)",
  );
}

function validateClaims(value: unknown): Record<string, string> {
  if (!isRecord(value)) {
    throw invalidBinding("claims must be an object mapping claim names to exact string values");
  }
  const entries: [string, string][] = [];
  for (const [name, expected] of Object.entries(value)) {
    if (name.length === 0) {
      throw invalidBinding("claims must not contain an empty claim name");
    }
    if (RESERVED_CLAIMS.has(name)) {
      throw invalidBinding(
        `claims.${name} is not allowed. Set the issuer and audience fields instead, and do not bind per-token claims`,
      );
    }
    if (typeof expected !== "string" || expected.length === 0) {
      throw invalidBinding(`claims.${name} must be a non-empty string`);
    }
    rejectWildcard(expected, `claims.${name}`);
    entries.push([name, expected]);
  }
  // Object.fromEntries defines own properties, so a claim named "__proto__" cannot change the prototype.
  return Object.fromEntries(entries);
}

/** Lowercase letters, digits, '.', '-' and '_', as the SPIFFE ID specification allows in a trust domain. */
const TRUST_DOMAIN_PATTERN = /^[a-z0-9._-]+$/;
/** Letters, digits, '.', '-' and '_', as the SPIFFE ID specification allows in a path segment. */
const PATH_SEGMENT_PATTERN = /^[A-Za-z0-9._-]+$/;
const SPIFFE_SCHEME_PREFIX = "spiffe://";
const MAX_TRUST_DOMAIN_LENGTH = 255;
const MAX_SPIFFE_ID_LENGTH = 2048;

/**
 * Returns why `value` is not the SPIFFE ID of a workload, or undefined when it is one. The ID must have
 * a non-empty path, so a trust domain ID on its own (which would name every workload) is rejected.
 */
export function describeSpiffeIdProblem(value: string): string | undefined {
  if (!value.startsWith(SPIFFE_SCHEME_PREFIX)) {
    return "it must start with spiffe://";
  }
  if (value.length > MAX_SPIFFE_ID_LENGTH) {
    return `it is longer than ${MAX_SPIFFE_ID_LENGTH} characters`;
  }
  const rest = value.slice(SPIFFE_SCHEME_PREFIX.length);
  const slash = rest.indexOf("/");
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  if (trustDomain.length === 0) {
    return "the trust domain is empty";
  }
  if (trustDomain.length > MAX_TRUST_DOMAIN_LENGTH) {
    return `the trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`;
  }
  if (!TRUST_DOMAIN_PATTERN.test(trustDomain)) {
    return "the trust domain may contain only lowercase letters, digits, '.', '-' and '_'";
  }
  if (slash === -1 || slash === rest.length - 1) {
    return "it has no path, so it names the whole trust domain instead of one workload";
  }
  for (const segment of rest.slice(slash + 1).split("/")) {
    if (segment.length === 0) {
      return "the path contains an empty segment";
    }
    if (segment === "." || segment === "..") {
      return "the path contains a '.' or '..' segment";
    }
    if (!PATH_SEGMENT_PATTERN.test(segment)) {
      return "the path may contain only letters, digits, '.', '-', '_' and '/' (no percent-encoding, query or fragment)";
    }
  }
  return undefined;
}

/** `system:serviceaccount:<namespace>:<name>`, with an RFC 1123 label namespace and a DNS subdomain name. */
const KUBERNETES_SUBJECT_PATTERN =
  /^system:serviceaccount:([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?):([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$/;
/** Kubernetes object uids are lowercase RFC 4122 UUIDs. */
const KUBERNETES_UID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** GitHub repository and owner ids are decimal integers, sent as strings in Actions OIDC tokens. */
const GITHUB_NUMERIC_ID_PATTERN = /^[0-9]+$/;

function validateKindClaims(kind: BindingKind, claims: Record<string, string>): void {
  const subject = claims.sub;
  if (subject === undefined) {
    throw invalidBinding(
      `a ${kind} binding must set claims.sub, or it would match every subject of the issuer`,
    );
  }

  switch (kind) {
    case "kubernetes": {
      if (!KUBERNETES_SUBJECT_PATTERN.test(subject)) {
        throw invalidBinding("claims.sub must have the form system:serviceaccount:<namespace>:<name>");
      }
      const uid = claims[KUBERNETES_UID_CLAIM] ?? claims[KUBERNETES_LEGACY_UID_CLAIM];
      if (uid === undefined) {
        throw invalidBinding(
          `a kubernetes binding must set the service account uid in claims["${KUBERNETES_UID_CLAIM}"] ` +
            `(or the legacy claims["${KUBERNETES_LEGACY_UID_CLAIM}"]), ` +
            "or a re-created service account of the same name would match",
        );
      }
      for (const name of [KUBERNETES_UID_CLAIM, KUBERNETES_LEGACY_UID_CLAIM]) {
        const value = claims[name];
        if (value !== undefined && !KUBERNETES_UID_PATTERN.test(value)) {
          throw invalidBinding(`claims["${name}"] must be a lowercase UUID`);
        }
      }
      return;
    }
    case "github": {
      for (const name of ["repository_id", "repository_owner_id"]) {
        const value = claims[name];
        if (value === undefined) {
          throw invalidBinding(
            `a github binding must set claims.${name}, the immutable numeric id, ` +
              "or a renamed or re-created repository could match",
          );
        }
        if (!GITHUB_NUMERIC_ID_PATTERN.test(value)) {
          throw invalidBinding(`claims.${name} must be a decimal number`);
        }
      }
      return;
    }
    case "spire": {
      const problem = describeSpiffeIdProblem(subject);
      if (problem !== undefined) {
        throw invalidBinding(`claims.sub must be the full SPIFFE ID of one workload: ${problem}`);
      }
      return;
    }
    case "oidc":
      return;
  }
}

/**
 * Validates a binding before it is stored and returns a normalised copy that contains only the known
 * fields. Throws `invalid_binding` naming the problem when the binding is malformed or could match
 * more than one workload.
 */
export function validateBindingSpec(spec: unknown): FederatedBindingSpec {
  if (!isRecord(spec)) {
    throw invalidBinding("the binding must be an object");
  }

  const kind = spec.kind;
  if (typeof kind !== "string" || !(BINDING_KINDS as readonly string[]).includes(kind)) {
    throw invalidBinding(`kind must be one of ${BINDING_KINDS.join(", ")}`);
  }
  const bindingKind = kind as BindingKind;

  let issuer: string | undefined;
  if (spec.issuer !== undefined || bindingKind !== "spire") {
    issuer = requireNonEmptyString(spec.issuer, "issuer");
    rejectWildcard(issuer, "issuer");
    try {
      new URL(issuer);
    } catch {
      throw invalidBinding("issuer must be an absolute URL");
    }
  }

  const audience = requireNonEmptyString(spec.audience, "audience");
  rejectWildcard(audience, "audience");

  const hasFile = spec.jwksFile !== undefined;
  const hasUrl = spec.jwksUrl !== undefined;
  if (hasFile === hasUrl) {
    throw invalidBinding("set exactly one of jwksFile and jwksUrl");
  }

  const claims = validateClaims(spec.claims);
  validateKindClaims(bindingKind, claims);

  const normalised: FederatedBindingSpec = { kind: bindingKind, audience, claims };
  if (issuer !== undefined) {
    normalised.issuer = issuer;
  }
  if (hasFile) {
    normalised.jwksFile = requireNonEmptyString(spec.jwksFile, "jwksFile");
  } else {
    normalised.jwksUrl = validateJwksUrl(requireNonEmptyString(spec.jwksUrl, "jwksUrl"));
  }
  return normalised;
}

// ---------------------------------------------------------------------------------------------------
// Key sets
// ---------------------------------------------------------------------------------------------------

/** Supplier of the verification keys for a binding. */
export interface JwksSource {
  getKeySet(spec: FederatedBindingSpec): JWTVerifyGetKey;
}

export interface JwksSourceOptions {
  /** Maximum age in ms of a fetched remote key set before it is fetched again. Default 600000 (10 minutes). */
  cacheMaxAgeMs?: number;
  /** Timeout in ms for fetching a remote key set. Default 5000. */
  timeoutMs?: number;
  /** Minimum time in ms between a fetch and the refetch that an unknown `kid` triggers. Default 30000. */
  cooldownMs?: number;
}

const DEFAULT_CACHE_MAX_AGE_MS = 600_000;
const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_COOLDOWN_MS = 30_000;

/**
 * Keeps the JWT-SVID keys of a SPIFFE bundle and drops its X.509 roots and other key types. A SPIFFE
 * bundle marks keys with `use: "jwt-svid"`, which jose would skip because it accepts only `sig` or no
 * `use`, so the kept keys lose their `use` member. Keys marked `sig` are kept too, because SPIRE's OIDC
 * discovery provider can be configured to mark the keys it serves that way.
 */
export function selectJwtSvidKeys(document: unknown): JSONWebKeySet {
  if (!isRecord(document) || !Array.isArray(document.keys)) {
    throw new Error("the SPIFFE bundle has no keys array");
  }
  const keys = [];
  for (const key of document.keys) {
    if (!isRecord(key)) {
      continue;
    }
    if (key.use !== undefined && key.use !== "jwt-svid" && key.use !== "sig") {
      continue;
    }
    const { use: _use, ...rest } = key;
    keys.push(rest);
  }
  return { keys } as JSONWebKeySet;
}

function parseKeySetDocument(text: string, isSpiffeBundle: boolean): JSONWebKeySet {
  const document: unknown = JSON.parse(text);
  return isSpiffeBundle ? selectJwtSvidKeys(document) : (document as JSONWebKeySet);
}

/** Wraps fetch so that jose receives only the JWT-SVID keys of a SPIFFE bundle served over HTTP. */
const fetchJwtSvidKeys: FetchImplementation = async (url, init) => {
  const response = await fetch(url, init);
  if (response.status !== 200) {
    return response;
  }
  const keySet = selectJwtSvidKeys(await response.json());
  return new Response(JSON.stringify(keySet), {
    status: 200,
    headers: { "content-type": "application/json" },
  });
};

interface CachedFileKeySet {
  /** Inode, size and modification time in ns of the file read. A change means the file was replaced or rewritten. */
  version: string;
  keySet: JWTVerifyGetKey;
}

/**
 * Creates the default key source. A file is re-read when its inode, size or modification time
 * changes. A URL is fetched by jose's remote key set, one per URL, with the given maximum age, timeout
 * and cooldown.
 */
export function createJwksSource(options: JwksSourceOptions = {}): JwksSource {
  const cacheMaxAge = options.cacheMaxAgeMs ?? DEFAULT_CACHE_MAX_AGE_MS;
  const timeoutDuration = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const cooldownDuration = options.cooldownMs ?? DEFAULT_COOLDOWN_MS;
  const remoteKeySets = new Map<string, JWTVerifyGetKey>();
  const fileKeySets = new Map<string, CachedFileKeySet>();

  function getFileKeySet(path: string, isSpiffeBundle: boolean): JWTVerifyGetKey {
    const cacheKey = `${isSpiffeBundle ? "spiffe" : "jwks"}|${path}`;
    return async (protectedHeader, token) => {
      const stats = await stat(path, { bigint: true });
      const version = `${stats.ino}:${stats.size}:${stats.mtimeNs}`;
      let cached = fileKeySets.get(cacheKey);
      if (cached === undefined || cached.version !== version) {
        const keySet = createLocalJWKSet(parseKeySetDocument(await readFile(path, "utf8"), isSpiffeBundle));
        cached = { version, keySet };
        fileKeySets.set(cacheKey, cached);
      }
      return cached.keySet(protectedHeader, token);
    };
  }

  function getRemoteKeySet(url: string, isSpiffeBundle: boolean): JWTVerifyGetKey {
    const cacheKey = `${isSpiffeBundle ? "spiffe" : "jwks"}|${url}`;
    let keySet = remoteKeySets.get(cacheKey);
    if (keySet === undefined) {
      keySet = createRemoteJWKSet(new URL(url), {
        cacheMaxAge,
        timeoutDuration,
        cooldownDuration,
        ...(isSpiffeBundle ? { [customFetch]: fetchJwtSvidKeys } : {}),
      });
      remoteKeySets.set(cacheKey, keySet);
    }
    return keySet;
  }

  return {
    getKeySet(spec) {
      const isSpiffeBundle = spec.kind === "spire";
      if (spec.jwksFile !== undefined) {
        return getFileKeySet(spec.jwksFile, isSpiffeBundle);
      }
      if (spec.jwksUrl !== undefined) {
        return getRemoteKeySet(spec.jwksUrl, isSpiffeBundle);
      }
      throw new Error("the binding has neither jwksFile nor jwksUrl");
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Token verification
// ---------------------------------------------------------------------------------------------------

/** Marks a failure to load the key set, which is the broker's problem and not the token's. */
class KeySetUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`loading the key set failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "KeySetUnavailableError";
  }
}

/**
 * Wraps a key set so that errors about key selection (no key or several keys match the header) pass
 * through, and every other error (file missing, fetch failed or timed out, malformed key set) becomes
 * a KeySetUnavailableError.
 */
function classifyKeySetErrors(keySet: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (protectedHeader, token) => {
    try {
      return await keySet(protectedHeader, token);
    } catch (error) {
      if (
        error instanceof errors.JWKSNoMatchingKey ||
        error instanceof errors.JWKSMultipleMatchingKeys ||
        error instanceof errors.JOSENotSupported
      ) {
        throw error;
      }
      throw new KeySetUnavailableError(error);
    }
  };
}

/**
 * Runs jwtVerify and, when several keys of the set match the header (no `kid`, or a shared one),
 * tries each candidate in turn. Every key in the set is trusted for the binding, so the first key
 * whose signature verifies decides the result.
 */
async function verifyWithKeySet(
  jwt: string,
  keySet: JWTVerifyGetKey,
  options: JWTVerifyOptions,
): Promise<JWTPayload> {
  try {
    return (await jwtVerify(jwt, keySet, options)).payload;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) {
      throw error;
    }
    let lastError: unknown = error;
    for await (const key of error) {
      try {
        return (await jwtVerify(jwt, key, options)).payload;
      } catch (candidateError) {
        if (!(candidateError instanceof errors.JWSSignatureVerificationFailed)) {
          throw candidateError;
        }
        lastError = candidateError;
      }
    }
    throw lastError;
  }
}

function invalidGrant(description: string, detail: string, cause?: unknown): WritError {
  return new WritError("invalid_grant", description, { detail, cause });
}

/** Maps an error from jose (or the key set) to the WritError sent to the caller. */
function toWritError(error: unknown): WritError {
  if (error instanceof WritError) {
    return error;
  }
  if (error instanceof KeySetUnavailableError) {
    return new WritError(
      "temporarily_unavailable",
      "the issuer's signing keys could not be loaded, retry later",
      {
        detail: error.message,
        cause: error,
      },
    );
  }
  const reason = error instanceof Error ? error.message : String(error);
  if (error instanceof errors.JWTExpired) {
    return invalidGrant("the assertion has expired", `jose: ${reason}`, error);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    const claim = error.claim;
    if (error.reason === "missing") {
      return invalidGrant(`the assertion is missing the ${claim} claim`, `jose: ${reason}`, error);
    }
    if (claim === "iss") {
      return invalidGrant("the assertion's issuer does not match the binding", `jose: ${reason}`, error);
    }
    if (claim === "aud") {
      return invalidGrant("the assertion's audience does not match the binding", `jose: ${reason}`, error);
    }
    if (claim === "nbf") {
      return invalidGrant("the assertion is not yet valid", `jose: ${reason}`, error);
    }
    return invalidGrant(`the assertion's ${claim} claim is invalid`, `jose: ${reason}`, error);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return invalidGrant("the assertion's signing algorithm is not allowed", `jose: ${reason}`, error);
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return invalidGrant("no key of the issuer matches the assertion", `jose: ${reason}`, error);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return invalidGrant("the assertion's signature is invalid", `jose: ${reason}`, error);
  }
  if (error instanceof errors.JOSEError) {
    return invalidGrant("the assertion is not a valid JWT", `jose: ${error.code}: ${reason}`, error);
  }
  // jose raises TypeError for some malformed inputs, such as an RSA key shorter than 2048 bits.
  return invalidGrant("the assertion could not be verified", `verification failed: ${reason}`, error);
}

/**
 * Returns every value that a claim name resolves to in `container`. The literal key comes first, then
 * each split of the name at a dot whose head is an own key containing an object. `kubernetes.io.x` thus
 * finds both `{"kubernetes.io.x": …}` and `{"kubernetes.io": {"x": …}}`.
 */
function resolveClaim(container: Record<string, unknown>, name: string): unknown[] {
  const values: unknown[] = [];
  if (Object.hasOwn(container, name)) {
    values.push(container[name]);
  }
  for (let dot = name.indexOf("."); dot !== -1; dot = name.indexOf(".", dot + 1)) {
    const head = name.slice(0, dot);
    const child = Object.hasOwn(container, head) ? container[head] : undefined;
    if (isRecord(child)) {
      values.push(...resolveClaim(child, name.slice(dot + 1)));
    }
  }
  return values;
}

/**
 * Throws `invalid_grant` unless every bound claim is present and equal to its expected value. When a
 * name resolves to several values (a flat key and a nested path both exist), all of them must match,
 * so an ambiguous token is rejected instead of matched on whichever value is found first.
 */
function checkBoundClaims(spec: FederatedBindingSpec, payload: JWTPayload): void {
  for (const [name, expected] of Object.entries(spec.claims)) {
    const values = resolveClaim(payload, name);
    if (values.length === 0) {
      throw invalidGrant("the assertion does not match the binding", `claim ${name} is missing`);
    }
    for (const value of values) {
      if (value !== expected) {
        throw invalidGrant(
          "the assertion does not match the binding",
          `claim ${name} is ${JSON.stringify(value)}, expected ${JSON.stringify(expected)}`,
        );
      }
    }
  }
}

/**
 * Checks the time claims that jose cannot check with one tolerance: `exp` strictly against now,
 * `iat` and `nbf` at most MAX_FUTURE_SKEW_SECONDS ahead, and the lifetime `exp - iat`. jose has already
 * verified that `exp` and `iat` are present and numbers.
 */
function checkTimeClaims(payload: JWTPayload, nowMs: number): void {
  const { exp, iat, nbf } = payload;
  if (typeof exp !== "number" || !Number.isFinite(exp) || typeof iat !== "number" || !Number.isFinite(iat)) {
    throw invalidGrant("the assertion's exp or iat claim is invalid", "exp and iat must be finite numbers");
  }
  // NumericDate values are seconds since the epoch. Comparing in milliseconds keeps fractional values exact.
  const expMs = exp * 1000;
  const iatMs = iat * 1000;
  const maxFutureMs = nowMs + MAX_FUTURE_SKEW_SECONDS * 1000;

  if (expMs <= nowMs) {
    throw invalidGrant("the assertion has expired", `exp ${exp} is not after now (${nowMs / 1000})`);
  }
  if (iatMs > maxFutureMs) {
    throw invalidGrant(
      "the assertion's iat claim is in the future",
      `iat ${iat} is more than ${MAX_FUTURE_SKEW_SECONDS} s after now (${nowMs / 1000})`,
    );
  }
  if (typeof nbf === "number" && nbf * 1000 > maxFutureMs) {
    throw invalidGrant(
      "the assertion is not yet valid",
      `nbf ${nbf} is more than ${MAX_FUTURE_SKEW_SECONDS} s after now (${nowMs / 1000})`,
    );
  }
  const lifetime = exp - iat;
  if (lifetime <= 0) {
    throw invalidGrant("the assertion's lifetime is invalid", `exp ${exp} is not after iat ${iat}`);
  }
  if (lifetime > MAX_ASSERTION_LIFETIME_SECONDS) {
    throw invalidGrant(
      "the assertion's lifetime is longer than allowed",
      `exp - iat is ${lifetime} s, the maximum is ${MAX_ASSERTION_LIFETIME_SECONDS} s`,
    );
  }
}

export interface VerifyPlatformJwtOptions {
  clock: Clock;
  jwks: JwksSource;
}

/**
 * Verifies a platform JWT against a binding and returns its payload. Checks the signature against the
 * binding's key set (asymmetric algorithms only), `iss` and `aud`, the time claims and every bound
 * claim. Throws `invalid_grant` with the precise reason in `detail`, or `temporarily_unavailable` when
 * the key set cannot be loaded.
 */
export async function verifyPlatformJwt(
  spec: FederatedBindingSpec,
  jwt: string,
  options: VerifyPlatformJwtOptions,
): Promise<JWTPayload> {
  // A stored binding is validated again so that one written by older code, or edited in the store,
  // never matches more workloads than the current rules allow.
  let binding: FederatedBindingSpec;
  try {
    binding = validateBindingSpec(spec);
  } catch (error) {
    const reason = error instanceof WritError ? error.description : String(error);
    throw invalidGrant("the federated binding is invalid", `binding failed validation: ${reason}`, error);
  }

  const nowMs = options.clock.nowMs();
  // jose applies clockTolerance both to nbf (ahead of now) and to exp (behind now). Setting it to the
  // allowed skew gives the nbf check. checkTimeClaims then checks exp without tolerance, and iat, which
  // jose checks only when maxTokenAge is set.
  // NOTE: jose compares against whole seconds, so it may reject a fractional nbf up to one second earlier
  // than checkTimeClaims would. Integer NumericDates are unaffected.
  const verifyOptions: JWTVerifyOptions = {
    algorithms: [...ALLOWED_ALGORITHMS],
    audience: binding.audience,
    currentDate: new Date(nowMs),
    clockTolerance: MAX_FUTURE_SKEW_SECONDS,
    requiredClaims: ["exp", "iat"],
  };
  if (binding.issuer !== undefined) {
    verifyOptions.issuer = binding.issuer;
  }

  let keySet: JWTVerifyGetKey;
  try {
    keySet = classifyKeySetErrors(options.jwks.getKeySet(binding));
  } catch (error) {
    throw toWritError(new KeySetUnavailableError(error));
  }

  try {
    const payload = await verifyWithKeySet(jwt, keySet, verifyOptions);
    checkTimeClaims(payload, nowMs);
    checkBoundClaims(binding, payload);
    return payload;
  } catch (error) {
    throw toWritError(error);
  }
}
