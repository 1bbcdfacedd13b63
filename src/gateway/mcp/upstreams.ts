import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { chown, mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Logger } from "pino";
import { epochSeconds, type Clock } from "../../clock.js";
import { logFields } from "../../log/fields.js";
import { renderTemplate } from "../../tools/http-config.js";
import type { McpToolConfig } from "../../tools/mcp-config.js";
import type { GatewayBackend } from "../backend.js";
import { ChildProcessTransport } from "./child-transport.js";

/** Default largest number of upstream connections (stdio processes included) open at once. */
export const defaultMaxUpstreams = 32;
/** Default time after its last request at which a task's upstream is stopped; its folder stays. */
export const defaultUpstreamIdleMs = 5 * 60_000;
/** Interval at which ended tasks and idle upstreams are looked for. */
const sweepIntervalMs = 1_000;

export interface UpstreamPoolOptions {
  backend: GatewayBackend;
  clock: Clock;
  log: Logger;
  maxUpstreams?: number;
  idleMs?: number;
  /** The folder under which per-task folders are made; a fresh private temporary folder by default. */
  rootDir?: string;
}

/** The private folders of one task's server: working folder, home, temporary files and state. */
export interface TaskFolders {
  root: string;
  work: string;
  home: string;
  tmp: string;
  state: string;
}

interface Session {
  taskId: string;
  deadlineS: number;
  client: Promise<Client>;
  lastUsedMs: number;
  inFlight: number;
}

/** Raised when the connection limit is reached; the agent gets an MCP error and may retry. */
export class UpstreamLimitError extends Error {}

/**
 * The gateway's MCP client side: one connection per tool and task, started on first use, stopped when
 * idle, and stopped with its folders removed when the task ends (revocation feed or deadline). The
 * gateway's client declares no capabilities, so an upstream has no roots, sampling or elicitation to
 * ask for; the SDK responds to any such request from the server with "method not found".
 */
export class UpstreamPool {
  private readonly sessions = new Map<string, Session>();
  /** Tasks with folders on disk, with their deadlines in epoch seconds. */
  private readonly tasks = new Map<string, number>();
  private readonly root: string;
  private readonly timer: NodeJS.Timeout;
  private readonly maxUpstreams: number;
  private readonly idleMs: number;

  constructor(private readonly options: UpstreamPoolOptions) {
    this.maxUpstreams = options.maxUpstreams ?? defaultMaxUpstreams;
    this.idleMs = options.idleMs ?? defaultUpstreamIdleMs;
    this.root = options.rootDir ?? mkdtempSync(join(tmpdir(), "writ-mcp-"));
    this.timer = setInterval(() => void this.sweep(), sweepIntervalMs);
    this.timer.unref();
  }

  /**
   * Runs `call` with the connected client for `tool` in `taskId`, starting the upstream when none
   * runs. A connection that closed (a crashed server) is dropped, so the next call starts a new one.
   */
  async use<T>(
    tool: string,
    config: McpToolConfig,
    task: { id: string; deadlineS: number },
    call: (client: Client) => Promise<T>,
  ): Promise<T> {
    const key = `${tool}\u0000${task.id}`;
    let session = this.sessions.get(key);
    if (session === undefined) {
      if (this.sessions.size >= this.maxUpstreams) {
        throw new UpstreamLimitError(`${this.sessions.size} upstream connections are open, the limit`);
      }
      const created: Session = {
        taskId: task.id,
        deadlineS: task.deadlineS,
        client: Promise.resolve(undefined as never),
        lastUsedMs: 0,
        inFlight: 0,
      };
      created.client = this.connect(tool, config, task.id, () => {
        if (this.sessions.get(key) === created) this.sessions.delete(key);
      });
      created.client.catch(() => {
        if (this.sessions.get(key) === created) this.sessions.delete(key);
      });
      this.sessions.set(key, created);
      this.tasks.set(task.id, task.deadlineS);
      session = created;
    }
    session.inFlight += 1;
    session.lastUsedMs = this.options.clock.nowMs();
    try {
      return await call(await session.client);
    } finally {
      session.inFlight -= 1;
      session.lastUsedMs = this.options.clock.nowMs();
    }
  }

  /** Returns the paths of the folders of `taskId`'s server of `tool`, which may not exist yet. */
  folderPaths(tool: string, taskId: string): TaskFolders {
    const root = join(this.root, taskFolderName(taskId), tool);
    return {
      root,
      work: join(root, "work"),
      home: join(root, "home"),
      tmp: join(root, "tmp"),
      state: join(root, "state"),
    };
  }

  /** Creates the folders of `taskId`'s server of `tool`; they are removed at task end. */
  private async folders(
    tool: string,
    taskId: string,
    owner?: { uid: number; gid: number },
  ): Promise<TaskFolders> {
    const folders = this.folderPaths(tool, taskId);
    for (const folder of [folders.work, folders.home, folders.tmp, folders.state]) {
      await mkdir(folder, { recursive: true, mode: 0o700 });
      if (owner !== undefined) await chown(folder, owner.uid, owner.gid);
    }
    if (owner !== undefined) await chown(folders.root, owner.uid, owner.gid);
    return folders;
  }

  /** Stops every upstream of `taskId` and deletes its folders. */
  async endTask(taskId: string): Promise<void> {
    const stopping: Promise<void>[] = [];
    for (const [key, session] of this.sessions) {
      if (session.taskId !== taskId) continue;
      this.sessions.delete(key);
      stopping.push(closeQuietly(session.client));
    }
    await Promise.all(stopping);
    this.tasks.delete(taskId);
    if (this.root !== undefined)
      await rm(join(this.root, taskFolderName(taskId)), { recursive: true, force: true });
    this.options.log.info({ [logFields.taskId]: taskId }, "mcp upstreams of task stopped");
  }

  /** Returns the number of open upstream connections. */
  size(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.tasks.keys()].map((taskId) => this.endTask(taskId)));
    if (this.root !== undefined && this.options.rootDir === undefined)
      await rm(this.root, { recursive: true, force: true });
  }

  private async sweep(): Promise<void> {
    const nowS = epochSeconds(this.options.clock);
    for (const [taskId, deadlineS] of this.tasks) {
      const ended = this.options.backend.revocations.revocationOf({
        jti: "",
        task_id: taskId,
        identities: [],
        iat: 0,
      });
      if (ended !== undefined || nowS >= deadlineS) await this.endTask(taskId);
    }
    const nowMs = this.options.clock.nowMs();
    for (const [key, session] of this.sessions) {
      if (session.inFlight === 0 && nowMs - session.lastUsedMs >= this.idleMs) {
        this.sessions.delete(key);
        await closeQuietly(session.client);
      }
    }
  }

  private async connect(
    tool: string,
    config: McpToolConfig,
    taskId: string,
    onClosed: () => void,
  ): Promise<Client> {
    const log = this.options.log.child({ [logFields.taskId]: taskId, tool });
    const client = new Client({ name: "writ-gateway", version: "1" }, { capabilities: {} });
    client.onclose = () => {
      onClosed();
      log.info("mcp upstream connection closed");
    };
    client.onerror = (error) => log.info({ err: error }, "mcp upstream transport error");

    if (config.upstream !== undefined) {
      const headers = await this.injectedHeaders(tool, config);
      await client.connect(
        new StreamableHTTPClientTransport(new URL(config.upstream), { requestInit: { headers } }),
        {
          timeout: config.timeout_ms,
        },
      );
      return client;
    }

    const owner = config.run_as === undefined ? undefined : userIds(config.run_as);
    const folders = await this.folders(tool, taskId, owner);
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: folders.home,
      TMPDIR: folders.tmp,
    };
    for (const statePath of config.state_paths) env[statePath.name] = join(folders.state, statePath.file);
    for (const variable of config.env) {
      const values = new Map<string, string>();
      for (const name of variable.secrets) values.set(name, await this.options.backend.secret(tool, name));
      env[variable.name] = renderTemplate(variable.template, values);
    }
    const credential =
      config.system === undefined ? undefined : await this.systemCredential(config.system, taskId);
    if (credential !== undefined) env.PGPASSWORD = credential.password;
    const argv = (config.command ?? []).map((part) =>
      part.replaceAll("${task_dir}", folders.work).replaceAll("${system_url}", credential?.url ?? ""),
    );
    const transport = new ChildProcessTransport({
      argv,
      env,
      cwd: folders.work,
      ...(owner === undefined ? {} : owner),
      onStderr: (line) => log.info({ stderr: line.slice(0, 2000) }, "mcp upstream stderr"),
    });
    await client.connect(transport, { timeout: config.timeout_ms });
    log.info({ pid: transport.pid }, "mcp upstream started");
    return client;
  }

  /** Fetches the task's own credential on `system`, which only an embedded gateway's backend has. */
  private async systemCredential(system: string, taskId: string): Promise<{ url: string; password: string }> {
    const fetchCredential = this.options.backend.systemCredential?.bind(this.options.backend);
    if (fetchCredential === undefined) {
      throw new Error(
        `only the gateway embedded in the broker can inject the credential of system "${system}"`,
      );
    }
    return fetchCredential(system, taskId);
  }

  private async injectedHeaders(tool: string, config: McpToolConfig): Promise<Record<string, string>> {
    const values = new Map<string, string>();
    for (const rule of config.inject)
      for (const name of rule.secrets)
        if (!values.has(name)) values.set(name, await this.options.backend.secret(tool, name));
    const headers: Record<string, string> = {};
    for (const rule of config.inject) {
      const value = renderTemplate(rule.template, values);
      if (rule.location === "header") headers[rule.name.toLowerCase()] = value;
      if (rule.location === "basic")
        headers.authorization = `Basic ${Buffer.from(`${rule.name}:${value}`).toString("base64")}`;
    }
    return headers;
  }
}

/** Task ids become folder names through a hash, so no id can name a path outside the root. */
function taskFolderName(taskId: string): string {
  return createHash("sha256").update(taskId).digest("hex").slice(0, 32);
}

function userIds(user: string): { uid: number; gid: number } {
  const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim());
  return { uid, gid };
}

async function closeQuietly(client: Promise<Client>): Promise<void> {
  try {
    await (await client).close();
  } catch {
    // A client that never connected has nothing to close.
  }
}
