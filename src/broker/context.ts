import type { Logger } from "pino";
import type { AuditKey } from "../audit/audit-key.js";
import type { AuditCheckpointer } from "../audit/checkpointer.js";
import type { AuditLog } from "../audit/log.js";
import type { Clock } from "../clock.js";
import type { WritConfig } from "../config/config.js";
import type { DpopNonces } from "../dpop/nonces.js";
import type { StoreReplayCache } from "../dpop/replay-cache.js";
import type { JwksSource } from "../attestation/federation.js";
import type { RevocationFeed } from "../revocation/feed.js";
import type { Store } from "../store/store.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { WriteQueue } from "../store/write-queue.js";
import type { SigningKeyRing } from "../tokens/signing-keys.js";

/** Everything the broker's operations share: configuration, store, clock, keys, audit and feed. */
export interface BrokerContext {
  config: WritConfig;
  /** The public URL without a trailing slash; the issuer identifier. */
  issuer: string;
  store: Store;
  queue: WriteQueue;
  clock: Clock;
  log: Logger;
  keys: SigningKeyRing;
  audit: AuditLog;
  /** The key that signs audit checkpoints, loaded from its own file apart from the store. */
  auditKey: AuditKey;
  checkpointer: AuditCheckpointer;
  replay: StoreReplayCache;
  nonces: DpopNonces;
  feed: RevocationFeed;
  jwks: JwksSource;
  /** The key that seals stored secrets; never logged or returned. */
  masterKey: Buffer;
  policy: PolicyEngine;
}

/** The resource URI of the admin API, the audience of people's API tokens. */
export function adminApiResource(context: Pick<BrokerContext, "issuer">): string {
  return `${context.issuer}/v1`;
}
