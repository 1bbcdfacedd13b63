// @modelcontextprotocol/server-postgres behind the MCP gateway, started per task with the task's own
// PostgreSQL role: a password-less URL in its argv and PGPASSWORD in its environment, so the agent
// never receives the credential. The server's read-only transaction is not the boundary, but the role's
// privileges are.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { createMcpTransport } from "../../src/client/index.js";
import { registerAgent, startTask, type TestAgent } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  prepareCluster,
  roleExists,
  type PreparedCluster,
  registerBillingSystem,
} from "./systems-support.js";

const postgresServer = join(
  process.cwd(),
  "node_modules/@modelcontextprotocol/server-postgres/dist/index.js",
);

let prepared: PreparedCluster;
let broker: TestBroker;
let agent: TestAgent;

before(async () => {
  prepared = await prepareCluster();
  broker = await startTestBroker();
  await registerBillingSystem(broker.admin, prepared);
  await broker.admin.call("POST", "/v1/systems/billing/templates", {
    name: "reader",
    member_of: ["billing_reader"],
  });
  await broker.admin.call("POST", "/v1/tools", {
    name: "billing-sql",
    kind: "mcp",
    environment: "prod",
    actions: [{ name: "query" }],
    config: { command: ["node", postgresServer, "${system_url}"], system: "billing" },
  });
  agent = await registerAgent(broker, "billing-bot");
});

after(async () => {
  await broker?.close();
  await prepared?.cluster.stop();
});

/** Calls the server's `query` tool and returns its text, or the error message. */
async function query(client: Client, sql: string): Promise<{ text: string; isError: boolean }> {
  try {
    const result = await client.callTool({ name: "query", arguments: { sql } });
    const content = result.content as { type: string; text: string }[];
    return { text: content.map((part) => part.text).join(""), isError: result.isError === true };
  } catch (error) {
    return { text: (error as Error).message, isError: true };
  }
}

test("server-postgres runs as the task's role", async () => {
  const task = await startTask(broker, agent.name, ["billing-sql:query", "billing:reader"]);
  const role = `writ_${task.id}`;
  const client = new Client({ name: "billing-bot", version: "1" });
  await client.connect(
    createMcpTransport({
      url: `${broker.issuer}/mcp/billing-sql`,
      issuer: broker.issuer,
      clientId: agent.clientId,
      privateKey: agent.privateKey,
      taskId: task.id,
      allowInsecureHttp: true,
    }),
  );
  try {
    const invoices = await query(client, "SELECT id, amount FROM billing.invoices ORDER BY id");
    assert.equal(invoices.isError, false, invoices.text);
    assert.deepEqual(JSON.parse(invoices.text), [
      { id: 1, amount: 100 },
      { id: 2, amount: 250 },
    ]);
    const user = await query(client, "SELECT current_user AS role");
    assert.deepEqual(JSON.parse(user.text), [{ role }]);

    const salaries = await query(client, "SELECT * FROM hr.salaries");
    assert.equal(salaries.isError, true);
    assert.match(salaries.text, /permission denied/);

    // COMMIT ends the server's read-only transaction, so only the role's privileges stop the write.
    const escape = await query(client, "COMMIT; CREATE TABLE billing.written (id integer)");
    assert.equal(escape.isError, true);
    assert.match(escape.text, /permission denied/);
    const tables = await prepared.superuser("SELECT 1 FROM pg_tables WHERE tablename = 'written'");
    assert.equal(tables.length, 0);
  } finally {
    await client.close();
  }

  const sessions = await prepared.superuser("SELECT pid FROM pg_stat_activity WHERE usename = $1", [role]);
  assert.ok(sessions.length > 0, "the server keeps a pooled session of the task's role");
  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  assert.equal(await roleExists(prepared, role), false);
  const after = await prepared.superuser("SELECT pid FROM pg_stat_activity WHERE usename = $1", [role]);
  assert.equal(after.length, 0);
});

test("system injection requires a command tool", async () => {
  await assert.rejects(
    broker.admin.call("POST", "/v1/tools", {
      name: "billing-remote",
      kind: "mcp",
      environment: "prod",
      actions: [{ name: "query" }],
      config: { upstream: "http://127.0.0.1:9/mcp", system: "billing" },
    }),
    /for --command tools/,
  );
});
