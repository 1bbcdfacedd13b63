import * as oauth from "oauth4webapi";
import type { AuditRecord } from "../audit/chain.js";
import { readAuditEvents } from "../audit/read.js";
import { taskStory } from "../audit/task-story.js";
import { verifyChain } from "../audit/verify.js";
import { readKeyFile } from "../cli/admin-client.js";
import type { Task } from "../tasks/tasks.js";
import type { DemoResult } from "./report.js";
import { waitForExit } from "./server-log.js";
import type { Scene } from "./story.js";

/**
 * Maximum wait for the MCP server processes to exit after their tasks ended, in milliseconds. The
 * gateway looks for ended tasks every second and gives a stopped server 2 seconds before SIGKILL.
 */
const mcpExitWaitMs = 5_000;

/** Ends B's task and checks that every task ended and every credential of the story is gone. */
export async function endTasks(
  scene: Scene,
  tasks: { a: Task; b: Task; delegated: string },
  adminKeyFile: string,
): Promise<void> {
  const { installation, cast, log, result } = scene;
  const { admin } = installation;
  await admin.call("POST", `/v1/tasks/${tasks.b.id}/end`);
  const ended = await Promise.all(
    [tasks.a.id, tasks.b.id, tasks.delegated].map((id) => admin.call<Task>("GET", `/v1/tasks/${id}`)),
  );
  log.check(
    "the tasks ended",
    ended.every((task) => task.status !== "active"),
    ended.map((task) => `${task.agent_name} ${task.status}`).join(", "),
  );

  const tokens: string[] = [];
  for (const agent of [cast.a, cast.b, cast.sub]) {
    tokens.push(...(await agent.request<{ tokens: string[] }>({ op: "tokens" })).tokens);
  }
  const active = await countActive(installation.issuer, adminKeyFile, tokens);
  log.check(
    "every token the agents were issued is inactive at introspection",
    tokens.length > 0 && active === 0,
    `${tokens.length} tokens introspected, ${active} active`,
  );

  const started = installation.serverLog.mcpServers;
  const running = await waitForExit(
    started.map((server) => server.pid),
    mcpExitWaitMs,
  );
  result.mcp_servers = started.map((server) => ({
    pid: server.pid,
    task_id: server.taskId,
    tool: server.tool,
    exited: !running.includes(server.pid),
  }));
  log.check(
    "every MCP server process exited with its task",
    started.length >= 2 && running.length === 0,
    started.map((server) => `${server.tool} pid ${server.pid}`).join(", ") +
      (running.length === 0 ? " exited" : `; still running: ${running.join(", ")}`),
  );
  await scene.postgres.checkDropped(cast.b, log, result);
}

/** Verifies the audit chain, counts its events, and collects A's story as `writ audit task` does. */
export async function checkAudit(scene: Scene, taskA: Task): Promise<void> {
  const { installation, log, result } = scene;
  const context = installation.server.broker.context;
  // Revocation events are appended after the revocation took effect; wait for them to be written.
  await context.queue.drain();
  const events = await readAuditEvents(context.store);
  const verdict = verifyChain(events);
  result.counts = countEvents(events);
  log.check(
    "the audit chain verifies",
    verdict.ok,
    verdict.ok
      ? `${verdict.events} events, head ${verdict.head?.hash.slice(0, 16) ?? "none"}...`
      : `broken at event ${verdict.seq}: ${verdict.reason}`,
  );

  const story = await taskStory(context, taskA.id);
  const kinds = new Set(story.events.map((event) => event.kind));
  result.story = {
    task_id: taskA.id,
    status: story.task.status,
    events: story.events.map((event) => ({
      seq: event.seq,
      kind: event.kind,
      actor: event.actor,
      task_id: event.task_id,
    })),
  };
  const expected = [
    "task.started",
    "token.issued",
    "tool_call.allowed",
    "task.delegated",
    "tool_call.denied",
  ];
  const missing = expected.filter((kind) => !kinds.has(kind));
  log.check(
    `the audit log tells ${taskA.agent_name}'s story, as writ audit task prints it`,
    missing.length === 0 && story.task.status === "revoked",
    `${story.events.length} events over ${1 + story.delegated.length} tasks, task ${story.task.status}` +
      (missing.length === 0 ? "" : `; missing ${missing.join(", ")}`),
  );
}

/** Introspects each token with the operator's key and returns how many are active. */
async function countActive(issuer: string, adminKeyFile: string, tokens: string[]): Promise<number> {
  const key = await readKeyFile(adminKeyFile);
  const as: oauth.AuthorizationServer = { issuer, introspection_endpoint: `${issuer}/oauth/introspect` };
  const client: oauth.Client = { client_id: key.clientId };
  let active = 0;
  for (const token of tokens) {
    const response = await oauth.introspectionRequest(
      as,
      client,
      oauth.PrivateKeyJwt({ key: key.privateKey }),
      token,
      {
        [oauth.allowInsecureRequests]: true,
      },
    );
    const introspection = await oauth.processIntrospectionResponse(as, client, response);
    if (introspection.active) active++;
  }
  return active;
}

/** Counts the calls allowed and denied, the tokens issued and all events of an audit log. */
export function countEvents(events: AuditRecord[]): DemoResult["counts"] {
  return {
    allowed: countKind(events, "tool_call.allowed"),
    denied: countKind(events, "tool_call.denied"),
    tokens_issued: countKind(events, "token.issued"),
    audit_events: events.length,
  };
}

function countKind(events: AuditRecord[], kind: string): number {
  return events.filter((event) => event.kind === kind).length;
}
