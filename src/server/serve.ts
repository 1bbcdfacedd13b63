import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { openBroker, type Broker } from "../broker/broker.js";
import type { Clock } from "../clock.js";
import { loadConfig } from "../config/config.js";
import { isLoopbackHost } from "../config/public-url.js";
import { buildApp } from "./app.js";
import type { BrokerContext } from "../broker/context.js";
import { createGateway, type Gateway } from "../gateway/gateway.js";
import { createLocalBackend } from "../gateway/local-backend.js";
import { getGatewayByCertificate } from "../identity/gateways.js";

/** The file a running server writes into its data directory, so the CLI acts through its API. */
export const serverFileName = "server.json";

export interface ServerRecord {
  url: string;
  pid: number;
  listen: string;
}

export interface ServeOptions {
  dataDir: string;
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  log: Logger;
  /** The broker's clock; tests pass a ManualClock to move expiry windows without sleeping. */
  clock?: Clock;
}

export interface RunningServer {
  broker: Broker;
  /** The address actually bound, as `host:port`. */
  address: string;
  close(): Promise<void>;
}

/** Splits `HOST:PORT` (IPv6 hosts in brackets); throws Error on anything else. */
export function parseListen(value: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (match === null || !Number.isInteger(port) || port > 65535) {
    throw new Error(`invalid listen address "${value}": use HOST:PORT, such as 127.0.0.1:7400`);
  }
  return { host: (match[1] as string).replace(/^\[|\]$/g, ""), port };
}

/**
 * Starts the broker's server. A listener off loopback needs TLS; the server refuses to start without
 * it rather than expose tokens in clear text.
 */
export async function serve(options: ServeOptions): Promise<RunningServer> {
  const config = await loadConfig(options.dataDir);
  const listen = options.listen ?? config.listen;
  const { host, port } = parseListen(listen);
  const certPath = options.tlsCert ?? config.tls_cert ?? undefined;
  const keyPath = options.tlsKey ?? config.tls_key ?? undefined;
  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new Error("TLS needs both --tls-cert and --tls-key");
  }
  if (certPath === undefined && !isLoopbackHost(host)) {
    throw new Error(
      `refusing to listen on "${listen}" without TLS: give --tls-cert and --tls-key, or listen on loopback`,
    );
  }
  const https =
    certPath === undefined || keyPath === undefined
      ? undefined
      : {
          cert: await readFile(certPath),
          key: await readFile(keyPath),
          // Clients may present a certificate: the decision API identifies gateways by its fingerprint,
          // pinned at registration, so no CA decides who may call.
          requestCert: true,
          rejectUnauthorized: false,
        };

  const broker = await openBroker({
    dataDir: options.dataDir,
    config,
    log: options.log,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  const gateway = await createEmbeddedGateway(broker.context);
  const app = buildApp(broker.context, { gateway, ...(https === undefined ? {} : { https }) });
  await app.listen({ host, port });
  const bound = app.server.address();
  const address = typeof bound === "object" && bound !== null ? `${host}:${bound.port}` : listen;
  broker.startTimers();

  const record: ServerRecord = { url: broker.context.issuer, pid: process.pid, listen: address };
  // Written beside and renamed into place, so a CLI reading it never sees half a file.
  const recordFile = join(options.dataDir, serverFileName);
  await writeFile(`${recordFile}.${process.pid}.tmp`, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(`${recordFile}.${process.pid}.tmp`, recordFile);
  options.log.info(
    { listen: address, issuer: broker.context.issuer, tls: https !== undefined },
    "server started",
  );

  let closing: Promise<void> | undefined;
  return {
    broker,
    address,
    close() {
      closing ??= (async () => {
        await app.close();
        await gateway.close();
        await broker.close();
        await rm(join(options.dataDir, serverFileName), { force: true });
        options.log.info({ listen: address }, "server stopped");
      })();
      return closing;
    },
  };
}

/** Creates the gateway that runs inside the broker's process, the embedded default. */
async function createEmbeddedGateway(context: BrokerContext): Promise<Gateway> {
  const backend = await createLocalBackend(context, context.config.revocation_silence_bound_seconds * 1000);
  return createGateway({
    backend,
    clock: context.clock,
    log: context.log,
    callerByCertificate: async (fingerprint) => {
      const gateway = await getGatewayByCertificate(context, fingerprint);
      // A gateway registered without a public URL gives no base for the DPoP htu check, so it may not ask.
      if (gateway === undefined || gateway.public_url === null) return undefined;
      return { id: gateway.spiffe_id, name: gateway.name, publicUrl: gateway.public_url };
    },
    dpop: {
      maxAgeSeconds: context.config.dpop_proof_max_age_seconds,
      maxFutureSeconds: context.config.dpop_proof_max_future_seconds,
      clockSkewSeconds: context.config.clock_skew_seconds,
    },
  });
}
