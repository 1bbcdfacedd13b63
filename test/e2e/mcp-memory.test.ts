import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { createMcpTransport } from "../../src/client/index.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { registerAgent, startTask, type TestAgent } from "../support/agent-client.js";

const memoryServer = join(process.cwd(), "node_modules/@modelcontextprotocol/server-memory/dist/index.js");

/** Returns whether any gateway's upstream root under the temporary folder holds a folder of `taskId`. */
async function taskFolderExists(taskId: string): Promise<boolean> {
  const name = createHash("sha256").update(taskId).digest("hex").slice(0, 32);
  for (const entry of await readdir(tmpdir())) {
    if (!entry.startsWith("writ-mcp-")) continue;
    const found = await stat(join(tmpdir(), entry, name)).then(
      () => true,
      () => false,
    );
    if (found) return true;
  }
  return false;
}

describe("gateway for MCP server-memory", () => {
  let broker: TestBroker;
  let agent: TestAgent;
  const clients: Client[] = [];

  async function connect(taskId: string): Promise<Client> {
    const client = new Client({ name: "memory-agent", version: "1" });
    await client.connect(
      createMcpTransport({
        url: `${broker.issuer}/mcp/memory`,
        issuer: broker.issuer,
        clientId: agent.clientId,
        privateKey: agent.privateKey,
        taskId,
        allowInsecureHttp: true,
      }),
    );
    clients.push(client);
    return client;
  }

  async function entityNames(client: Client): Promise<string[]> {
    const result = await client.callTool({ name: "read_graph", arguments: {} });
    const graph = result.structuredContent as { entities: { name: string }[] };
    return graph.entities.map((entity) => entity.name);
  }

  before(async () => {
    broker = await startTestBroker();
    agent = await registerAgent(broker, "memory-agent");
    await broker.admin.call("POST", "/v1/tools", {
      name: "memory",
      kind: "mcp",
      environment: "prod",
      actions: [{ name: "create_entities" }, { name: "read_graph" }],
      config: { command: ["node", memoryServer], state_paths: ["MEMORY_FILE_PATH=memory.jsonl"] },
    });
  });

  after(async () => {
    for (const client of clients) await client.close();
    await broker?.close();
  });

  test("tasks do not share memory", async () => {
    const actions = ["memory:create_entities", "memory:read_graph"];
    const [first, second] = await Promise.all([
      startTask(broker, agent.name, actions),
      startTask(broker, agent.name, actions),
    ]);
    const [a, b] = await Promise.all([connect(first.id), connect(second.id)]);
    await Promise.all([
      a.callTool({
        name: "create_entities",
        arguments: { entities: [{ name: "alpha", entityType: "note", observations: ["first task"] }] },
      }),
      b.callTool({
        name: "create_entities",
        arguments: { entities: [{ name: "beta", entityType: "note", observations: ["second task"] }] },
      }),
    ]);
    assert.deepEqual(await entityNames(a), ["alpha"]);
    assert.deepEqual(await entityNames(b), ["beta"]);
  });

  test("memory ends with its task", async () => {
    const task = await startTask(broker, agent.name, ["memory:create_entities", "memory:read_graph"]);
    const client = await connect(task.id);
    await client.callTool({
      name: "create_entities",
      arguments: { entities: [{ name: "gamma", entityType: "note", observations: ["ended"] }] },
    });
    assert.equal(await taskFolderExists(task.id), true);
    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`, {});
    for (let waited = 0; waited < 5000 && (await taskFolderExists(task.id)); waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(await taskFolderExists(task.id), false);
    const next = await startTask(broker, agent.name, ["memory:read_graph"]);
    assert.deepEqual(await entityNames(await connect(next.id)), []);
  });
});
