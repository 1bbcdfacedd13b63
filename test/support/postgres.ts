// Throwaway PostgreSQL clusters for tests. Each cluster lives in its own temporary folder, listens
// only on 127.0.0.1 and requires SCRAM-SHA-256 password authentication for every connection, so
// tests exercise real password checks. PostgreSQL refuses to run as root, so when the test process
// is root the server binaries run as the `postgres` system user through runuser.

import { execFile, execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants as fsConstants, existsSync, readdirSync, rmSync } from "node:fs";
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const execFileAsync = promisify(execFile);

const HOST = "127.0.0.1";
const SUPERUSER = "postgres";
const DEFAULT_DATABASE = "postgres";
// PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes (63 in default builds).
const MAX_IDENTIFIER_BYTES = 63;
const START_ATTEMPTS = 3;
const START_TIMEOUT_SECONDS = 60;

export interface StartPostgresOptions {
  /** Receives progress lines (binary folder, port, start and stop). Nothing is logged without it. */
  log?: (line: string) => void;
}

export interface PostgresCluster {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** Superuser password, random per cluster. */
  readonly password: string;
  readonly database: string;
  /** Connection string for the `postgres` database, with the password included. */
  readonly url: string;
  /** PostgreSQL data directory (the `-D` folder). */
  readonly dataDir: string;
  /** Creates an empty database and returns its connection string. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server with a fast shutdown and deletes all files. Calling it again does nothing. */
  stop(): Promise<void>;
  /** Stops the server with a fast shutdown and keeps the data. Does nothing if it is already stopped. */
  stopServer(): Promise<void>;
  /** Starts the server again on the same port with the same data. Does nothing if it is running. */
  startServer(): Promise<void>;
  /** Runs stopServer then startServer. */
  restart(): Promise<void>;
}

interface Binaries {
  initdb: string;
  pgCtl: string;
}

interface PostgresUser {
  uid: number;
  gid: number;
}

/** Cluster state the process exit handler needs to clean up synchronously. */
interface LiveCluster {
  rootDir: string;
  dataDir: string;
  pgCtl: string;
  running: boolean;
}

const liveClusters = new Set<LiveCluster>();
let exitHandlersInstalled = false;

/**
 * Creates, starts and checks a new cluster. The caller must call `stop()`. A process exit handler
 * stops clusters that are still running, but it cannot run when the process is killed with SIGKILL.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresCluster> {
  const log = options.log ?? (() => {});
  const binaries = findBinaries();
  log(`postgres: using ${binaries.initdb} and ${binaries.pgCtl}`);

  const runAsPostgres = process.getuid?.() === 0;
  const owner = runAsPostgres ? lookUpPostgresUser() : undefined;

  const rootDir = await mkdtemp(join(tmpdir(), "writ-pg-"));
  const dataDir = join(rootDir, "data");
  const logFile = join(rootDir, "postgres.log");
  const live: LiveCluster = { rootDir, dataDir, pgCtl: binaries.pgCtl, running: false };
  liveClusters.add(live);
  installExitHandlers();

  const password = randomBytes(24).toString("hex");
  const run = (file: string, args: string[]) => runCommand(file, args, rootDir, runAsPostgres);

  try {
    if (owner) {
      await chown(rootDir, owner.uid, owner.gid);
    }
    await initCluster(binaries.initdb, rootDir, dataDir, password, owner, run);

    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await findFreePort();
      try {
        await startServerProcess(binaries.pgCtl, dataDir, rootDir, logFile, port, run);
        break;
      } catch (error) {
        // Another process can take the port between findFreePort closing it and the server binding
        // it, so a failed bind gets a new port.
        const serverLog = await readLogTail(logFile);
        if (attempt >= START_ATTEMPTS || !/could not bind|address already in use/i.test(serverLog)) {
          throw error;
        }
        log(`postgres: port ${port} was taken, trying another port`);
      }
    }
    live.running = true;
    log(`postgres: started on ${HOST}:${port} with data in ${dataDir}`);

    const url = buildUrl(port, password, DEFAULT_DATABASE);
    await querySelectOne(url);

    return createClusterHandle({ live, port, password, url, logFile, run, log });
  } catch (error) {
    // pg_ctl can give up waiting while the server keeps starting, and then the server must be stopped
    // before its folder goes.
    if (existsSync(join(dataDir, "postmaster.pid"))) {
      live.running = true;
    }
    try {
      await removeCluster(live, run);
    } catch (cleanupError) {
      // The start error explains the failure better. The exit handler retries the cleanup.
      log(`postgres: cleanup after a failed start failed: ${String(cleanupError)}`);
    }
    throw error;
  }
}

interface ClusterContext {
  live: LiveCluster;
  port: number;
  password: string;
  url: string;
  logFile: string;
  run: (file: string, args: string[]) => Promise<void>;
  log: (line: string) => void;
}

function createClusterHandle(context: ClusterContext): PostgresCluster {
  const { live, port, password, url, logFile, run, log } = context;
  let stopPromise: Promise<void> | undefined;

  const stopServer = async (): Promise<void> => {
    if (!live.running) {
      return;
    }
    await stopServerProcess(live, run);
    log(`postgres: stopped server on port ${port}`);
  };

  const startServer = async (): Promise<void> => {
    if (stopPromise || !liveClusters.has(live)) {
      throw new Error(`Cannot start PostgreSQL on port ${port}: stop() already removed the cluster`);
    }
    if (live.running) {
      return;
    }
    await startServerProcess(live.pgCtl, live.dataDir, live.rootDir, logFile, port, run);
    live.running = true;
    log(`postgres: started server on port ${port} again`);
  };

  return {
    host: HOST,
    port,
    user: SUPERUSER,
    password,
    database: DEFAULT_DATABASE,
    url,
    dataDir: live.dataDir,
    createDatabase: async (name) => {
      validateDatabaseName(name);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return buildUrl(port, password, name);
    },
    stop: () => {
      stopPromise ??= removeCluster(live, run).then(
        () => log(`postgres: removed cluster on port ${port}`),
        (error: unknown) => {
          // A failed stop can be retried by calling stop() again.
          stopPromise = undefined;
          throw error;
        },
      );
      return stopPromise;
    },
    stopServer,
    startServer,
    restart: async () => {
      await stopServer();
      await startServer();
    },
  };
}

/** Finds initdb and pg_ctl, preferring `pg_config --bindir`, then the newest Debian install, then PATH. */
function findBinaries(): Binaries {
  const candidates: string[] = [];

  try {
    candidates.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: "pipe" }).trim());
  } catch {
    // pg_config is missing or failed, so the other locations decide.
  }

  const debianRoot = "/usr/lib/postgresql";
  if (existsSync(debianRoot)) {
    const versions = readdirSync(debianRoot)
      .filter((entry) => /^\d+(\.\d+)?$/.test(entry))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((version) => join(debianRoot, version, "bin")));
  }

  for (const dir of candidates) {
    const initdb = join(dir, "initdb");
    const pgCtl = join(dir, "pg_ctl");
    if (isExecutable(initdb) && isExecutable(pgCtl)) {
      return { initdb, pgCtl };
    }
  }

  const initdb = findOnPath("initdb");
  const pgCtl = findOnPath("pg_ctl");
  if (initdb && pgCtl) {
    return { initdb, pgCtl };
  }

  const missing = [initdb ? undefined : "initdb", pgCtl ? undefined : "pg_ctl"].filter(Boolean).join(" and ");
  throw new Error(
    `PostgreSQL server binaries not found: ${missing} is missing from \`pg_config --bindir\`, ` +
      `/usr/lib/postgresql/*/bin and PATH. Install the PostgreSQL server (Debian: apt-get install postgresql) ` +
      `or add its bin folder to PATH.`,
  );
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const file = join(dir || ".", name);
    if (isExecutable(file)) {
      return file;
    }
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function lookUpPostgresUser(): PostgresUser {
  try {
    const uid = Number(execFileSync("id", ["-u", SUPERUSER], { encoding: "utf8", stdio: "pipe" }).trim());
    const gid = Number(execFileSync("id", ["-g", SUPERUSER], { encoding: "utf8", stdio: "pipe" }).trim());
    return { uid, gid };
  } catch (error) {
    throw new Error(
      `PostgreSQL refuses to run as root and the \`${SUPERUSER}\` system user was not found ` +
        `(\`id -u ${SUPERUSER}\` failed). Install the PostgreSQL server package, which creates it, ` +
        `or run the tests as a non-root user.`,
      { cause: error },
    );
  }
}

async function initCluster(
  initdb: string,
  rootDir: string,
  dataDir: string,
  password: string,
  owner: PostgresUser | undefined,
  run: (file: string, args: string[]) => Promise<void>,
): Promise<void> {
  const passwordFile = join(rootDir, "superuser-password");
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  // writeFile applies the mode only when it creates the file, and the umask can narrow it further.
  await chmod(passwordFile, 0o600);
  if (owner) {
    await chown(passwordFile, owner.uid, owner.gid);
  }

  try {
    await run(initdb, [
      "--auth-local=scram-sha-256",
      "--auth-host=scram-sha-256",
      `--username=${SUPERUSER}`,
      `--pwfile=${passwordFile}`,
      // A fixed locale keeps sorting and initdb itself independent of the host's LANG settings.
      "--no-locale",
      "--encoding=UTF8",
      // A throwaway cluster needs no crash safety, so initdb skips fsync to finish sooner.
      "--no-sync",
      "-D",
      dataDir,
    ]);
  } finally {
    // The server stores only the SCRAM verifier, so the plain-text file is not needed after initdb.
    await rm(passwordFile, { force: true });
  }
}

async function startServerProcess(
  pgCtl: string,
  dataDir: string,
  socketDir: string,
  logFile: string,
  port: number,
  run: (file: string, args: string[]) => Promise<void>,
): Promise<void> {
  // The Unix socket goes into the cluster's own folder so clusters never collide on /var/run/postgresql.
  // NOTE: Linux limits Unix socket paths to 107 bytes, so a very long TMPDIR makes the start fail.
  //
  // fsync=off and full_page_writes=off trade crash safety for speed. A fast or smart shutdown still
  // writes all data to disk, so stopServer/startServer keeps it.
  const serverOptions = [
    `-p ${port}`,
    `-k ${socketDir}`,
    `-c listen_addresses=${HOST}`,
    "-c fsync=off",
    "-c full_page_writes=off",
  ].join(" ");
  try {
    await run(pgCtl, [
      "start",
      "-D",
      dataDir,
      "-l",
      logFile,
      "-w",
      "-t",
      `${START_TIMEOUT_SECONDS}`,
      "-o",
      serverOptions,
    ]);
  } catch (error) {
    const serverLog = await readLogTail(logFile);
    throw new Error(
      `PostgreSQL failed to start on ${HOST}:${port}. Last lines of the server log:\n${serverLog}`,
      {
        cause: error,
      },
    );
  }
}

/** Runs a PostgreSQL binary, as the `postgres` user when the test process is root. */
async function runCommand(file: string, args: string[], cwd: string, runAsPostgres: boolean): Promise<void> {
  const [command, commandArgs] = runAsPostgres
    ? ["runuser", ["-u", SUPERUSER, "--", file, ...args]]
    : [file, args];
  try {
    // The working directory must be accessible to the postgres user, or initdb and pg_ctl print warnings.
    await execFileAsync(command, commandArgs, { cwd, encoding: "utf8" });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    const output = [stderr, stdout]
      .filter((text) => text && text.trim())
      .join("\n")
      .trim();
    throw new Error(`Command failed: ${command} ${commandArgs.join(" ")}\n${output}`, { cause: error });
  }
}

async function readLogTail(logFile: string): Promise<string> {
  try {
    const text = await readFile(logFile, "utf8");
    return text.split("\n").slice(-30).join("\n");
  } catch {
    return "(no server log written)";
  }
}

/** Returns a loopback port that was free when checked. Another process may take it before use. */
function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`Could not read the port of a listening socket on ${HOST}`));
        return;
      }
      server.close((error) => (error ? reject(error) : resolve(address.port)));
    });
  });
}

function buildUrl(port: number, password: string, database: string): string {
  return (
    `postgres://${encodeURIComponent(SUPERUSER)}:${encodeURIComponent(password)}` +
    `@${HOST}:${port}/${encodeURIComponent(database)}`
  );
}

async function querySelectOne(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ value: number }>("select 1 as value");
    if (result.rows[0]?.value !== 1) {
      throw new Error(
        `PostgreSQL check query returned ${JSON.stringify(result.rows)}, expected one row with 1`,
      );
    }
  } finally {
    await client.end();
  }
}

function validateDatabaseName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name, "utf8") > MAX_IDENTIFIER_BYTES || name.includes("\0")) {
    throw new Error(
      `Invalid database name ${JSON.stringify(name)}: expected 1 to ${MAX_IDENTIFIER_BYTES} bytes without NUL`,
    );
  }
}

async function stopServerProcess(
  live: LiveCluster,
  run: (file: string, args: string[]) => Promise<void>,
): Promise<void> {
  if (!live.running) {
    return;
  }
  await run(live.pgCtl, ["stop", "-D", live.dataDir, "-m", "fast", "-w", "-t", `${START_TIMEOUT_SECONDS}`]);
  live.running = false;
}

/**
 * Stops the server and deletes the cluster folder. If the stop fails, the folder stays and the
 * cluster stays registered, so the exit handler can still stop the server before deleting it.
 */
async function removeCluster(
  live: LiveCluster,
  run: (file: string, args: string[]) => Promise<void>,
): Promise<void> {
  await stopServerProcess(live, run);
  liveClusters.delete(live);
  await rm(live.rootDir, { recursive: true, force: true });
}

/**
 * Stops every cluster that is still running with an immediate shutdown and deletes its folder.
 * Exit handlers must be synchronous, so this uses spawnSync.
 */
function stopLiveClustersSync(): void {
  const runAsPostgres = process.getuid?.() === 0;
  for (const live of liveClusters) {
    if (live.running) {
      const args = ["stop", "-D", live.dataDir, "-m", "immediate", "-w"];
      const [command, commandArgs] = runAsPostgres
        ? ["runuser", ["-u", SUPERUSER, "--", live.pgCtl, ...args]]
        : [live.pgCtl, args];
      spawnSync(command, commandArgs, { cwd: live.rootDir, stdio: "ignore" });
      live.running = false;
    }
    rmSync(live.rootDir, { recursive: true, force: true });
    liveClusters.delete(live);
  }
}

function installExitHandlers(): void {
  if (exitHandlersInstalled) {
    return;
  }
  exitHandlersInstalled = true;
  process.on("exit", stopLiveClustersSync);

  // Node.js does not emit 'exit' when SIGINT or SIGTERM ends the process, which is how a test runner
  // or CI job usually cancels it. The handler cleans up, then re-sends the signal so the default
  // action ends the process, unless other code has its own handler for that signal.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = (): void => {
      stopLiveClustersSync();
      if (process.listenerCount(signal) === 0) {
        process.kill(process.pid, signal);
      }
    };
    process.once(signal, onSignal);
  }
}
