import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch, type RequestInit as UndiciRequestInit } from "undici";
import { initialise } from "../../src/broker/init.js";
import { AdminClient, readKeyFile, type Fetch } from "../../src/cli/admin-client.js";
import type { Clock } from "../../src/clock.js";
import { configFileName } from "../../src/config/config.js";
import { silentLogger } from "../../src/log/logger.js";
import { serve, type RunningServer } from "../../src/server/serve.js";

/** A broker for tests: a fresh data directory, a real listener on loopback, and its first admin. */
export interface TestBroker {
  dataDir: string;
  issuer: string;
  adminKeyFile: string;
  admin: AdminClient;
  server: RunningServer;
  /**
   * The fetch that clients of this broker use: the global one for an http broker, and one that
   * trusts the test CA for a TLS broker. oauth4webapi takes it as its `customFetch` option.
   */
  fetch: Fetch;
  /** Stops the server and removes the data directory. */
  close(): Promise<void>;
}

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** The TLS files of a broker that serves https, and the CA certificate its clients trust. */
export interface TestBrokerTls {
  certFile: string;
  keyFile: string;
  /** The PEM certificate of the CA that signed `certFile`. */
  ca: string;
}

/**
 * Returns a fetch that trusts only `ca` for https and hands back the global `Response` class, which
 * `AdminClient` checks with `instanceof`. `close` releases its connections.
 */
export function fetchTrusting(ca: string): { fetch: Fetch; close(): Promise<void> } {
  const dispatcher = new Agent({ connect: { ca } });
  return {
    async fetch(url, init) {
      const response = await undiciFetch(url, { ...(init as UndiciRequestInit), dispatcher });
      return new Response(response.body as ReadableStream<Uint8Array> | null, {
        status: response.status,
        statusText: response.statusText,
        headers: [...response.headers],
      });
    },
    close: () => dispatcher.close(),
  };
}

/**
 * Initialises and starts a broker. With `postgresUrl`, the store is that PostgreSQL database, read
 * through an environment variable as a real installation would. With `tls`, the broker serves https
 * with those files, so it also requests a client certificate from callers, and its issuer is https.
 */
export async function startTestBroker(
  options: {
    postgresUrl?: string;
    trustDomain?: string;
    tls?: TestBrokerTls;
    /** The broker's clock, such as a ManualClock for expiry windows. */
    clock?: Clock;
    /** Configuration keys written into `writ.json` over the ones `writ init` wrote. */
    config?: Record<string, unknown>;
  } = {},
): Promise<TestBroker> {
  const root = await mkdtemp(join(tmpdir(), "writ-test-"));
  const dataDir = join(root, "data");
  const adminKeyFile = join(root, "admin-key.json");
  const port = await freePort();
  let store: { kind: "postgres"; url_env: string } | undefined;
  if (options.postgresUrl !== undefined) {
    const variable = `WRIT_TEST_PG_${port}`;
    process.env[variable] = options.postgresUrl;
    store = { kind: "postgres", url_env: variable };
  }

  await initialise({
    dataDir,
    trustDomain: options.trustDomain ?? "example.org",
    listen: `127.0.0.1:${port}`,
    ...(options.tls === undefined ? {} : { publicUrl: `https://127.0.0.1:${port}` }),
    adminName: "Test Admin",
    adminKeyOut: adminKeyFile,
    ...(store === undefined ? {} : { store }),
  });

  if (options.config !== undefined) {
    const configFile = join(dataDir, configFileName);
    const written = JSON.parse(await readFile(configFile, "utf8")) as Record<string, unknown>;
    await writeFile(configFile, JSON.stringify({ ...written, ...options.config }));
  }

  const server = await serve({
    dataDir,
    log: silentLogger(),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.tls === undefined ? {} : { tlsCert: options.tls.certFile, tlsKey: options.tls.keyFile }),
  });
  const issuer = server.broker.context.issuer;

  const client: { fetch: Fetch; close(): Promise<void> } =
    options.tls === undefined
      ? { fetch: (url, init) => fetch(url, init), close: async () => {} }
      : fetchTrusting(options.tls.ca);
  const admin = await AdminClient.connect({
    issuer,
    key: await readKeyFile(adminKeyFile),
    fetch: client.fetch,
  });

  return {
    dataDir,
    issuer,
    adminKeyFile,
    admin,
    server,
    fetch: client.fetch,
    async close() {
      await server.close();
      await client.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}
