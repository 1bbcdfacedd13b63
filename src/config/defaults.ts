/**
 * Every default of writ, in one place. Each is documented in docs/configuration.md, which a test keeps
 * in step with the schema in config.ts.
 */

/** The port of the embedded default: the broker, and later the gateway, on loopback. */
export const defaultPort = 7400;

/** Lifetime of an access token; never longer than its task. 10 minutes. */
export const accessTokenTtlSeconds = 600;

/** Lifetime of an admin's API token. 5 minutes. */
export const adminTokenTtlSeconds = 300;

/** Longest accepted `exp - iat` of a private_key_jwt client assertion. 5 minutes. */
export const clientAssertionMaxLifetimeSeconds = 300;

/** How far in the future a DPoP proof's `iat` may lie, for clients whose clock runs ahead. */
export const dpopProofMaxFutureSeconds = 10;

/** How old a DPoP proof's `iat` may be. */
export const dpopProofMaxAgeSeconds = 60;

/** How long a server nonce for DPoP stays valid; the current and previous nonces are accepted. */
export const dpopNonceLifetimeSeconds = 300;

/** Clock skew tolerated on `exp`, `nbf` and `iat` of tokens and assertions. */
export const clockSkewSeconds = 5;

/** Interval between heartbeats on the revocation feed; followers treat longer silence as a fault. */
export const revocationHeartbeatSeconds = 5;

/** Interval at which the broker looks for tasks past their deadline and for revocations by peers. */
export const sweepIntervalMs = 500;

/** Longest task time to live accepted by `writ task start`. 7 days. */
export const maxTaskTtlSeconds = 7 * 24 * 3600;

/** Default task time to live when none is given. 1 hour. */
export const taskTtlSeconds = 3600;

/** Largest accepted request body at the OAuth endpoints, in bytes. */
export const maxRequestBodyBytes = 64 * 1024;

/** How long a gateway may go without hearing the revocation feed before it fails closed. */
export const revocationSilenceBoundSeconds = 30;
