// A task whose story exceeds the event cap of `GET /v1/audit/tasks/:id`. The events are appended
// straight through the broker's audit log (as the gateway does for each call) to reach the cap
// without 10,000 real tool calls.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { AuditRecord } from "../../src/audit/chain.js";
import { registerAgent, startTask } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";

describe("long task story", () => {
  let broker: TestBroker;
  let taskId: string;

  before(async () => {
    broker = await startTestBroker();
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh",
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /repos/**" }],
    });
    const worker = await registerAgent(broker, "worker");
    const task = await startTask(broker, worker.name, ["gh:read"]);
    taskId = task.id;
    const audit = broker.server.broker.context.audit;
    const appends: Promise<AuditRecord>[] = [];
    for (let index = 0; index < 10_050; index++) {
      appends.push(
        audit.append({
          kind: "tool_call.allowed",
          actor: worker.clientId,
          task_id: taskId,
          data: { tool: "gh", action: "read", method: "GET", path: `/repos/acme/issues/${index}` },
        }),
      );
    }
    await Promise.all(appends);
    await broker.admin.call("POST", `/v1/tasks/${taskId}/end`);
  });

  after(async () => {
    await broker?.close();
  });

  test("story past cap shows its end", async () => {
    let story: { events: AuditRecord[] } = { events: [] };
    for (let attempt = 0; attempt < 50; attempt++) {
      story = await broker.admin.call<{ events: AuditRecord[] }>("GET", `/v1/audit/tasks/${taskId}`);
      const total = await broker.admin.call<{ events: AuditRecord[] }>(
        "GET",
        `/v1/audit?task=${taskId}&after=10000&limit=1000`,
      );
      if (total.events.some((event) => event.kind === "task.ended")) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const kinds = story.events.map((event) => event.kind);
    assert.ok(kinds.includes("task.ended"), `story of ${kinds.length} events lacks task.ended`);
  });
});
