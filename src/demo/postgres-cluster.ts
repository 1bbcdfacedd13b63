import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freeLoopbackPort } from "./setup.js";

const execFileAsync = promisify(execFile);

/** The cluster's superuser, which PostgreSQL also needs as the system user when writ runs as root. */
const superuser = "postgres";
/** The database the demo's agent reads. */
export const demoDatabase = "reports";
/** The role writ manages the demo's cluster with: it may create roles, and nothing more. */
export const managementRole = "writ_manager";
/** The group role whose privileges each task role of the demo gets. */
export const readerGroup = "report_reader";
/** Maximum time pg_ctl waits for the server to start or stop, in seconds. */
const pgCtlWaitSeconds = 30;

/** A throwaway PostgreSQL cluster on a loopback port, prepared for the demo. */
export interface DemoCluster {
  port: number;
  /** The management role's password, which the demo stores as a writ secret. */
  managementPassword: string;
  /** Returns `postgres://ROLE@127.0.0.1:PORT/reports`, without a password. */
  dsn(role: string): string;
  /** Returns whether a role exists on the cluster, queried as the superuser. */
  roleExists(role: string): Promise<boolean>;
  /** Stops the server and deletes the cluster's folder. */
  stop(): Promise<void>;
}

/**
 * Creates and starts a cluster with the programs in `binDir`: SCRAM-SHA-256 password authentication
 * on 127.0.0.1 only, a `reports` database with a `weekly.summaries` table readable by the group role
 * `report_reader`, and the management role `writ_manager`. That role has CREATEROLE, membership in
 * pg_signal_backend and ADMIN OPTION on `report_reader`, which is what writ needs to create and drop
 * per-task roles. PostgreSQL refuses to run as root, so a root process runs the programs as the
 * `postgres` system user.
 */
export async function startDemoCluster(binDir: string): Promise<DemoCluster> {
  const owner = process.getuid?.() === 0 ? await systemUser(superuser) : undefined;
  const runuser = owner === undefined ? "" : runuserPath();
  const root = await mkdtemp(join(tmpdir(), "writ-demo-pg-"));
  if (owner !== undefined) await chown(root, owner.uid, owner.gid);
  const dataDir = join(root, "data");
  const logFile = join(root, "server.log");
  const run = (program: string, args: string[]): Promise<unknown> =>
    owner === undefined
      ? execFileAsync(join(binDir, program), args, { cwd: root })
      : execFileAsync(runuser, ["-u", superuser, "--", join(binDir, program), ...args], { cwd: root });

  const password = randomBytes(24).toString("base64url");
  const managementPassword = randomBytes(24).toString("base64url");
  let started = false;
  let stopping: Promise<void> | undefined;
  try {
    const passwordFile = join(root, "superuser-password");
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    await chmod(passwordFile, 0o600);
    if (owner !== undefined) await chown(passwordFile, owner.uid, owner.gid);
    try {
      await run("initdb", [
        "--auth=scram-sha-256",
        `--username=${superuser}`,
        `--pwfile=${passwordFile}`,
        "--no-locale",
        "--encoding=UTF8",
        // A throwaway cluster needs no crash safety.
        "--no-sync",
        "-D",
        dataDir,
      ]);
    } finally {
      await rm(passwordFile, { force: true });
    }

    const port = await freeLoopbackPort();
    // The socket goes into the cluster's own folder, so the demo never touches a system cluster's.
    const serverOptions = `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off`;
    try {
      await run("pg_ctl", [
        "start",
        "-D",
        dataDir,
        "-l",
        logFile,
        "-w",
        "-t",
        `${pgCtlWaitSeconds}`,
        "-o",
        serverOptions,
      ]);
    } catch (error) {
      const log = await readFile(logFile, "utf8").catch(() => "");
      throw new Error(`PostgreSQL failed to start: ${log.trim().split("\n").slice(-3).join(" ")}`, {
        cause: error,
      });
    }
    started = true;

    const connect = async (database: string): Promise<pg.Client> => {
      const client = new pg.Client({ host: "127.0.0.1", port, user: superuser, password, database });
      await client.connect();
      return client;
    };
    await prepare(connect, managementPassword);
    return {
      port,
      managementPassword,
      dsn: (role) => `postgres://${role}@127.0.0.1:${port}/${demoDatabase}`,
      async roleExists(role) {
        const client = await connect("postgres");
        try {
          return (await client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [role])).rowCount === 1;
        } finally {
          await client.end();
        }
      },
      stop: () => {
        stopping ??= removeCluster(run, root, dataDir, started);
        return stopping;
      },
    };
  } catch (error) {
    await removeCluster(run, root, dataDir, started).catch(() => {});
    throw error;
  }
}

/** Creates the demo's database, its table, the group role and the management role. */
async function prepare(
  connect: (database: string) => Promise<pg.Client>,
  managementPassword: string,
): Promise<void> {
  const admin = await connect("postgres");
  try {
    await admin.query(`CREATE DATABASE ${demoDatabase}`);
    await admin.query(`CREATE ROLE ${readerGroup} NOLOGIN`);
    // CREATE ROLE takes no query parameters, so the password is sent as an escaped literal.
    await admin.query(
      `CREATE ROLE ${managementRole} LOGIN CREATEROLE PASSWORD ${admin.escapeLiteral(managementPassword)}`,
    );
    await admin.query(`GRANT pg_signal_backend TO ${managementRole}`);
    await admin.query(`GRANT ${readerGroup} TO ${managementRole} WITH ADMIN OPTION`);
  } finally {
    await admin.end();
  }
  const reports = await connect(demoDatabase);
  try {
    await reports.query("CREATE SCHEMA weekly");
    await reports.query("CREATE TABLE weekly.summaries (week text PRIMARY KEY, incidents integer NOT NULL)");
    await reports.query("INSERT INTO weekly.summaries VALUES ('2026-W48', 1), ('2026-W49', 0)");
    await reports.query(`GRANT USAGE ON SCHEMA weekly TO ${readerGroup}`);
    await reports.query(`GRANT SELECT ON ALL TABLES IN SCHEMA weekly TO ${readerGroup}`);
  } finally {
    await reports.end();
  }
}

async function removeCluster(
  run: (program: string, args: string[]) => Promise<unknown>,
  root: string,
  dataDir: string,
  started: boolean,
): Promise<void> {
  if (started) await run("pg_ctl", ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", `${pgCtlWaitSeconds}`]);
  await rm(root, { recursive: true, force: true });
}

/** Returns the path of runuser(1), which root's PATH may lack when it has no sbin folder. */
function runuserPath(): string {
  const folders = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin"];
  for (const folder of folders) {
    if (folder === "") continue;
    try {
      accessSync(join(folder, "runuser"), constants.X_OK);
      return join(folder, "runuser");
    } catch {
      // Not in this folder.
    }
  }
  throw new Error(
    `PostgreSQL does not run as root, and runuser, needed to run it as "${superuser}", was not found`,
  );
}

async function systemUser(name: string): Promise<{ uid: number; gid: number }> {
  try {
    const uid = Number((await execFileAsync("id", ["-u", name])).stdout.trim());
    const gid = Number((await execFileAsync("id", ["-g", name])).stdout.trim());
    return { uid, gid };
  } catch (error) {
    throw new Error(`PostgreSQL does not run as root, and the system user "${name}" was not found`, {
      cause: error,
    });
  }
}
