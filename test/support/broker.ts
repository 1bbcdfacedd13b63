import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initialise } from "../../src/broker/init.js";
import { AdminClient, readKeyFile } from "../../src/cli/admin-client.js";
import { silentLogger } from "../../src/log/logger.js";
import { serve, type RunningServer } from "../../src/server/serve.js";

/** A broker for tests: a fresh data directory, a real listener on loopback, and its first admin. */
export interface TestBroker {
  dataDir: string;
  issuer: string;
  adminKeyFile: string;
  admin: AdminClient;
  server: RunningServer;
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

/**
 * Initialises and starts a broker. With `postgresUrl`, the store is that PostgreSQL database, read
 * through an environment variable as a real installation would.
 */
export async function startTestBroker(
  options: { postgresUrl?: string; trustDomain?: string } = {},
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
    adminName: "Test Admin",
    adminKeyOut: adminKeyFile,
    ...(store === undefined ? {} : { store }),
  });
  const server = await serve({ dataDir, log: silentLogger() });
  const issuer = server.broker.context.issuer;
  const admin = await AdminClient.connect({ issuer, key: await readKeyFile(adminKeyFile) });
  return {
    dataDir,
    issuer,
    adminKeyFile,
    admin,
    server,
    async close() {
      await server.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}
