import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from "jose";
import { createMcpTransport, requestTaskToken } from "../../src/client/index.js";
import { silentLogger } from "../../src/log/logger.js";
import { serve, type RunningServer } from "../../src/server/serve.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { auditEvents, registerAgent, startTask, type TestAgent } from "../support/agent-client.js";

const everythingServer = join(
  process.cwd(),
  "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
);

type Keys = { privateKey: CryptoKey; publicKey: CryptoKey };

/** A task token for one tool, held by its own DPoP key, as an agent would keep it. */
interface Holder {
  keys: Keys;
  token: string;
  url: string;
  nonce?: string;
}

async function signProof(holder: Holder, htm: string, nonce: string | undefined): Promise<string> {
  return new SignJWT({
    htm,
    htu: holder.url,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    ath: createHash("sha256").update(holder.token).digest("base64url"),
    ...(nonce === undefined ? {} : { nonce }),
  })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await exportJWK(holder.keys.publicKey) })
    .sign(holder.keys.privateKey);
}

/**
 * Sends one request with the holder's token and a proof for `htm` (the request's own method unless
 * given), retrying once with the server nonce. Returns the response and the proof last sent.
 */
async function send(
  holder: Holder,
  method: "POST" | "DELETE",
  options: { body?: unknown; headers?: Record<string, string>; htm?: string; proof?: string } = {},
): Promise<{ response: Response; proof: string }> {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const proof = options.proof ?? (await signProof(holder, options.htm ?? method, holder.nonce));
    const response = await fetch(holder.url, {
      method,
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
        authorization: `DPoP ${holder.token}`,
        dpop: proof,
        ...options.headers,
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    });
    const nonce = response.headers.get("dpop-nonce") ?? undefined;
    const retry = response.status === 401 && holder.nonce === undefined && options.proof === undefined;
    holder.nonce = nonce;
    if (!retry) return { response, proof };
    await response.body?.cancel();
  }
  throw new Error("unreachable");
}

const initializeBody = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "breaker", version: "1" } },
};
const pingBody = { jsonrpc: "2.0", id: 2, method: "ping" };

async function mcpErrorOf(call: Promise<unknown>): Promise<McpError> {
  let result: unknown;
  try {
    result = await call;
  } catch (error) {
    if (error instanceof McpError) return error;
    throw error;
  }
  assert.fail(`expected a JSON-RPC error, the call returned ${JSON.stringify(result)}`);
}

describe("mcp gateway sessions and protocol methods", () => {
  let broker: TestBroker;
  let agent: TestAgent;
  let intruder: TestAgent;
  let taskId: string;
  let toolUrl: string;
  let restarted: RunningServer | undefined;

  async function holderFor(caller: TestAgent, task: string, url = toolUrl, keys?: Keys): Promise<Holder> {
    const pair = keys ?? (await generateKeyPair("ES256"));
    const token = await requestTaskToken(
      {
        issuer: broker.issuer,
        clientId: caller.clientId,
        privateKey: caller.privateKey,
        allowInsecureHttp: true,
      },
      { taskId: task, resource: url, dpopKeys: pair },
    );
    return { keys: pair, token: token.accessToken, url };
  }

  async function openSession(holder: Holder): Promise<string> {
    const { response } = await send(holder, "POST", { body: initializeBody });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const id = response.headers.get("mcp-session-id");
    assert.ok(id !== null, "initialize returned no Mcp-Session-Id");
    return id;
  }

  async function connect(caller: TestAgent, task: string): Promise<Client> {
    const client = new Client({ name: "breaker", version: "1" });
    await client.connect(
      createMcpTransport({
        url: toolUrl,
        issuer: broker.issuer,
        clientId: caller.clientId,
        privateKey: caller.privateKey,
        taskId: task,
        allowInsecureHttp: true,
      }),
    );
    return client;
  }

  before(async () => {
    broker = await startTestBroker();
    toolUrl = `${broker.issuer}/mcp/everything`;
    agent = await registerAgent(broker, "session-owner");
    intruder = await registerAgent(broker, "session-intruder");
    for (const name of ["everything", "second"]) {
      await broker.admin.call("POST", "/v1/tools", {
        name,
        kind: "mcp",
        environment: "prod",
        actions: [
          { name: "echo" },
          { name: "docs", spec: "resource:demo://resource/static/document/*" },
          { name: "simple", spec: "prompt:simple-prompt" },
        ],
        config: { command: ["node", everythingServer, "stdio"] },
      });
    }
    taskId = (
      await startTask(broker, agent.name, [
        "everything:echo",
        "everything:docs",
        "everything:simple",
        "second:echo",
      ])
    ).id;
  });

  after(async () => {
    if (restarted === undefined) {
      await broker?.close();
      return;
    }
    await restarted.close();
    // The harness's close stops the first server again, which is already stopped.
    await broker.close().catch(() => undefined);
    await rm(dirname(broker.dataDir), { recursive: true, force: true });
  });

  test("DELETE with a POST proof keeps the session", async () => {
    const holder = await holderFor(agent, taskId);
    const session = await openSession(holder);
    const { response } = await send(holder, "DELETE", {
      htm: "POST",
      headers: { "mcp-session-id": session },
    });
    assert.equal(response.status, 401);
    const ping = await send(holder, "POST", { body: pingBody, headers: { "mcp-session-id": session } });
    assert.equal(ping.response.status, 200);
  });

  test("replayed DELETE proof is rejected", async () => {
    const holder = await holderFor(agent, taskId);
    const first = await openSession(holder);
    const closed = await send(holder, "DELETE", { headers: { "mcp-session-id": first } });
    assert.equal(closed.response.status, 204);
    const second = await openSession(holder);
    const replay = await send(holder, "DELETE", {
      proof: closed.proof,
      headers: { "mcp-session-id": second },
    });
    assert.equal(replay.response.status, 401);
  });

  test("session of one tool is unknown on another", async () => {
    const keys = await generateKeyPair("ES256");
    const holder = await holderFor(agent, taskId, toolUrl, keys);
    const session = await openSession(holder);
    const other = await holderFor(agent, taskId, `${broker.issuer}/mcp/second`, keys);
    const ping = await send(other, "POST", { body: pingBody, headers: { "mcp-session-id": session } });
    assert.equal(ping.response.status, 404);
    const deleted = await send(other, "DELETE", { headers: { "mcp-session-id": session } });
    assert.equal(deleted.response.status, 404);
  });

  test("session of one task is unknown to another", async () => {
    const keys = await generateKeyPair("ES256");
    const holder = await holderFor(agent, taskId, toolUrl, keys);
    const session = await openSession(holder);
    const otherTask = (await startTask(broker, agent.name, ["everything:echo"])).id;
    const other = await holderFor(agent, otherTask, toolUrl, keys);
    const ping = await send(other, "POST", { body: pingBody, headers: { "mcp-session-id": session } });
    assert.equal(ping.response.status, 404);
  });

  test("subscribe URI with dot segments", async () => {
    await broker.admin.call("POST", "/v1/policies", {
      id: "permit-doc-subscribe",
      text:
        'permit (principal, action == Action::"protocol_method", resource == Tool::"everything")\n' +
        'when { context.method == "resources/subscribe" && context.path like "demo://resource/static/document/*" };',
    });
    const client = await connect(agent, taskId);
    try {
      // A read of this URI is rejected before Cedar because of its dot segments.
      const read = await mcpErrorOf(
        client.readResource({ uri: "demo://resource/static/document/../../dynamic/text/1" }),
      );
      assert.equal(read.code, -32003);
      const subscribe = await mcpErrorOf(
        client.subscribeResource({ uri: "demo://resource/static/document/../../dynamic/text/1" }),
      );
      assert.equal(subscribe.code, -32003);
    } finally {
      await client.close();
      await broker.admin.call("POST", "/v1/policies/permit-doc-subscribe/remove", {});
    }
  });

  test("documented policy and ungranted prompt", async () => {
    // The example policy of docs/mcp.md "Protocol methods".
    await broker.admin.call("POST", "/v1/policies", {
      id: "docs-example",
      text:
        'permit (principal, action == Action::"protocol_method", resource == Tool::"everything")\n' +
        'when { ["logging/setLevel", "completion/complete"].contains(context.method) && context.path != "debug" };',
    });
    const client = await connect(agent, taskId);
    try {
      // The token grants only prompt simple-prompt; completable-prompt is neither listed nor readable.
      const get = await mcpErrorOf(
        client.getPrompt({ name: "completable-prompt", arguments: { department: "Sales", name: "Eve" } }),
      );
      assert.equal(get.code, -32003);
      const completion = await mcpErrorOf(
        client.complete({
          ref: { type: "ref/prompt", name: "completable-prompt" },
          argument: { name: "name", value: "" },
          context: { arguments: { department: "Sales" } },
        }),
      );
      assert.equal(completion.code, -32003);
    } finally {
      await client.close();
      await broker.admin.call("POST", "/v1/policies/docs-example/remove", {});
    }
  });

  test("agent-wide permit and protocol methods", async () => {
    // A site permit scoped to one agent, not to an action, as a site writes to let that agent run its
    // high-risk actions. writ.forbid_action_outside_token used to keep it within the token's actions.
    await broker.admin.call("POST", "/v1/policies", {
      id: "owner-may-run-high-risk",
      text: `permit (principal == Agent::"${agent.clientId}", action, resource)\nwhen { context.risk_score < 100 };`,
    });
    const client = await connect(agent, taskId);
    try {
      const completion = await mcpErrorOf(
        client.complete({
          ref: { type: "ref/prompt", name: "completable-prompt" },
          argument: { name: "name", value: "" },
          context: { arguments: { department: "Sales" } },
        }),
      );
      assert.equal(completion.code, -32003);
      const subscribe = await mcpErrorOf(client.subscribeResource({ uri: "demo://resource/dynamic/text/1" }));
      assert.equal(subscribe.code, -32003);
    } finally {
      await client.close();
      await broker.admin.call("POST", "/v1/policies/owner-may-run-high-risk/remove", {});
    }
  });

  test("denied megabyte target in audit", async () => {
    const client = await connect(agent, taskId);
    const uri = `demo://resource/static/document/${"a".repeat(1_000_000)}`;
    try {
      assert.equal((await mcpErrorOf(client.subscribeResource({ uri }))).code, -32003);
      assert.equal((await mcpErrorOf(client.readResource({ uri }))).code, -32003);
    } finally {
      await client.close();
    }
    // A read URI over 4096 characters is rejected before Cedar, yet each denial stores the whole target.
    const denied = (await auditEvents(broker.admin, "tool_call.denied")).filter(
      (event) => event.task_id === taskId,
    );
    for (const method of ["resources/subscribe", "resources/read"]) {
      const event = denied.find((entry) => entry.data.mcp_method === method);
      assert.ok(event !== undefined, `no denial audited for ${method}`);
      assert.ok(
        String(event.data.path).length <= 4096,
        `${method} audited a ${String(event.data.path).length}-character path`,
      );
    }
  });

  test("risk score after denied setLevel", async () => {
    const control = (await startTask(broker, agent.name, ["everything:echo"])).id;
    const probed = (await startTask(broker, agent.name, ["everything:echo"])).id;
    const controlClient = await connect(agent, control);
    const probedClient = await connect(agent, probed);
    try {
      await controlClient.callTool({ name: "echo", arguments: { message: "plain" } });
      // The gateway advertises logging to every task, so a client may set a level after connecting.
      for (let count = 0; count < 4; count += 1)
        assert.equal((await mcpErrorOf(probedClient.setLoggingLevel("info"))).code, -32003);
      await probedClient.callTool({ name: "echo", arguments: { message: "plain" } });
    } finally {
      await controlClient.close();
      await probedClient.close();
    }
    const allowed = await auditEvents(broker.admin, "tool_call.allowed");
    const scoreOf = (task: string): unknown =>
      allowed.find((event) => event.task_id === task)?.data.risk_score;
    assert.equal(scoreOf(probed), scoreOf(control));
  });

  test("session eviction by another agent", async () => {
    const owner = await holderFor(agent, taskId);
    const session = await openSession(owner);
    const intruderTask = (await startTask(broker, intruder.name, ["everything:echo"])).id;
    const attacker = await holderFor(intruder, intruderTask);
    await openSession(attacker);
    const total = 10_000;
    let sent = 0;
    const workers = Array.from({ length: 8 }, async () => {
      while (sent < total) {
        sent += 1;
        const { response } = await send(attacker, "POST", { body: initializeBody });
        await response.body?.cancel();
      }
    });
    await Promise.all(workers);
    const ping = await send(owner, "POST", { body: pingBody, headers: { "mcp-session-id": session } });
    assert.equal(ping.response.status, 200, "the owner's session was evicted by another agent");
  });

  test("connected client across gateway restart", async () => {
    const client = await connect(agent, taskId);
    try {
      await client.callTool({ name: "echo", arguments: { message: "before" } });
      await broker.server.close();
      restarted = await serve({ dataDir: broker.dataDir, log: silentLogger() });
      // The gateway serves requests without a session; the client still presents the old one.
      await client.callTool({ name: "echo", arguments: { message: "after" } });
    } finally {
      await client.close().catch(() => undefined);
    }
  });
});
