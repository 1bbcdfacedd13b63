import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AdminClient } from "../../src/cli/admin-client.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import { freeLoopbackPort } from "./ports.js";

const cliEntry = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const startTimeoutMs = 30_000;
const stopTimeoutMs = 10_000;

/** A `writ gateway` process run apart from the broker, on loopback. */
export interface WritGatewayProcess {
  /** `http://127.0.0.1:PORT`: the gateway's public URL, from which proofs' `htu` are built. */
  url: string;
  /** Stops the gateway with SIGTERM, waits for it to exit, and removes its folder. */
  stop(): Promise<void>;
}

/**
 * Registers a gateway identity named `name` through the admin API. Tools that name it in their
 * `gateways` can then be served by the process that `startWritGateway` starts with the key file.
 * Returns the path of the key file, which contains the private key, in a new temporary folder.
 */
export async function registerGateway(admin: AdminClient, name: string): Promise<string> {
  const key = await generateIdentityKey("Ed25519");
  const registered = await admin.call<{ spiffe_id: string }>("POST", "/v1/gateways", {
    name,
    public_jwk: key.publicJwk,
  });
  const folder = await mkdtemp(join(tmpdir(), "writ-bench-gateway-"));
  const keyFile = join(folder, "gateway-key.json");
  await writeFile(keyFile, JSON.stringify({ ...key.privateJwk, client_id: registered.spiffe_id }), {
    mode: 0o600,
    flag: "wx",
  });
  return keyFile;
}

/**
 * Starts `writ gateway --broker BROKER --key KEYFILE` on a free loopback port, with its data folder
 * beside the key file. Resolves once `/healthz` returns 200, which the gateway does only while it has
 * heard from the broker's revocation feed within its bound. Throws Error with the end of the
 * gateway's log when it exits or does not become healthy in time.
 */
export async function startWritGateway(brokerUrl: string, keyFile: string): Promise<WritGatewayProcess> {
  const folder = join(keyFile, "..");
  const logFile = join(folder, "gateway.log");
  const port = await freeLoopbackPort();
  const log = await open(logFile, "w");
  const child = spawn(
    process.execPath,
    [
      cliEntry,
      "--data",
      join(folder, "data"),
      "gateway",
      "--broker",
      brokerUrl,
      "--key",
      keyFile,
      "--listen",
      `127.0.0.1:${port}`,
    ],
    { stdio: ["ignore", log.fd, log.fd] },
  );
  await log.close();
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    }
    await rm(folder, { recursive: true, force: true });
  };

  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    const status = await fetch(`${url}/healthz`).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) return { url, stop };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const tail = (await readFile(logFile, "utf8")).split("\n").slice(-20).join("\n");
  await stop();
  throw new Error(`the writ gateway did not become healthy; end of its log:\n${tail}`);
}
