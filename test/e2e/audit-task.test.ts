import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { TaskStory } from "../../src/audit/task-story.js";
import type { Task } from "../../src/tasks/tasks.js";
import { discover, registerAgent, requestTaskToken } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";

describe("audit task story", () => {
  let broker: TestBroker;
  let task: Task;
  let other: Task;
  let story: TaskStory;

  before(async () => {
    broker = await startTestBroker();
    await broker.admin.call("POST", "/v1/tools", {
      name: "tracker",
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /issues/**" }],
    });
    const agent = await registerAgent(broker, "triage-bot");
    await registerAgent(broker, "other-bot");
    task = await broker.admin.call<Task>("POST", "/v1/tasks", {
      agent: "triage-bot",
      actions: ["tracker:read"],
      intent: "triage the queue",
      environment: "prod",
      ttl_seconds: 600,
    });
    other = await broker.admin.call<Task>("POST", "/v1/tasks", {
      agent: "other-bot",
      actions: ["tracker:read"],
      intent: "unrelated work",
      environment: "prod",
      ttl_seconds: 600,
    });
    await requestTaskToken(await discover(broker.issuer), agent, task.id);
    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
    // The end of a task is recorded after it takes effect; wait until its event is written.
    for (let attempt = 0; attempt < 50; attempt++) {
      story = await broker.admin.call<TaskStory>("GET", `/v1/audit/tasks/${task.id}`);
      if (story.events.some((event) => event.kind === "task.ended")) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });

  after(async () => {
    await broker.close();
  });

  test("story starts with the task", () => {
    assert.equal(story.events[0]?.kind, "task.started");
  });

  test("story names the initiator", () => {
    assert.equal(story.task.initiator, story.events[0]?.actor);
  });

  test("story has the issued token", () => {
    assert.ok(story.events.some((event) => event.kind === "token.issued"));
  });

  test("story ends with the task end", () => {
    assert.equal(story.events.at(-1)?.kind, "task.ended");
  });

  test("story leaves other tasks out", () => {
    assert.ok(story.events.every((event) => event.task_id !== other.id));
  });

  test("unknown task is not found", async () => {
    await assert.rejects(broker.admin.call("GET", "/v1/audit/tasks/unknown"), /not found/);
  });
});
