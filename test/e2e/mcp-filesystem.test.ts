import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ListRootsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import { createMcpTransport } from "../../src/client/index.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { registerAgent, startTask, type TestAgent } from "../support/agent-client.js";

const filesystemServer = join(
  process.cwd(),
  "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js",
);

/** Awaits an MCP call that must fail with a JSON-RPC error, and returns it. */
async function mcpErrorOf(call: Promise<unknown>): Promise<McpError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof McpError) return error;
    throw error;
  }
  assert.fail("expected a JSON-RPC error, the call succeeded");
}

/** Returns the text of the first content item of a tool result. */
function textOf(result: Record<string, unknown>): string {
  return ((result.content as { text?: string }[] | undefined)?.[0]?.text ?? "").trim();
}

describe("gateway for MCP server-filesystem", () => {
  let broker: TestBroker;
  let agent: TestAgent;
  let client: Client;
  let root: string;
  let allowed: string;

  before(async () => {
    root = await realpath(await mkdtemp(join(tmpdir(), "writ-fs-test-")));
    allowed = join(root, "allowed");
    await mkdir(join(allowed, "public"), { recursive: true });
    await writeFile(join(allowed, "public", "notes.txt"), "public notes");
    await writeFile(join(allowed, "private.txt"), "private notes");
    await writeFile(join(root, "outside.txt"), "outside the folder");
    await symlink(join(root, "outside.txt"), join(allowed, "public", "escape.txt"));

    broker = await startTestBroker();
    agent = await registerAgent(broker, "fs-agent");
    await broker.admin.call("POST", "/v1/tools", {
      name: "fs",
      kind: "mcp",
      environment: "prod",
      actions: [
        { name: "read", spec: "read_text_file", args: ["path:path"] },
        { name: "dirs", spec: "list_allowed_directories" },
        { name: "write", spec: "write_file", args: ["path:path"] },
      ],
      config: { command: ["node", filesystemServer, allowed] },
    });
    // Cedar is the second layer: inside the server's folder, only public/ may be read.
    await broker.admin.call("POST", "/v1/policies", {
      id: "fs-public-only",
      text: `forbid (principal, action == Action::"fs:read", resource)
unless { context.args.path like "${allowed}/public/*" };`,
    });
    const task = await startTask(broker, agent.name, ["fs:read", "fs:dirs"]);

    // The agent offers roots that would widen the server's folders, were they relayed.
    client = new Client(
      { name: "fs-agent", version: "1" },
      { capabilities: { roots: { listChanged: true } } },
    );
    client.setRequestHandler(ListRootsRequestSchema, async () => ({
      roots: [{ uri: "file:///", name: "all" }],
    }));
    await client.connect(
      createMcpTransport({
        url: `${broker.issuer}/mcp/fs`,
        issuer: broker.issuer,
        clientId: agent.clientId,
        privateKey: agent.privateKey,
        taskId: task.id,
        allowInsecureHttp: true,
      }),
    );
  });

  after(async () => {
    await client?.close();
    await broker?.close();
    await rm(root, { recursive: true, force: true });
  });

  test("allowed read returns file", async () => {
    const result = await client.callTool({
      name: "read_text_file",
      arguments: { path: join(allowed, "public", "notes.txt") },
    });
    assert.equal(textOf(result), "public notes");
  });

  test("dot-dot path is denied", async () => {
    const error = await mcpErrorOf(
      client.callTool({
        name: "read_text_file",
        arguments: { path: join(allowed, "public", "..", "..", "outside.txt") },
      }),
    );
    assert.equal(error.code, -32003);
  });

  test("symlink out is denied", async () => {
    const error = await mcpErrorOf(
      client.callTool({ name: "read_text_file", arguments: { path: join(allowed, "public", "escape.txt") } }),
    );
    assert.equal(error.code, -32003);
  });

  test("policy denies inside server folder", async () => {
    const error = await mcpErrorOf(
      client.callTool({ name: "read_text_file", arguments: { path: join(allowed, "private.txt") } }),
    );
    assert.equal(error.code, -32003);
  });

  test("missing path argument is denied", async () => {
    const error = await mcpErrorOf(client.callTool({ name: "read_text_file", arguments: {} }));
    assert.equal(error.code, -32003);
  });

  test("write not in task is denied", async () => {
    const error = await mcpErrorOf(
      client.callTool({
        name: "write_file",
        arguments: { path: join(allowed, "public", "new.txt"), content: "x" },
      }),
    );
    assert.equal(error.code, -32003);
  });

  test("agent roots do not widen folders", async () => {
    await client.sendRootsListChanged();
    const result = await client.callTool({ name: "list_allowed_directories", arguments: {} });
    const text = textOf(result);
    assert.ok(text.includes(allowed));
    assert.equal(text.split("\n").filter((line) => line.startsWith("/")).length, 1);
  });
});
