import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { createHash, randomUUID } from "node:crypto";
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from "jose";
import { createMcpTransport, dpopFetch, requestTaskToken } from "../../src/client/index.js";
import type { Task } from "../../src/tasks/tasks.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { auditEvents, registerAgent, startTask, type TestAgent } from "../support/agent-client.js";

const everythingServer = join(
  process.cwd(),
  "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
);
const secretValue = "everything-secret-5b2d90e1";

/** Signs a DPoP proof with jose for `POST url`, with `nonce` when given. */
async function signProof(
  keys: { privateKey: CryptoKey; publicKey: CryptoKey },
  url: string,
  accessToken: string,
  nonce?: string,
): Promise<string> {
  return new SignJWT({
    htm: "POST",
    htu: url,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    ath: createHash("sha256").update(accessToken).digest("base64url"),
    ...(nonce === undefined ? {} : { nonce }),
  })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await exportJWK(keys.publicKey) })
    .sign(keys.privateKey);
}

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

describe("gateway for MCP server-everything", () => {
  let broker: TestBroker;
  let agent: TestAgent;
  let other: TestAgent;
  let task: Task;
  let client: Client;
  let toolUrl: string;

  async function connect(who: TestAgent, taskId: string): Promise<Client> {
    return (await connectWithTransport(who, taskId)).client;
  }

  async function connectWithTransport(
    who: TestAgent,
    taskId: string,
  ): Promise<{ client: Client; transport: ReturnType<typeof createMcpTransport> }> {
    const connected = new Client({ name: "test-agent", version: "1" });
    const transport = createMcpTransport({
      url: toolUrl,
      issuer: broker.issuer,
      clientId: who.clientId,
      privateKey: who.privateKey,
      taskId,
      allowInsecureHttp: true,
    });
    await connected.connect(transport);
    return { client: connected, transport };
  }

  /** Posts one raw JSON-RPC body with a valid token and proof for `everything`, plus `headers`. */
  async function rawPost(body: string, headers: Record<string, string> = {}): Promise<Response> {
    const keys = await generateKeyPair("ES256");
    const token = await requestTaskToken(
      {
        issuer: broker.issuer,
        clientId: agent.clientId,
        privateKey: agent.privateKey,
        allowInsecureHttp: true,
      },
      { taskId: task.id, resource: toolUrl, dpopKeys: keys },
    );
    let nonce: string | undefined;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const proof = await signProof(keys, toolUrl, token.accessToken, nonce);
      const response = await fetch(toolUrl, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-protocol-version": "2025-11-25",
          authorization: `DPoP ${token.accessToken}`,
          dpop: proof,
          ...headers,
        },
        body,
      });
      if (response.status !== 401 || nonce !== undefined) return response;
      nonce = response.headers.get("dpop-nonce") ?? undefined;
    }
    throw new Error("unreachable");
  }

  before(async () => {
    broker = await startTestBroker();
    toolUrl = `${broker.issuer}/mcp/everything`;
    agent = await registerAgent(broker, "mcp-agent");
    other = await registerAgent(broker, "other-agent");
    await broker.admin.call("POST", "/v1/secrets/everything-key", { value: secretValue });
    await broker.admin.call("POST", "/v1/tools", {
      name: "everything",
      kind: "mcp",
      environment: "prod",
      actions: [
        { name: "echo" },
        { name: "get-env" },
        { name: "get-sum" },
        { name: "docs", spec: "resource:demo://resource/static/document/*" },
        { name: "simple", spec: "prompt:simple-prompt" },
      ],
      config: { command: ["node", everythingServer, "stdio"] },
    });
    task = await startTask(broker, agent.name, [
      "everything:echo",
      "everything:get-env",
      "everything:docs",
      "everything:simple",
    ]);
    // Variables of the broker's process that no upstream may inherit.
    process.env.WRIT_MASTER_KEY = (await readFile(join(broker.dataDir, "master.key"), "utf8")).trim();
    process.env.WRIT_TEST_BROKER_ONLY = "broker-variable-77c1";
    client = await connect(agent, task.id);
  });

  after(async () => {
    await client?.close();
    await broker?.close();
  });

  test("allowed call returns server result", async () => {
    const result = await client.callTool({ name: "echo", arguments: { message: "hello" } });
    assert.deepEqual(result.content, [{ type: "text", text: "Echo: hello" }]);
  });

  test("tools/list shows granted tools", async () => {
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((tool) => tool.name).sort(), ["echo", "get-env"]);
  });

  test("disallowed tool is denied", async () => {
    const error = await mcpErrorOf(client.callTool({ name: "get-sum", arguments: { a: 1, b: 2 } }));
    assert.equal(error.code, -32003);
    const decisionId = (error.data as { decision_id: string }).decision_id;
    const denied = await auditEvents(broker.admin, "tool_call.denied");
    assert.ok(denied.some((event) => event.data.decision_id === decisionId));
  });

  test("unregistered tool is denied", async () => {
    const error = await mcpErrorOf(client.callTool({ name: "trigger-sampling-request", arguments: {} }));
    assert.equal(error.code, -32003);
  });

  test("resources filtered and read", async () => {
    const { resources } = await client.listResources();
    assert.ok(resources.length > 0);
    assert.ok(resources.every((resource) => resource.uri.startsWith("demo://resource/static/document/")));
    const read = await client.readResource({ uri: "demo://resource/static/document/architecture.md" });
    assert.equal(read.contents[0]?.uri, "demo://resource/static/document/architecture.md");
  });

  test("resource outside pattern is denied", async () => {
    const error = await mcpErrorOf(client.readResource({ uri: "demo://resource/dynamic/text/1" }));
    assert.equal(error.code, -32003);
  });

  test("resource with dot segment is denied", async () => {
    const error = await mcpErrorOf(
      client.readResource({ uri: "demo://resource/static/document/../../dynamic/text/1" }),
    );
    assert.equal(error.code, -32003);
  });

  test("prompts filtered and returned", async () => {
    const { prompts } = await client.listPrompts();
    assert.deepEqual(
      prompts.map((prompt) => prompt.name),
      ["simple-prompt"],
    );
    const prompt = await client.getPrompt({ name: "simple-prompt" });
    assert.ok(prompt.messages.length > 0);
    const error = await mcpErrorOf(client.getPrompt({ name: "args-prompt", arguments: { city: "x" } }));
    assert.equal(error.code, -32003);
  });

  test("environment holds no broker secrets", async () => {
    const result = await client.callTool({ name: "get-env", arguments: {} });
    const text = (result.content as { type: string; text: string }[])[0]?.text ?? "";
    const env = JSON.parse(text) as Record<string, string>;
    assert.ok(!text.includes(secretValue));
    assert.ok(!text.includes(process.env.WRIT_MASTER_KEY as string));
    assert.ok(!text.includes("broker-variable-77c1"));
    assert.equal(Object.keys(env).filter((name) => name.startsWith("WRIT_")).length, 0);
    assert.ok(env.HOME?.includes("writ-mcp-"));
  });

  test("batch is rejected", async () => {
    const body = JSON.stringify([
      { jsonrpc: "2.0", id: 1, method: "ping" },
      { jsonrpc: "2.0", id: 2, method: "ping" },
    ]);
    const response = await rawPost(body);
    assert.equal(response.status, 400);
    const answer = (await response.json()) as { error: { code: number } };
    assert.equal(answer.error.code, -32600);
  });

  test("mismatched Mcp-Name is rejected", async () => {
    const body = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "echo", arguments: { message: "x" } },
    });
    const response = await rawPost(body, { "mcp-method": "tools/call", "mcp-name": "get-env" });
    assert.equal(response.status, 400);
    const answer = (await response.json()) as { error: { code: number } };
    assert.equal(answer.error.code, -32020);
  });

  test("mismatched Mcp-Method is rejected", async () => {
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    const response = await rawPost(body, { "mcp-method": "prompts/list" });
    assert.equal(response.status, 400);
    const answer = (await response.json()) as { error: { code: number } };
    assert.equal(answer.error.code, -32020);
  });

  test("matching headers are accepted", async () => {
    const body = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "echo", arguments: { message: "x" } },
    });
    const response = await rawPost(body, {
      "mcp-method": "tools/call",
      "mcp-name": "echo",
      "mcp-param-message": "x",
    });
    assert.equal(response.status, 200);
  });

  test("foreign origin is rejected", async () => {
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });
    const response = await rawPost(body, { origin: "http://evil.example" });
    assert.equal(response.status, 403);
  });

  test("unauthenticated request gets challenge", async () => {
    const response = await fetch(toolUrl, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    });
    assert.equal(response.status, 401);
    const challenge = response.headers.get("www-authenticate") ?? "";
    assert.match(challenge, /^DPoP /);
    assert.ok(
      challenge.includes(
        `resource_metadata="${broker.issuer}/.well-known/oauth-protected-resource/mcp/everything"`,
      ),
    );
  });

  test("protected resource metadata", async () => {
    const response = await fetch(`${broker.issuer}/.well-known/oauth-protected-resource/mcp/everything`);
    const metadata = (await response.json()) as Record<string, unknown>;
    assert.equal(metadata.resource, toolUrl);
    assert.deepEqual(metadata.authorization_servers, [broker.issuer]);
    assert.equal(metadata.dpop_bound_access_tokens_required, true);
    assert.deepEqual(metadata.bearer_methods_supported, ["header"]);
    assert.ok(Array.isArray(metadata.dpop_signing_alg_values_supported));
  });

  test("token of another resource is rejected", async () => {
    await broker.admin.call("POST", "/v1/tools", {
      name: "second",
      kind: "mcp",
      environment: "prod",
      actions: [{ name: "echo" }],
      config: { command: ["node", everythingServer, "stdio"] },
    });
    const both = await startTask(broker, agent.name, ["everything:echo", "second:echo"]);
    const keys = await generateKeyPair("ES256");
    const token = await requestTaskToken(
      {
        issuer: broker.issuer,
        clientId: agent.clientId,
        privateKey: agent.privateKey,
        allowInsecureHttp: true,
      },
      { taskId: both.id, resource: `${broker.issuer}/mcp/second`, dpopKeys: keys },
    );
    const proof = await signProof(keys, toolUrl, token.accessToken);
    const response = await fetch(toolUrl, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        authorization: `DPoP ${token.accessToken}`,
        dpop: proof,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    });
    assert.equal(response.status, 401);
    assert.match(response.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
  });

  test("proof by another key is rejected", async () => {
    const keys = await generateKeyPair("ES256");
    const token = await requestTaskToken(
      {
        issuer: broker.issuer,
        clientId: agent.clientId,
        privateKey: agent.privateKey,
        allowInsecureHttp: true,
      },
      { taskId: task.id, resource: toolUrl, dpopKeys: keys },
    );
    const stranger = await generateKeyPair("ES256");
    const proof = await signProof(stranger, toolUrl, token.accessToken);
    const response = await fetch(toolUrl, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        authorization: `DPoP ${token.accessToken}`,
        dpop: proof,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    });
    assert.equal(response.status, 401);
    assert.match(response.headers.get("www-authenticate") ?? "", /error="invalid_dpop_proof"/);
  });

  test("protocol method outside the fixed list needs a site policy", async () => {
    const denied = await mcpErrorOf(client.setLoggingLevel("info"));
    assert.equal(denied.code, -32003);
    const decisionId = (denied.data as { decision_id: string }).decision_id;
    const event = (await auditEvents(broker.admin, "tool_call.denied")).find(
      (entry) => entry.data.decision_id === decisionId,
    );
    assert.equal(event?.kind, "tool_call.denied");
    assert.equal(event?.data.mcp_method, "logging/setLevel");

    await broker.admin.call("POST", "/v1/policies", {
      id: "permit-set-level",
      text:
        'permit (principal, action == Action::"protocol_method", resource == Tool::"everything")\n' +
        'when { context.method == "logging/setLevel" && context.path != "debug" };',
    });
    try {
      assert.deepEqual(await client.setLoggingLevel("info"), {});
      // The level is the policy's target, and this level is not permitted.
      assert.equal((await mcpErrorOf(client.setLoggingLevel("debug"))).code, -32003);
      // Only the named method passes.
      const subscribe = await mcpErrorOf(
        client.subscribeResource({ uri: "demo://resource/static/document/x" }),
      );
      assert.equal(subscribe.code, -32003);
    } finally {
      await broker.admin.call("POST", "/v1/policies/permit-set-level/remove", {});
    }
    assert.equal((await mcpErrorOf(client.setLoggingLevel("info"))).code, -32003);
  });

  test("initialize opens a session bound to the task and key", async () => {
    const { client: session, transport } = await connectWithTransport(agent, task.id);
    const sessionId = transport.sessionId;
    assert.match(sessionId ?? "", /^[A-Za-z0-9_-]{24}$/);
    await session.callTool({ name: "echo", arguments: { message: "in session" } });

    // The same task's token held by another key cannot present the session.
    const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });
    const foreign = await rawPost(body, { "mcp-session-id": sessionId as string });
    assert.equal(foreign.status, 404);
    assert.equal(((await foreign.json()) as { error: { code: number } }).error.code, -32001);
    // An id this gateway never issued (after a restart, or from another process) is served.
    const unknown = await rawPost(body, { "mcp-session-id": "not-a-session" });
    assert.equal(unknown.status, 200);
    // Without a session id, a request is still served.
    assert.equal((await rawPost(body)).status, 200);

    await transport.terminateSession();
    assert.equal(transport.sessionId, undefined);
    await session.close();
  });

  test("a closed session is unknown to the key that opened it", async () => {
    const options = {
      url: toolUrl,
      issuer: broker.issuer,
      clientId: agent.clientId,
      privateKey: agent.privateKey,
      taskId: task.id,
      allowInsecureHttp: true,
      dpopKeys: await generateKeyPair("ES256"),
    };
    const session = new Client({ name: "test-agent", version: "1" });
    const transport = createMcpTransport(options);
    await session.connect(transport);
    const sessionId = transport.sessionId as string;
    const post = dpopFetch(options);
    const ping = (): Promise<Response> =>
      post(toolUrl, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-session-id": sessionId,
        },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
      });
    assert.equal((await ping()).status, 200);
    await transport.terminateSession();
    await session.close();
    assert.equal((await ping()).status, 404);
  });

  test("action that needs approval is refused", async () => {
    await broker.admin.call("POST", "/v1/tools", {
      name: "everything-approved",
      kind: "mcp",
      environment: "prod",
      actions: [{ name: "echo", approval: { role: "approver", count: 1 } }],
      config: { command: ["node", everythingServer, "stdio"] },
    });
    const held = await startTask(broker, agent.name, ["everything-approved:echo"]);
    const approved = new Client({ name: "test-agent", version: "1" });
    await approved.connect(
      createMcpTransport({
        url: `${broker.issuer}/mcp/everything-approved`,
        issuer: broker.issuer,
        clientId: agent.clientId,
        privateKey: agent.privateKey,
        taskId: held.id,
        allowInsecureHttp: true,
      }),
    );
    try {
      const refused = await mcpErrorOf(approved.callTool({ name: "echo", arguments: { message: "x" } }));
      assert.equal(refused.code, -32003);
      const decisionId = (refused.data as { decision_id: string }).decision_id;
      const event = (await auditEvents(broker.admin, "tool_call.denied")).find(
        (entry) => entry.data.decision_id === decisionId,
      );
      assert.match(String(event?.data.reason), /needs approval/);
    } finally {
      await approved.close();
    }
  });

  test("other agent cannot use the task", async () => {
    await assert.rejects(connect(other, task.id));
  });

  test("revoked task is denied", async () => {
    const short = await startTask(broker, agent.name, ["everything:echo"]);
    const revocable = await connect(agent, short.id);
    await revocable.callTool({ name: "echo", arguments: { message: "before" } });
    await broker.admin.call("POST", `/v1/tasks/${short.id}/end`, {});
    await new Promise((resolve) => setTimeout(resolve, 300));
    await assert.rejects(revocable.callTool({ name: "echo", arguments: { message: "after" } }));
    await revocable.close();
    // The rejected token is audited as a denial of the tool, with why.
    const denied = await auditEvents(broker.admin, "tool_call.denied");
    const rejected = denied.filter(
      (event) => event.data.tool === "everything" && event.data.mcp_method === "authenticate",
    );
    assert.ok(rejected.length > 0, "no audited denial for the revoked task's request");
    assert.match(String(rejected.at(-1)?.data.reason), /revoked|ended|not valid/);
  });
});
