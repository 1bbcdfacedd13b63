import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AuditRecord } from "../../src/audit/chain.js";
import { readAuditEvents } from "../../src/audit/read.js";
import type { TaskStory } from "../../src/audit/task-story.js";
import { verifyChain } from "../../src/audit/verify.js";
import type { DemoResult } from "../../src/demo/demo.js";
import { Store } from "../../src/store/store.js";
import { cliPath, requireBuiltCli } from "../support/writ-process.js";

/** Runs the built CLI to completion and returns its exit code and output, whatever the code. */
function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliPath, ...args],
      { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        let code = 0;
        if (error !== null) code = typeof error.code === "number" ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Returns whether a process with this id still exists. */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

describe("writ demo --json", () => {
  let root: string;
  let dataDir: string;
  let run: { code: number; stdout: string; stderr: string };
  let output: DemoResult;
  let events: AuditRecord[];
  let tasks: { id: string; status: string; parent_task_id: string | null }[];
  let agentTokens: { jti: string; task_id: string | null; revoked_at: number | null }[];

  const ofKind = (kind: string) => events.filter((event) => event.kind === kind);
  const calls = (kind: string, actor: string | undefined, tool: string) =>
    ofKind(kind).filter((event) => event.actor === actor && event.data.tool === tool);

  before(async () => {
    requireBuiltCli();
    root = await mkdtemp(join(tmpdir(), "writ-demo-test-"));
    dataDir = join(root, "data");
    run = await runCli(["demo", "--json", "--data", dataDir]);
    output = JSON.parse(run.stdout) as DemoResult;

    // The audit log and the tasks are read from the kept data directory, not from the demo's claims.
    const store = await Store.open({ kind: "sqlite", file: join(dataDir, "writ.db"), readonly: true });
    try {
      events = await readAuditEvents(store);
      tasks = await store.db.selectFrom("tasks").select(["id", "status", "parent_task_id"]).execute();
      agentTokens = await store.db
        .selectFrom("tokens")
        .select(["jti", "task_id", "revoked_at"])
        .where("task_id", "is not", null)
        .execute();
    } finally {
      await store.close();
    }
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("exits 0 and reports ok", () => {
    assert.equal(run.code, 0, `${run.stderr}\n${JSON.stringify(output.steps, null, 1)}`);
    assert.equal(output.ok, true);
  });

  test("every step passed or was skipped", () => {
    for (const step of output.steps) {
      assert.notEqual(step.status, "failed", `${step.step}: ${step.detail}`);
    }
  });

  test("only the PostgreSQL step may be skipped", () => {
    const skipped = output.steps.filter((step) => step.status === "skipped");
    assert.ok(
      skipped.every((step) => step.step.includes("PostgreSQL")),
      JSON.stringify(skipped),
    );
  });

  test("keeps the given data directory", () => {
    assert.equal(output.data_dir, dataDir);
    assert.equal(output.data_kept, true);
    assert.ok(output.explore.some((command) => command.includes(`--data ${dataDir}`)));
  });

  test("audit chain verifies", () => {
    const verdict = verifyChain(events);
    assert.equal(verdict.ok, true, JSON.stringify(verdict));
  });

  test("counts match the audit log", () => {
    assert.deepEqual(output.counts, {
      allowed: ofKind("tool_call.allowed").length,
      denied: ofKind("tool_call.denied").length,
      tokens_issued: ofKind("token.issued").length,
      audit_events: events.length,
    });
  });

  test("tasks started with different intents", () => {
    const a = ofKind("task.started").find((event) => event.task_id === output.tasks.a);
    const b = ofKind("task.started").find((event) => event.task_id === output.tasks.b);
    assert.equal(a?.data.agent, output.agents.a?.spiffe_id);
    assert.equal(b?.data.agent, output.agents.b?.spiffe_id);
    assert.notEqual(a?.data.intent, b?.data.intent);
  });

  test("agent A's filesystem calls allowed", () => {
    const allowed = calls("tool_call.allowed", output.agents.a?.spiffe_id, "files");
    assert.deepEqual(allowed.map((event) => event.data.path).sort(), ["list_directory", "read_text_file"]);
    assert.ok(allowed.every((event) => event.task_id === output.tasks.a));
  });

  test("agent A's HTTP calls allowed", () => {
    const allowed = calls("tool_call.allowed", output.agents.a?.spiffe_id, "tracker");
    assert.ok(allowed.some((event) => event.data.method === "GET" && event.data.path === "/issues/42"));
    assert.ok(
      allowed.some((event) => event.data.method === "POST" && event.data.path === "/issues/42/comments"),
    );
  });

  test("agent B's memory calls allowed", () => {
    const allowed = calls("tool_call.allowed", output.agents.b?.spiffe_id, "memory");
    const names = allowed.map((event) => event.data.path);
    assert.ok(names.includes("create_entities"), JSON.stringify(names));
    assert.ok(names.includes("read_graph"), JSON.stringify(names));
    assert.ok(allowed.every((event) => event.task_id === output.tasks.b));
  });

  test("agent B's HTTP read allowed", () => {
    const allowed = calls("tool_call.allowed", output.agents.b?.spiffe_id, "tracker");
    assert.ok(allowed.some((event) => event.data.method === "GET" && event.data.path === "/issues/41"));
  });

  test("denied call has its event", () => {
    const denied = ofKind("tool_call.denied").find(
      (event) => event.data.decision_id === output.denied_call?.decision_id,
    );
    assert.ok(denied, `no tool_call.denied with decision ${String(output.denied_call?.decision_id)}`);
    assert.equal(denied.actor, output.agents.b?.spiffe_id);
    assert.equal(denied.task_id, output.tasks.b);
    assert.equal(denied.data.tool, "tracker");
    assert.equal(denied.data.method, "POST");
    assert.equal(denied.data.path, "/issues/42/comments");
  });

  test("delegation event names sub-agent", () => {
    const delegated = ofKind("task.delegated").find((event) => event.task_id === output.tasks.delegated);
    assert.ok(delegated, "no task.delegated event for the delegated task");
    assert.equal(delegated.actor, output.agents.a?.spiffe_id);
    assert.equal(delegated.data.parent_task_id, output.tasks.a);
    assert.equal(delegated.data.delegate, output.agents.sub?.spiffe_id);
    assert.deepEqual(delegated.data.actions, ["tracker:read"]);
  });

  test("sub-agent call allowed on delegated task", () => {
    const allowed = calls("tool_call.allowed", output.agents.sub?.spiffe_id, "tracker");
    const call = allowed.find((event) => event.task_id === output.tasks.delegated);
    assert.ok(call, "no allowed call of the sub-agent on the delegated task");
    assert.equal(call.data.sub, output.agents.a?.spiffe_id);
  });

  test("revocation event names agent A", () => {
    const revoked = ofKind("agent.revoked");
    assert.equal(revoked.length, 1);
    assert.equal(revoked[0]?.data.agent, output.agents.a?.spiffe_id);
    assert.deepEqual(
      [...((revoked[0]?.data.task_ids as string[]) ?? [])].sort(),
      [output.tasks.a, output.tasks.delegated].sort(),
    );
    assert.equal(output.revocation?.agent, output.agents.a?.spiffe_id);
    assert.ok(Number.isFinite(output.revocation?.failed_after_ms));
  });

  test("agent A denied after revocation", () => {
    const revokedAt = ofKind("agent.revoked")[0]?.seq ?? Infinity;
    const denied = calls("tool_call.denied", output.agents.a?.spiffe_id, "tracker").filter(
      (event) => event.task_id === output.tasks.a && /revoked/.test(String(event.data.reason)),
    );
    assert.ok(denied.length > 0, "no denial of agent A for a revoked token");
    const laterAllowed = ofKind("tool_call.allowed").filter(
      (event) => event.actor === output.agents.a?.spiffe_id && event.seq > revokedAt,
    );
    assert.deepEqual(laterAllowed, []);
  });

  test("agent B allowed after revocation", () => {
    const revokedAt = ofKind("agent.revoked")[0]?.seq ?? Infinity;
    const later = ofKind("tool_call.allowed").filter(
      (event) => event.actor === output.agents.b?.spiffe_id && event.seq > revokedAt,
    );
    assert.ok(later.some((event) => event.data.tool === "memory"));
    assert.ok(later.some((event) => event.data.tool === "tracker"));
  });

  test("tasks ended", () => {
    const statusOf = (id: string | undefined) => tasks.find((task) => task.id === id)?.status;
    assert.equal(statusOf(output.tasks.a), "revoked");
    assert.equal(statusOf(output.tasks.delegated), "revoked");
    assert.equal(statusOf(output.tasks.b), "completed");
    assert.ok(ofKind("task.ended").some((event) => event.task_id === output.tasks.b));
    assert.ok(tasks.every((task) => task.status !== "active"));
  });

  test("every task token revoked", () => {
    assert.ok(agentTokens.length >= 6, `${agentTokens.length} task tokens`);
    for (const token of agentTokens) assert.notEqual(token.revoked_at, null, `token ${token.jti}`);
  });

  test("MCP server processes exited", () => {
    const tools = output.mcp_servers.map((server) => server.tool).sort();
    assert.deepEqual(tools, ["files", "memory"]);
    for (const server of output.mcp_servers) {
      assert.equal(processExists(server.pid), false, `${server.tool} pid ${server.pid}`);
    }
  });

  test("PostgreSQL role lived with task B", (context) => {
    // The demo runs this part only where PostgreSQL server programs are installed.
    const skipped = output.steps.find(
      (step) => step.status === "skipped" && step.step.includes("PostgreSQL"),
    );
    if (skipped !== undefined) {
      assert.equal(output.postgres, undefined);
      context.skip(skipped.detail);
      return;
    }
    const role = output.postgres?.role;
    assert.ok(role !== undefined, "no PostgreSQL role in the output");
    const created = ofKind("lease.created").find((event) => event.data.role === role);
    assert.equal(created?.task_id, output.tasks.b);
    const fetched = ofKind("credential.fetched").find((event) => event.data.role === role);
    assert.equal(fetched?.actor, output.agents.b?.spiffe_id);
    assert.equal(fetched?.task_id, output.tasks.b);
    const cleaned = ofKind("lease.cleaned").find((event) => event.data.role === role);
    assert.equal(cleaned?.task_id, output.tasks.b);
    assert.equal(output.postgres?.dropped, true);
  });

  test("audit task prints A's story", async () => {
    const story = await runCli([
      "--json",
      "--data",
      dataDir,
      "--admin-key",
      output.admin_key_file ?? "",
      "audit",
      "task",
      output.tasks.a ?? "",
    ]);
    assert.equal(story.code, 0, story.stderr);
    const told = JSON.parse(story.stdout) as TaskStory;
    assert.equal(told.task.status, "revoked");
    assert.deepEqual(told.delegated, [output.tasks.delegated]);
    assert.deepEqual(
      told.events.map((event) => event.seq),
      output.story?.events.map((event) => event.seq),
    );
    const kinds = new Set(told.events.map((event) => event.kind));
    for (const kind of [
      "task.started",
      "tool_call.allowed",
      "task.delegated",
      "tool_call.denied",
      "task.revoked",
    ]) {
      assert.ok(kinds.has(kind), `story lacks ${kind}`);
    }
  });
});
