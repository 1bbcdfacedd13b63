import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { access, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { decodeJwt } from "jose";
import * as oauth from "oauth4webapi";
import { readKeyFile } from "../../src/cli/admin-client.js";
import { freePort } from "../support/broker.js";
import { discover, introspect, requestTaskToken } from "../support/agent-client.js";

const run = promisify(execFile);
const repository = resolve(import.meta.dirname, "../..");
const cliPath = join(repository, "dist/cli/main.js");

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

describe("writ CLI", () => {
  let root: string;
  let dataDir: string;
  let adminKeyPath: string;
  let port: number;
  let environment: NodeJS.ProcessEnv;

  /** Runs the built CLI with `args` and returns a non-zero exit code instead of throwing. */
  async function writ(args: string[]): Promise<CliResult> {
    try {
      const { stdout, stderr } = await run(process.execPath, [cliPath, ...args], {
        cwd: root,
        env: environment,
        timeout: 60_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: unknown; stdout?: string; stderr?: string };
      if (typeof failed.code !== "number") throw error;
      return { code: failed.code, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
    }
  }

  /** Runs a command against the test installation with `--json` and parses its output. */
  async function writJson<T = Record<string, unknown>>(args: string[]): Promise<{ code: number; json: T }> {
    const result = await writ(["--data", dataDir, "--admin-key", adminKeyPath, "--json", ...args]);
    let json: T;
    try {
      json = JSON.parse(result.stdout) as T;
    } catch {
      assert.fail(
        `writ ${args.join(" ")} printed no JSON (exit ${result.code}): ${result.stdout}${result.stderr}`,
      );
    }
    return { code: result.code, json };
  }

  async function fileMode(path: string): Promise<number> {
    return (await stat(path)).mode & 0o777;
  }

  async function exists(path: string): Promise<boolean> {
    return access(path).then(
      () => true,
      () => false,
    );
  }

  // The test command builds dist/ before any test runs; building here would race with other tests.
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "writ-cli-test-"));
    dataDir = join(root, "data");
    adminKeyPath = join(root, "keys", "admin-key.json");
    port = await freePort();
    // Every default path of the CLI points into the test folder, so nothing reads or writes the real home.
    environment = {
      PATH: process.env.PATH,
      HOME: root,
      XDG_CONFIG_HOME: join(root, "config"),
      XDG_DATA_HOME: join(root, "share"),
      USER: "tester",
    };
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  describe("without a server", () => {
    test("init writes 0600 admin key", async () => {
      const result = await writ([
        "--data",
        dataDir,
        "--json",
        "init",
        "--trust-domain",
        "example.org",
        "--listen",
        `127.0.0.1:${port}`,
        "--admin-key-out",
        adminKeyPath,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await fileMode(adminKeyPath), 0o600);
    });

    test("closed output pipe ends quietly", async () => {
      // The reader is gone before the command writes, as with `writ audit list --json | head -0`.
      const child = spawn(
        process.execPath,
        [cliPath, "--data", dataDir, "--admin-key", adminKeyPath, "--json", "audit", "list"],
        {
          cwd: root,
          env: environment,
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      child.stdout.destroy();
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const [code] = (await once(child, "exit")) as [number | null];
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
    });

    test("init rejects existing key file", async () => {
      const otherData = join(root, "data-existing-key");
      const result = await writ([
        "--data",
        otherData,
        "init",
        "--trust-domain",
        "example.org",
        "--admin-key-out",
        adminKeyPath,
      ]);
      assert.equal(result.code, 1);
      assert.equal(await exists(join(otherData, "writ.json")), false);
    });

    test("init rejects key inside data", async () => {
      const otherData = join(root, "data-inner-key");
      const result = await writ([
        "--data",
        otherData,
        "init",
        "--trust-domain",
        "example.org",
        "--admin-key-out",
        join(otherData, "admin-key.json"),
      ]);
      assert.equal(result.code, 1);
      assert.equal(await exists(join(otherData, "admin-key.json")), false);
    });

    test("agent add writes 0600 key", async () => {
      const keyPath = join(root, "keys", "bot.json");
      const { code, json } = await writJson([
        "agent",
        "add",
        "bot",
        "--owner",
        "team-a",
        "--env",
        "prod",
        "--key-out",
        keyPath,
      ]);
      assert.equal(code, 0);
      assert.equal(json.client_id, "spiffe://example.org/agent/bot");
      assert.equal(await fileMode(keyPath), 0o600);
    });

    test("agent add keeps existing key file", async () => {
      const keyPath = join(root, "keys", "occupied.json");
      await writeFile(keyPath, "keep me\n", { mode: 0o600 });
      const { code } = await writJson([
        "agent",
        "add",
        "occupant",
        "--owner",
        "team-a",
        "--env",
        "prod",
        "--key-out",
        keyPath,
      ]);
      const { json } = await writJson<{ agents: { name: string }[] }>(["agent", "list"]);
      assert.equal(code, 1);
      assert.equal(await readFile(keyPath, "utf8"), "keep me\n");
      assert.ok(!json.agents.some((agent) => agent.name === "occupant"), "the agent was created anyway");
    });

    for (const name of ["../x", "a%2Fb"]) {
      test(`agent name ${name} is refused`, async () => {
        const keyPath = join(root, "keys", `refused-${encodeURIComponent(name)}.json`);
        const { code, json } = await writJson([
          "agent",
          "add",
          name,
          "--owner",
          "team-a",
          "--env",
          "prod",
          "--key-out",
          keyPath,
        ]);
        assert.equal(code, 1);
        assert.equal(json.error, "invalid_request");
        assert.equal(await exists(keyPath), false);
      });
    }

    test("tool add registers actions", async () => {
      const { code, json } = await writJson([
        "tool",
        "add",
        "github",
        "--kind",
        "http",
        "--env",
        "prod",
        "--action",
        "read=GET /repos/**",
      ]);
      assert.equal(code, 0);
      assert.equal(json.resource_uri, `http://127.0.0.1:${port}/tools/github`);
    });

    test("task start prints id", async () => {
      const { code, json } = await writJson([
        "task",
        "start",
        "--agent",
        "bot",
        "--tool",
        "github:read",
        "--intent",
        "read the backlog",
        "--env",
        "prod",
        "--ttl",
        "10m",
      ]);
      assert.equal(code, 0);
      assert.equal(typeof json.id, "string");
    });

    test("policy test as joined person", async () => {
      const person = await readKeyFile(adminKeyPath);
      const asAgent = ["policy", "test", "--agent", "bot", "--tool", "github", "--action", "read"];
      const asJoin = [...asAgent, "--as-human", person.clientId, "--task-join"];
      const policyFile = join(root, "no-joins.cedar");
      await writeFile(
        policyFile,
        "forbid (principal is Human, action, resource) when { context.task_join };\n",
      );

      assert.equal((await writJson(asJoin)).json.decision, "allow");
      assert.equal((await writJson(["policy", "add", policyFile, "--id", "no-joins"])).code, 0);
      try {
        const joined = await writJson<{ decision: string; policies: string[] }>(asJoin);
        assert.deepEqual([joined.json.decision, joined.json.policies], ["deny", ["no-joins"]]);
        assert.equal((await writJson(asAgent)).json.decision, "allow");
        const ownTask = await writJson([...asAgent, "--as-human", person.clientId]);
        assert.equal(ownTask.json.decision, "allow");
        const unknown = await writ([
          "--data",
          dataDir,
          "--admin-key",
          adminKeyPath,
          ...asAgent,
          "--as-human",
          "spiffe://example.org/human/00000000-0000-4000-8000-000000000000",
        ]);
        assert.notEqual(unknown.code, 0);
        assert.match(unknown.stderr, /not found/);
      } finally {
        await writJson(["policy", "remove", "no-joins"]);
      }
    });

    test("task list shows started task", async () => {
      const { json } = await writJson<{ tasks: { agent_name: string; status: string }[] }>(["task", "list"]);
      assert.deepEqual(
        json.tasks.map((task) => [task.agent_name, task.status]),
        [["bot", "active"]],
      );
    });

    test("task start rejects unknown action", async () => {
      const { code, json } = await writJson([
        "task",
        "start",
        "--agent",
        "bot",
        "--tool",
        "github:delete",
        "--intent",
        "x",
        "--env",
        "prod",
      ]);
      assert.equal(code, 1);
      assert.equal(json.error, "invalid_request");
    });

    test("task start rejects other environment", async () => {
      const tool = await writJson([
        "tool",
        "add",
        "staging-db",
        "--kind",
        "http",
        "--env",
        "staging",
        "--action",
        "read=GET /**",
      ]);
      assert.equal(tool.code, 0);
      const { code, json } = await writJson([
        "task",
        "start",
        "--agent",
        "bot",
        "--tool",
        "staging-db:read",
        "--intent",
        "x",
        "--env",
        "prod",
      ]);
      assert.equal(code, 1);
      assert.equal(json.error, "invalid_request");
    });

    test("task start rejects agent's other env", async () => {
      const { code, json } = await writJson([
        "task",
        "start",
        "--agent",
        "bot",
        "--tool",
        "staging-db:read",
        "--intent",
        "x",
        "--env",
        "staging",
      ]);
      assert.equal(code, 1);
      assert.equal(json.error, "invalid_request");
    });

    test("audit verify exits 0", async () => {
      const { code, json } = await writJson(["audit", "verify"]);
      assert.equal(code, 0);
      assert.equal(json.ok, true);
    });
  });

  describe("with a running server", () => {
    let server: ChildProcess;
    let serverOutput = "";
    let as: oauth.AuthorizationServer;
    let agentKeyPath: string;

    async function startAgentTask(agent: string): Promise<string> {
      const { code, json } = await writJson([
        "task",
        "start",
        "--agent",
        agent,
        "--tool",
        "github:read",
        "--intent",
        "read the backlog",
        "--env",
        "prod",
      ]);
      assert.equal(code, 0);
      return String(json.id);
    }

    before(async () => {
      agentKeyPath = join(root, "keys", "remote-bot.json");
      const added = await writJson([
        "agent",
        "add",
        "remote-bot",
        "--owner",
        "team-a",
        "--env",
        "prod",
        "--key-out",
        agentKeyPath,
      ]);
      assert.equal(added.code, 0);

      server = spawn(process.execPath, [cliPath, "--data", dataDir, "server"], {
        cwd: root,
        env: environment,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const collect = (chunk: Buffer): void => {
        serverOutput = (serverOutput + chunk.toString()).slice(-8000);
      };
      server.stdout?.on("data", collect);
      server.stderr?.on("data", collect);

      const deadline = Date.now() + 20_000;
      for (;;) {
        assert.equal(server.exitCode, null, `writ server exited: ${serverOutput}`);
        const healthy = await fetch(`http://127.0.0.1:${port}/healthz`).then(
          (response) => response.ok,
          () => false,
        );
        if (healthy) break;
        assert.ok(Date.now() < deadline, `writ server did not answer on port ${port}: ${serverOutput}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      as = await discover(`http://127.0.0.1:${port}`);
    });

    after(async () => {
      if (server.exitCode !== null) return;
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGTERM");
      await exited;
    });

    test("task end applies in server", async () => {
      const taskId = await startAgentTask("remote-bot");
      const agentKey = await readKeyFile(agentKeyPath);
      const adminKey = await readKeyFile(adminKeyPath);
      const token = await requestTaskToken(as, agentKey, taskId);
      assert.equal((await introspect(as, adminKey, token.accessToken)).active, true);

      const ended = await writJson<{ task_ids: string[] }>(["task", "end", taskId]);
      const afterEnd = await introspect(as, adminKey, token.accessToken);

      assert.equal(ended.code, 0);
      assert.deepEqual(ended.json.task_ids, [taskId]);
      assert.equal(afterEnd.active, false);
    });

    test("revoke agent prints revocation", async () => {
      const taskId = await startAgentTask("remote-bot");
      const agentKey = await readKeyFile(agentKeyPath);
      const token = await requestTaskToken(as, agentKey, taskId);
      const jti = String(decodeJwt(token.accessToken).jti);

      const result = await writ([
        "--data",
        dataDir,
        "--admin-key",
        adminKeyPath,
        "revoke",
        "--agent",
        "remote-bot",
      ]);
      const lines = result.stdout.split("\n").map((line) => line.trim());

      assert.equal(result.code, 0, result.stderr);
      assert.ok(lines.includes("agent remote-bot disabled"), result.stdout);
      assert.ok(
        lines.some((line) => /^revoked 1 task\(s\), 1 token\(s\) \(revocation \d+\)$/.test(line)),
        result.stdout,
      );
      assert.ok(lines.includes(`task ${taskId}`), result.stdout);
      assert.ok(lines.includes(`token ${jti}`), result.stdout);
    });

    test("revoked agent gets no token", async () => {
      const agentKey = await readKeyFile(agentKeyPath);
      const { json } = await writJson<{ tasks: { id: string }[] }>(["task", "list", "--agent", "remote-bot"]);
      const taskId = json.tasks[0]?.id ?? "";
      await assert.rejects(requestTaskToken(as, agentKey, taskId), (error: unknown) => {
        assert.ok(error instanceof oauth.ResponseBodyError, `unexpected ${String(error)}`);
        assert.equal(error.error, "invalid_client");
        return true;
      });
    });
  });
});
