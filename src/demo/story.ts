import { join } from "node:path";
import type { Task } from "../tasks/tasks.js";
import type { DelegationResult } from "./agent-protocol.js";
import type { Cast } from "./agents.js";
import type { DemoResult, StepLog } from "./report.js";
import type { PostgresStep } from "./postgres-step.js";
import { revokeWhileWorking } from "./revocation.js";
import { demoEnvironment, type Installation } from "./setup.js";
import type { SampleApi } from "./upstream.js";

/** The servers, agents and records that the story's steps act on. */
export interface Scene {
  installation: Installation;
  cast: Cast;
  api: SampleApi;
  /** The real path of the folder the filesystem MCP server is confined to. */
  sampleDir: string;
  postgres: PostgresStep;
  log: StepLog;
  result: DemoResult;
  onProgress?: (label: string | undefined) => void;
}

/**
 * Runs the story up to the end of the tasks. Both agents start tasks with different intents and make
 * allowed calls. B's call outside its task is denied. A delegates a read-only subtask, then the
 * operator revokes A while it works, and B carries on. Returns the tasks.
 */
export async function runStory(scene: Scene): Promise<{ a: Task; b: Task; delegated: string }> {
  const { installation, cast, api, sampleDir, log, result, onProgress } = scene;
  const { admin, issuer } = installation;
  const tasks = await Promise.all([
    admin.call<Task>("POST", "/v1/tasks", {
      agent: cast.a.name,
      actions: ["files:list", "files:read", "tracker:read", "tracker:comment"],
      intent: "triage the nightly export incident",
      environment: demoEnvironment,
      ttl_seconds: 600,
    }),
    admin.call<Task>("POST", "/v1/tasks", {
      agent: cast.b.name,
      actions: ["memory:create_entities", "memory:read_graph", "tracker:read", ...scene.postgres.actions],
      intent: "write the weekly report",
      environment: demoEnvironment,
      ttl_seconds: 600,
    }),
  ]);
  const [taskA, taskB] = tasks;
  result.tasks = { a: taskA.id, b: taskB.id };
  await cast.a.request({
    op: "configure",
    issuer,
    clientId: result.agents.a?.spiffe_id ?? "",
    taskId: taskA.id,
  });
  await cast.b.request({
    op: "configure",
    issuer,
    clientId: result.agents.b?.spiffe_id ?? "",
    taskId: taskB.id,
  });
  log.check(
    "both agents started tasks with different intents",
    taskA.intent !== taskB.intent,
    `${cast.a.name}: "${taskA.intent}", ${cast.b.name}: "${taskB.intent}"`,
  );

  // The two agents work at once, as separate agents do. Each MCP server starts on its first call.
  onProgress?.("starting the filesystem and memory MCP servers for the two tasks");
  const [files, notes] = await Promise.all([
    (async () => ({
      listed: await cast.a.mcpCall("files", "list_directory", { path: sampleDir }),
      read: await cast.a.mcpCall("files", "read_text_file", { path: join(sampleDir, "runbook.md") }),
    }))(),
    (async () => ({
      wrote: await cast.b.mcpCall("memory", "create_entities", {
        entities: [
          { name: "weekly-report", entityType: "report", observations: ["export incident triaged"] },
        ],
      }),
      graph: await cast.b.mcpCall("memory", "read_graph", {}),
    }))(),
  ]);
  onProgress?.(undefined);
  log.check(
    `${cast.a.name} listed and read the sample folder through the filesystem MCP server`,
    files.listed.ok &&
      files.listed.detail.includes("runbook.md") &&
      files.read.ok &&
      files.read.detail.includes("Export runbook"),
    `list_directory: ${files.listed.detail}; read_text_file: ${files.read.detail}`,
  );
  log.check(
    `${cast.b.name} wrote and read its notes through the memory MCP server`,
    notes.wrote.ok && notes.graph.ok && notes.graph.detail.includes("weekly-report"),
    `read_graph: ${notes.graph.detail}`,
  );

  const issue = await cast.a.httpCall("tracker", "GET", "/issues/42");
  const comment = await cast.a.httpCall(
    "tracker",
    "POST",
    "/issues/42/comments",
    '{"text":"rerun the export"}',
  );
  log.check(
    `${cast.a.name} read issue 42 and commented on it through the HTTP API`,
    issue.status === 200 && comment.status === 201,
    `GET ${issue.status}, POST ${comment.status}`,
  );

  const report = await cast.b.httpCall("tracker", "GET", "/issues/41");
  log.check(
    `${cast.b.name} read issue 41 through the HTTP API`,
    report.status === 200,
    `GET ${report.status}`,
  );
  await scene.postgres.read(cast.b, log, result);
  log.check(
    "the HTTP API saw only its own credential, injected by the gateway, and no agent token",
    api.sawOnlyItsCredential(),
    `${api.requests()} requests reached the API`,
  );

  const outside = await cast.b.httpCall("tracker", "POST", "/issues/42/comments", '{"text":"looks done"}');
  const decisionId = outside.decisionId ?? "";
  result.denied_call = { agent: result.agents.b?.spiffe_id ?? "", tool: "tracker", decision_id: decisionId };
  log.check(
    `${cast.b.name}'s comment, outside its task, was denied`,
    outside.status === 403 && decisionId !== "",
    `status ${outside.status}, decision ${decisionId === "" ? "missing" : decisionId}`,
  );

  const delegated = await delegate(issuer, cast, result);
  const subRead = await cast.sub.httpCall("tracker", "GET", "/issues/42");
  log.check(
    `${cast.a.name} delegated a read-only subtask to ${cast.sub.name}, which read issue 42`,
    subRead.status === 200,
    `delegated task ${delegated.taskId}, GET ${subRead.status}`,
  );

  await revokeWhileWorking(scene);

  const subAfter = await cast.sub.httpCall("tracker", "GET", "/issues/42");
  log.check(
    `${cast.sub.name}'s delegated task ended with ${cast.a.name}'s`,
    subAfter.status === 401,
    `GET ${subAfter.status}`,
  );
  const memoryAfter = await cast.b.mcpCall("memory", "read_graph", {});
  const issueAfter = await cast.b.httpCall("tracker", "GET", "/issues/43");
  log.check(
    `${cast.b.name} kept working after the revocation`,
    memoryAfter.ok && issueAfter.status === 200,
    `read_graph ${memoryAfter.ok ? "allowed" : "failed"}, GET ${issueAfter.status}`,
  );
  return { a: taskA, b: taskB, delegated: delegated.taskId };
}

/** Has A hand a read-only subtask to the sub-agent by token exchange, and the sub-agent redeem it. */
async function delegate(issuer: string, cast: Cast, result: DemoResult): Promise<DelegationResult> {
  const subId = result.agents.sub?.spiffe_id ?? "";
  const delegation = await cast.a.request<DelegationResult>({
    op: "delegate",
    tool: "tracker",
    delegate: subId,
    actions: ["tracker:read"],
    intent: "summarise issue 42",
  });
  result.tasks.delegated = delegation.taskId;
  await cast.sub.request({ op: "configure", issuer, clientId: subId, taskId: delegation.taskId });
  await cast.sub.request({ op: "redeem", tool: "tracker", ticket: delegation.ticket });
  return delegation;
}
