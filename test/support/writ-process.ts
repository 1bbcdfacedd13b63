import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { AdminClient, readKeyFile } from "../../src/cli/admin-client.js";
import { freePort } from "./broker.js";

const execFileAsync = promisify(execFile);

/** The built CLI; these helpers run it as an operator would, so `npm run build` must come first. */
export const cliPath = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/** How much of a process's combined stdout and stderr is kept for failure messages, in characters. */
const outputTailChars = 16_000;
/** How long a stopping process may take after SIGTERM before it gets SIGKILL. */
const stopTimeoutMs = 10_000;
/** Interval between two polls of a health endpoint. */
const pollIntervalMs = 50;

/** Fails with a clear message when the CLI has not been built. */
export function requireBuiltCli(): void {
  assert.ok(existsSync(cliPath), `${cliPath} is missing: run npm run build first`);
}

/** A writ CLI process started by a test. */
export interface WritProcess {
  child: ChildProcess;
  /** Returns the tail of the process's stdout and stderr. */
  output(): string;
  /** Sends SIGTERM and resolves once the process exited; sends SIGKILL if it outlives the timeout. */
  stop(): Promise<void>;
}

/** Spawns `node dist/cli/main.js ARGS` with its output collected in memory. */
export function spawnWrit(args: string[]): WritProcess {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let tail = "";
  const collect = (chunk: Buffer): void => {
    tail = (tail + chunk.toString("utf8")).slice(-outputTailChars);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return {
    child,
    output: () => tail,
    stop: () => stopProcess(child),
  };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs);
  await exited;
  clearTimeout(timer);
}

/** Resolves with the exit code once the process exits, or with undefined when it is still running after `timeoutMs`. */
export async function exitCodeWithin(
  watched: WritProcess,
  timeoutMs: number,
): Promise<number | null | undefined> {
  const { child } = watched;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Runs the CLI to completion with `--json` and returns its parsed output. */
export async function runWritJson<T>(args: string[]): Promise<T> {
  const { stdout } = await execFileAsync(process.execPath, [cliPath, "--json", ...args], {
    timeout: 60_000,
  });
  return JSON.parse(stdout) as T;
}

/**
 * Polls `url` until it responds with `status`, for at most `timeoutMs`; returns the milliseconds it took.
 * Fails with the output of `watched` when that process exits or the time runs out first.
 */
export async function waitForStatus(
  url: string,
  status: number,
  timeoutMs: number,
  watched?: WritProcess,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (watched !== undefined) {
      assert.equal(watched.child.exitCode, null, `the process exited early:\n${watched.output()}`);
    }
    const answered = await fetch(url).then(
      async (response) => {
        await response.body?.cancel();
        return response.status;
      },
      () => undefined,
    );
    const elapsed = performance.now() - started;
    if (answered === status) return elapsed;
    assert.ok(
      elapsed < timeoutMs,
      `${url} returned ${String(answered)}, not ${status}, for ${timeoutMs} ms\n${watched?.output() ?? ""}`,
    );
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
}

/** A broker installation made by `writ init`, whose server process tests start and stop. */
export interface BrokerInstallation {
  dataDir: string;
  adminKeyFile: string;
  port: number;
  issuer: string;
}

/** Initialises a broker under `root` on a free loopback port, without starting it. */
export async function initBroker(root: string): Promise<BrokerInstallation> {
  const dataDir = join(root, "broker");
  const adminKeyFile = join(root, "admin-key.json");
  const port = await freePort();
  const { issuer } = await runWritJson<{ issuer: string }>([
    "--data",
    dataDir,
    "init",
    "--trust-domain",
    "example.org",
    "--listen",
    `127.0.0.1:${port}`,
    "--admin-key-out",
    adminKeyFile,
  ]);
  return { dataDir, adminKeyFile, port, issuer };
}

/** Starts `writ server` on an installation and resolves once its `/healthz` returns 200. */
export async function startBrokerProcess(installation: BrokerInstallation): Promise<WritProcess> {
  const broker = spawnWrit(["--data", installation.dataDir, "server"]);
  try {
    await waitForStatus(`${installation.issuer}/healthz`, 200, 30_000, broker);
  } catch (error) {
    await broker.stop();
    throw error;
  }
  return broker;
}

/** Connects an admin API client with the installation's first admin key. */
export async function connectAdmin(installation: BrokerInstallation): Promise<AdminClient> {
  return AdminClient.connect({
    issuer: installation.issuer,
    key: await readKeyFile(installation.adminKeyFile),
  });
}

/**
 * Registers a gateway with `writ gateway add` against the running server, with `--public-url` when
 * `publicUrl` is given; returns its SPIFFE ID.
 */
export async function addGateway(
  installation: BrokerInstallation,
  name: string,
  keyFile: string,
  publicUrl?: string,
): Promise<string> {
  const added = await runWritJson<{ spiffe_id: string }>([
    "--data",
    installation.dataDir,
    "--admin-key",
    installation.adminKeyFile,
    "gateway",
    "add",
    name,
    "--key-out",
    keyFile,
    ...(publicUrl === undefined ? [] : ["--public-url", publicUrl]),
  ]);
  return added.spiffe_id;
}

/** Options of one `writ gateway` process. */
export interface GatewayProcessOptions {
  brokerUrl: string;
  keyFile: string;
  /** The gateway's own data directory, which contains its audit spool. */
  dataDir: string;
  port: number;
  silenceBoundSeconds?: number;
}

/** Starts `writ gateway`; it does not wait, because a gateway without its broker never becomes healthy. */
export function spawnGateway(options: GatewayProcessOptions): WritProcess {
  return spawnWrit([
    "--data",
    options.dataDir,
    "gateway",
    "--broker",
    options.brokerUrl,
    "--key",
    options.keyFile,
    "--listen",
    `127.0.0.1:${options.port}`,
    ...(options.silenceBoundSeconds === undefined
      ? []
      : ["--silence-bound", String(options.silenceBoundSeconds)]),
  ]);
}
