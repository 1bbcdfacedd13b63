import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import { createJwksSource, type JwksSource } from "../attestation/federation.js";
import { loadAuditKey } from "../audit/audit-key.js";
import { AuditCheckpointer } from "../audit/checkpointer.js";
import { AuditLog } from "../audit/log.js";
import { configuredSinks } from "../audit/sinks/index.js";
import { systemClock, type Clock } from "../clock.js";
import { loadConfig, type WritConfig } from "../config/config.js";
import { dpopNonceLifetimeSeconds, sweepIntervalMs } from "../config/defaults.js";
import { normalisePublicUrl } from "../config/public-url.js";
import { DpopNonces } from "../dpop/nonces.js";
import { StoreReplayCache } from "../dpop/replay-cache.js";
import { silentLogger } from "../log/logger.js";
import { RevocationFeed } from "../revocation/feed.js";
import { expireDueTasks } from "../revocation/revoke.js";
import { runSystemUpkeep } from "../leases/upkeep.js";
import { loadAlertKey } from "../alerts/alert-key.js";
import { sendAlert } from "../alerts/alerts.js";
import { sweepApprovals } from "../approvals/decide.js";
import { Store, type StoreLocation } from "../store/store.js";
import { WriteQueue } from "../store/write-queue.js";
import { SigningKeyRing } from "../tokens/signing-keys.js";
import { loadMasterKey } from "../secrets/master-key.js";
import { PolicyEngine } from "../policy/engine.js";
import { reloadPolicies } from "../policy/policies.js";
import type { BrokerContext } from "./context.js";

export const storeFileName = "writ.db";

export interface OpenOptions {
  dataDir: string;
  config?: WritConfig;
  clock?: Clock;
  log?: Logger;
  jwks?: JwksSource;
}

/** A running broker: its context and the timers that expire tasks and follow peers' revocations. */
export interface Broker {
  context: BrokerContext;
  /** Starts the sweeper; a broker opened only for one CLI command does not need it. */
  startTimers(): void;
  close(): Promise<void>;
}

/** Returns where a data directory's store lives according to its configuration. */
export function storeLocation(dataDir: string, config: WritConfig): StoreLocation {
  if (config.store.kind === "sqlite") return { kind: "sqlite", file: join(dataDir, storeFileName) };
  const url = process.env[config.store.url_env];
  if (url === undefined || url === "") {
    throw new Error(`store connection string missing: set the environment variable ${config.store.url_env}`);
  }
  return { kind: "postgres", url };
}

/** Opens the broker on a data directory: configuration, store, keys, audit log and revocation feed. */
export async function openBroker(options: OpenOptions): Promise<Broker> {
  const config = options.config ?? (await loadConfig(options.dataDir));
  const clock = options.clock ?? systemClock;
  const log = options.log ?? silentLogger();
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const store = await Store.open(storeLocation(options.dataDir, config));
  const queue = new WriteQueue(store);
  const keys = new SigningKeyRing(
    store,
    clock,
    Math.max(config.access_token_ttl_seconds, config.admin_token_ttl_seconds),
  );
  await keys.load(config.signing_alg);
  const masterKey = await loadMasterKey(resolve(options.dataDir, config.master_key_file));
  const feed = new RevocationFeed(store, queue, clock, log);
  await feed.start();
  const issuer = normalisePublicUrl(config.public_url);
  const auditKey = await loadAuditKey(resolve(options.dataDir, config.audit_key_file), config.signing_alg);
  const checkpointer = new AuditCheckpointer({
    store,
    queue,
    key: auditKey,
    issuer,
    clock,
    log,
    sinks: configuredSinks(options.dataDir, config),
  });

  const context: BrokerContext = {
    config,
    issuer,
    store,
    queue,
    clock,
    log,
    keys,
    audit: new AuditLog(store, queue, clock, log),
    auditKey,
    checkpointer,
    replay: new StoreReplayCache(store, queue, clock),
    nonces: new DpopNonces(clock, dpopNonceLifetimeSeconds),
    feed,
    jwks: options.jwks ?? createJwksSource(),
    masterKey,
    policy: new PolicyEngine(),
  };
  await reloadPolicies(context);
  await loadAlertKey(context);
  context.audit.onRepeatedFailure = (input, failures, error) =>
    sendAlert(context, "audit_append.failing", {
      audit_kind: input.kind,
      task_id: input.task_id ?? null,
      failures,
      error: (error as Error).message,
    });

  let timer: NodeJS.Timeout | undefined;
  let upkeep: Promise<void> = Promise.resolve();
  let sweeping = false;
  let sweeps = 0;
  const sweep = async (): Promise<void> => {
    if (sweeping) return;
    sweeping = true;
    try {
      // Break-glass windows end before the task sweep, so their revocation is recorded as theirs.
      await sweepApprovals(context);
      await expireDueTasks(context);
      // Lease cleanups and account rotations reach other servers, so they run beside the sweep.
      upkeep = runSystemUpkeep(context);
      await feed.poll();
      sweeps++;
      // Less urgent upkeep runs every twentieth sweep: purges, and keys or policies changed by peers.
      if (sweeps % 20 === 0) {
        await context.replay.purge();
        await feed.purge();
        await keys.load(config.signing_alg);
        await reloadPolicies(context);
      }
    } catch (error) {
      log.error({ err: error }, "sweep failed; retrying at the next interval");
    } finally {
      sweeping = false;
    }
  };

  return {
    context,
    startTimers() {
      timer ??= setInterval(() => void sweep(), sweepIntervalMs);
      timer.unref();
      checkpointer.start(config.audit_checkpoint_interval_seconds * 1000);
    },
    async close() {
      if (timer !== undefined) clearInterval(timer);
      await upkeep;
      // Signs the head that every event written so far leaves, so truncation after a stop is caught.
      await checkpointer.stop();
      await queue.drain();
      await store.close();
    },
  };
}
