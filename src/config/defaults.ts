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

/** How many times a task may be delegated down a chain. */
export const maxDelegationDepth = 3;

/** How long an approval request stays open, and a granted step-up approval usable. 15 minutes. */
export const approvalTtlSeconds = 900;

/** How many people other than the requester must approve a break-glass window. */
export const breakglassApprovals = 1;

/** Maximum break-glass window accepted. 24 hours. */
export const maxBreakglassSeconds = 24 * 3600;

/** The `Retry-After` of a held step-up call, in seconds. */
export const stepUpRetryAfterSeconds = 5;

/** Alert delivery: attempts before a delivery is given up, first retry delay, and the cap of the doubling delay. */
export const alertMaxAttempts = 8;
export const alertRetryInitialMs = 1000;
export const alertRetryMaxMs = 5 * 60 * 1000;

/** How long one alert delivery attempt may take before it counts as failed, in milliseconds. */
export const alertTimeoutMs = 5000;

/** Interval between signed checkpoints of the audit chain's head. 1 minute. */
export const auditCheckpointIntervalSeconds = 60;
