import { access, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { initialise } from "../broker/init.js";
import { AdminClient, readKeyFile } from "../cli/admin-client.js";
import { serve, type RunningServer } from "../server/serve.js";
import type { IdentityResult } from "./agent-protocol.js";
import type { AgentProcess } from "./agents.js";
import { ServerLog } from "./server-log.js";
import type { SampleApi } from "./upstream.js";

/** The trust domain of the demo's installation. */
export const demoTrustDomain = "demo.example";
/** The environment every demo tool, agent and task belongs to. */
export const demoEnvironment = "prod";

/** The folders of one demo run. */
export interface DemoPaths {
  dataDir: string;
  /** The folder beside the data directory with the admin key and the sample folder. */
  workDir: string;
  adminKeyFile: string;
  sampleDir: string;
  /** The temporary folder holding both, when no `--data` was given; removed unless kept. */
  temporaryRoot?: string;
}

/**
 * Chooses the demo's folders. With `dataDir`, the data directory is that folder and the admin key
 * and sample folder go to `<dataDir>-demo`, because writ keeps admin keys outside the data
 * directory. Without it, both live in a new temporary folder.
 */
export async function prepareDemoPaths(dataDir: string | undefined): Promise<DemoPaths> {
  if (dataDir === undefined) {
    const root = await mkdtemp(join(tmpdir(), "writ-demo-"));
    return { ...layout(join(root, "data"), root), temporaryRoot: root };
  }
  const absolute = resolve(dataDir);
  const workDir = `${absolute}-demo`;
  for (const existing of [join(absolute, "writ.json"), workDir]) {
    if (await exists(existing)) {
      throw new Error(
        `"${existing}" already exists: give --data a new folder, or remove "${absolute}" and "${workDir}"`,
      );
    }
  }
  return layout(absolute, workDir);
}

function layout(dataDir: string, workDir: string): DemoPaths {
  return {
    dataDir,
    workDir,
    adminKeyFile: join(workDir, "admin-key.json"),
    sampleDir: join(workDir, "sample"),
  };
}

/** The running broker and gateway, and the operator's admin client. */
export interface Installation {
  server: RunningServer;
  admin: AdminClient;
  issuer: string;
  serverLog: ServerLog;
}

/** Initialises an installation on a free loopback port and starts its broker with the embedded gateway. */
export async function startInstallation(paths: DemoPaths): Promise<Installation> {
  const port = await freeLoopbackPort();
  await mkdir(paths.workDir, { recursive: true, mode: 0o700 });
  await initialise({
    dataDir: paths.dataDir,
    trustDomain: demoTrustDomain,
    listen: `127.0.0.1:${port}`,
    adminName: "Demo Operator",
    adminKeyOut: paths.adminKeyFile,
  });
  const serverLog = new ServerLog();
  const server = await serve({ dataDir: paths.dataDir, log: serverLog.logger() });
  const issuer = server.broker.context.issuer;
  try {
    const admin = await AdminClient.connect({ issuer, key: await readKeyFile(paths.adminKeyFile) });
    return { server, admin, issuer, serverLog };
  } catch (error) {
    await server.close();
    throw error;
  }
}

/** Writes the folder that the filesystem MCP server is confined to. */
export async function writeSampleFolder(sampleDir: string): Promise<void> {
  await mkdir(join(sampleDir, "incidents"), { recursive: true });
  await writeFile(
    join(sampleDir, "runbook.md"),
    "# Export runbook\n\nWhen the nightly export misses data, rerun it for the missing hour.\n",
  );
  await writeFile(
    join(sampleDir, "incidents", "2026-11-30.md"),
    "Nightly export stopped at 23:00 UTC; the last hour was missing until a rerun.\n",
  );
}

/**
 * Registers the demo's three tools: the sample API as `tracker` with its credential stored as a
 * secret for the gateway to inject, and the filesystem and memory MCP servers as `files` and `memory`.
 */
export async function registerTools(admin: AdminClient, api: SampleApi, sampleDir: string): Promise<void> {
  await admin.call("POST", "/v1/secrets/tracker-token", { value: api.credential });
  await admin.call("POST", "/v1/tools", {
    name: "tracker",
    kind: "http",
    environment: demoEnvironment,
    actions: [
      { name: "read", spec: "GET /issues/**" },
      { name: "comment", spec: "POST /issues/*/comments" },
    ],
    config: { upstream: api.url, inject: ["header:Authorization=Bearer ${secret:tracker-token}"] },
  });
  await admin.call("POST", "/v1/tools", {
    name: "files",
    kind: "mcp",
    environment: demoEnvironment,
    actions: [
      { name: "list", spec: "list_directory", args: ["path:path"] },
      { name: "read", spec: "read_text_file", args: ["path:path"] },
      { name: "write", spec: "write_file", args: ["path:path"] },
    ],
    config: { command: [process.execPath, await serverProgram("server-filesystem"), sampleDir] },
  });
  await admin.call("POST", "/v1/tools", {
    name: "memory",
    kind: "mcp",
    environment: demoEnvironment,
    actions: [{ name: "create_entities" }, { name: "read_graph" }],
    config: {
      command: [process.execPath, await serverProgram("server-memory")],
      state_paths: ["MEMORY_FILE_PATH=memory.jsonl"],
    },
  });
}

/** Asks an agent process for its public key and registers it; returns the agent's SPIFFE ID. */
export async function registerAgent(admin: AdminClient, agent: AgentProcess, owner: string): Promise<string> {
  const { publicJwk } = await agent.request<IdentityResult>({ op: "identity" });
  const registered = await admin.call<{ spiffe_id: string }>("POST", "/v1/agents", {
    name: agent.name,
    owner,
    environment: demoEnvironment,
    public_jwk: publicJwk,
  });
  return registered.spiffe_id;
}

/** Removes the demo's temporary folder; returns whether it is gone. */
export async function removeTemporaryRoot(paths: DemoPaths): Promise<boolean> {
  if (paths.temporaryRoot === undefined) return false;
  await rm(paths.temporaryRoot, { recursive: true, force: true });
  return !(await exists(paths.temporaryRoot));
}

/** Returns the path of the program of an `@modelcontextprotocol` server package, from its `bin`. */
async function serverProgram(name: "server-filesystem" | "server-memory"): Promise<string> {
  const manifest = createRequire(import.meta.url).resolve(`@modelcontextprotocol/${name}/package.json`);
  const { bin } = JSON.parse(await readFile(manifest, "utf8")) as { bin: Record<string, string> | string };
  const program = typeof bin === "string" ? bin : Object.values(bin)[0];
  if (program === undefined) throw new Error(`@modelcontextprotocol/${name} declares no program in "bin"`);
  return join(dirname(manifest), program);
}

/** Returns a loopback port that was free when checked; another process may take it before use. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolvePort(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
