import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import Fastify, { type FastifyServerOptions } from "fastify";
import type { Logger } from "pino";
import { AdminClient, readKeyFile } from "../cli/admin-client.js";
import { systemClock } from "../clock.js";
import { configSchema } from "../config/config.js";
import * as defaults from "../config/defaults.js";
import { isLoopbackHost, normalisePublicUrl } from "../config/public-url.js";
import { parseListen } from "../server/serve.js";
import { createGateway } from "./gateway.js";
import { createRemoteBackend } from "./remote-backend.js";
import { parseSpiffeId } from "../identity/spiffe.js";
import { AuditSpool } from "./spool.js";

export interface StandaloneOptions {
  brokerUrl: string;
  keyFile: string;
  listen: string;
  /** The URL agents reach this gateway at; defaults to `http://<listen>`. */
  publicUrl?: string;
  /** Where the audit spool lives. */
  dataDir: string;
  silenceBoundSeconds?: number;
  log: Logger;
}

export interface RunningGateway {
  address: string;
  close(): Promise<void>;
}

/**
 * Runs a gateway apart from the broker: it authenticates as its own registered identity, follows
 * the broker's feed, and serves `/tools/<tool>/…` on its own listener.
 */
export async function runStandaloneGateway(options: StandaloneOptions): Promise<RunningGateway> {
  const { host, port } = parseListen(options.listen);
  if (!isLoopbackHost(host)) {
    throw new Error(
      `refusing to listen on "${options.listen}" without TLS: run the gateway on loopback behind a TLS proxy`,
    );
  }
  const silenceBoundSeconds = options.silenceBoundSeconds ?? defaults.revocationSilenceBoundSeconds;
  checkSilenceBound(silenceBoundSeconds);
  const issuer = await discoverIssuer(options.brokerUrl, options.log);
  const key = await readKeyFile(options.keyFile);
  const identity = parseSpiffeId(key.clientId);
  if (identity?.path.length !== 2 || identity.path[0] !== "gateway") {
    throw new Error(
      `"${options.keyFile}" belongs to ${key.clientId}, not to a gateway: use the key file from writ gateway add`,
    );
  }
  const client = await AdminClient.connect({ issuer, key });

  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const spool = new AuditSpool(join(resolve(options.dataDir), "gateway-spool.db"), client, options.log);
  await spool.start();
  const backend = await createRemoteBackend({
    client,
    gatewayName: identity.path[1] as string,
    issuer,
    publicUrl: normalisePublicUrl(options.publicUrl ?? `http://${options.listen}`),
    spool,
    clock: systemClock,
    log: options.log,
    silenceBoundMs: silenceBoundSeconds * 1000,
  });
  const gateway = createGateway({
    backend,
    clock: systemClock,
    log: options.log,
    dpop: {
      maxAgeSeconds: defaults.dpopProofMaxAgeSeconds,
      maxFutureSeconds: defaults.dpopProofMaxFutureSeconds,
      clockSkewSeconds: defaults.clockSkewSeconds,
    },
  });
  const app = Fastify({
    loggerInstance: options.log,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    forceCloseConnections: true,
  } as FastifyServerOptions);
  gateway.register(app);
  app.get("/healthz", async (_request, reply) =>
    backend.revocations.isFresh()
      ? { status: "ok" }
      : reply.code(503).send({ status: "stale", reason: "revocation feed not heard within its bound" }),
  );
  try {
    await app.listen({ host, port });
  } catch (error) {
    // The feed follower's reconnect timer would keep the process alive after a failed start.
    await app.close();
    await gateway.close();
    throw error;
  }
  const bound = app.server.address();
  const address = typeof bound === "object" && bound !== null ? `${host}:${bound.port}` : options.listen;
  options.log.info({ listen: address, broker: issuer, public_url: backend.publicUrl }, "gateway started");
  return {
    address,
    async close() {
      await app.close();
      await gateway.close();
      options.log.info({ listen: address }, "gateway stopped");
    },
  };
}

/**
 * Throws unless `seconds` is a whole number in the range the broker's configuration allows. A bound
 * no longer than the feed's heartbeat interval would make the gateway deny requests between heartbeats.
 */
function checkSilenceBound(seconds: number): void {
  const { min = 1, max = Number.MAX_SAFE_INTEGER } = configSchema.revocation_silence_bound_seconds;
  if (!Number.isInteger(seconds) || seconds < min || seconds > max) {
    throw new Error(`invalid silence bound ${seconds}: give whole seconds from ${min} to ${max}`);
  }
}

/**
 * Returns the issuer named by the broker's metadata. When nothing listens at the broker URL, the
 * gateway still starts, so it can respond with 503 until the broker is back, and takes the URL as the
 * issuer.
 */
async function discoverIssuer(brokerUrl: string, log: Logger): Promise<string> {
  const base = brokerUrl.replace(/\/+$/, "");
  let metadata: Response;
  try {
    metadata = await fetch(`${base}/.well-known/oauth-authorization-server`);
  } catch (error) {
    // NOTE: if the broker's issuer differs from this URL, every token fails verification until the
    // gateway is restarted while the broker is up.
    log.warn(
      { err: error, broker: base },
      "broker unreachable at start; taking its URL as the issuer and denying requests until its feed answers",
    );
    return base;
  }
  if (!metadata.ok)
    throw new Error(
      `no writ broker at "${brokerUrl}": metadata request failed with status ${metadata.status}`,
    );
  const { issuer } = (await metadata.json()) as { issuer: string };
  return issuer;
}
