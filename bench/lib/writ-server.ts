import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { access, mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { AdminClient, readKeyFile } from "../../src/cli/admin-client.js";
import { freeLoopbackPort } from "./ports.js";

/**
 * The built command-line entry point. Both `writ init` and `writ server` run from the build, as in an
 * installation, so the data directory always matches the server's schema even when src/ is ahead.
 */
const cliEntry = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/**
 * The file `writ server` writes into its data directory once it listens (`serverFileName` in
 * src/server/serve.ts). It is not imported, because that module loads the whole server from src/.
 */
const serverFileName = "server.json";

const startTimeoutMs = 15_000;
const stopTimeoutMs = 10_000;

/** A writ server running as a separate process on loopback, with a fresh data directory. */
export interface WritServerProcess {
  issuer: string;
  pid: number;
  /** The server's operational log: its standard output and standard error. */
  logFile: string;
  /** An API client signed in as the installation's first admin. */
  admin: AdminClient;
  /** Stops the server with SIGTERM, waits for it to exit, and removes its data directory. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** When set, the server runs with `--cpu-prof` and writes its profile into this folder on exit. */
  cpuProfileDir?: string;
}

/**
 * Initialises a data directory in a temporary folder with `writ init` and starts `writ server` on it,
 * listening on a free loopback port. Resolves once the server has written its server file, which it
 * does after it started listening. Throws Error with the end of the server's log when it exits first.
 */
export async function startWritServer(options: StartOptions = {}): Promise<WritServerProcess> {
  try {
    await access(cliEntry);
  } catch {
    throw new Error(`"${cliEntry}" is missing: run \`npm run build\` first, or run \`npm run bench\``);
  }

  const root = await mkdtemp(join(tmpdir(), "writ-bench-"));
  const dataDir = join(root, "data");
  const adminKeyFile = join(root, "admin-key.json");
  const logFile = join(root, "server.log");
  const port = await freeLoopbackPort();
  try {
    // prettier-ignore
    await promisify(execFile)(process.execPath, [
      cliEntry, "--data", dataDir, "init",
      "--trust-domain", "bench.example",
      "--listen", `127.0.0.1:${port}`,
      "--admin-name", "Bench Admin",
      "--admin-key-out", adminKeyFile,
    ]);
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    throw new Error(`\`writ init\` failed: ${(error as Error).message}`, { cause: error });
  }

  const log = await open(logFile, "w");
  const profileFlags =
    options.cpuProfileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", options.cpuProfileDir];
  const child = spawn(process.execPath, [...profileFlags, cliEntry, "--data", dataDir, "server"], {
    stdio: ["ignore", log.fd, log.fd],
  });
  await log.close();

  const stop = async (): Promise<void> => {
    await stopProcess(child);
    await rm(root, { recursive: true, force: true });
  };

  try {
    const record = await waitForServerFile(child, join(dataDir, serverFileName), logFile);
    const admin = await AdminClient.connect({ issuer: record.url, key: await readKeyFile(adminKeyFile) });
    return { issuer: record.url, pid: child.pid as number, logFile, admin, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Waits until the server file at `path` contains a complete JSON document, and returns it. */
async function waitForServerFile(
  child: ChildProcess,
  path: string,
  logFile: string,
): Promise<{ url: string }> {
  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = (await readFile(logFile, "utf8")).split("\n").slice(-20).join("\n");
      throw new Error(`the writ server exited before it started listening; end of its log:\n${tail}`);
    }
    try {
      return JSON.parse(await readFile(path, "utf8")) as { url: string };
    } catch {
      // The file is missing until the server listens, and may be read half written just after.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`the writ server did not start listening within ${startTimeoutMs} ms; see ${logFile}`);
}

/** Sends SIGTERM and waits for the exit. Sends SIGKILL when the process outlives the timeout. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
