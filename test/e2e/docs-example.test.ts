/**
 * Runs the agent examples of docs/integrating.md and README.md against a real broker, gateway,
 * upstream API and MCP server, and checks that each example in those pages is the code below, word
 * for word. The code between `docs-example:start NAME` and `docs-example:end NAME` is what the pages
 * show. The examples import `writ/client` through the package's own exports, as agent code does.
 * That import and the CLI steps use dist/, so `npm run build` must have run, as `npm test` does first.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { importJWK, type CryptoKey, type JWK } from "jose";
import * as oauth from "oauth4webapi";
import { createMcpTransport, dpopFetch } from "writ/client";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { cliPath, requireBuiltCli } from "../support/writ-process.js";

const run = promisify(execFile);
const thisFile = fileURLToPath(import.meta.url);
const repositoryRoot = join(thisFile, "..", "..", "..");
const memoryServer = join(repositoryRoot, "node_modules/@modelcontextprotocol/server-memory/dist/index.js");
/** The credential the sample upstream requires. Only the gateway has it, as a stored secret. */
const upstreamToken = "tracker-upstream-credential";

// docs-example:start sdk-http
/** Reads one issue through the writ gateway as the agent whose key file `writ agent add` wrote. */
async function readIssue(issuer: string, keyFile: string, taskId: string): Promise<unknown> {
  const key = JSON.parse(await readFile(keyFile, "utf8")) as JWK & { client_id: string };
  const toolUrl = `${issuer}/tools/tracker`;
  const agentFetch = dpopFetch({
    issuer,
    clientId: key.client_id,
    privateKey: (await importJWK(key)) as CryptoKey,
    taskId,
    url: toolUrl, // the tool's resource URI, which every token is requested for
    allowInsecureHttp: true, // only because this broker is plain http on loopback
  });
  const response = await agentFetch(`${toolUrl}/repos/acme/app/issues/7`);
  if (!response.ok) {
    const decision = response.headers.get("writ-decision-id");
    throw new Error(`tool call failed with status ${response.status}, decision ${decision}`);
  }
  return response.json();
}
// docs-example:end sdk-http

// docs-example:start sdk-mcp
/** Stores one fact in the MCP memory server behind the gateway and reads the graph back. */
async function rememberFact(issuer: string, keyFile: string, taskId: string): Promise<unknown> {
  const key = JSON.parse(await readFile(keyFile, "utf8")) as JWK & { client_id: string };
  const client = new Client({ name: "triage-bot", version: "1.0.0" });
  await client.connect(
    createMcpTransport({
      url: `${issuer}/mcp/memory`,
      issuer,
      clientId: key.client_id,
      privateKey: (await importJWK(key)) as CryptoKey,
      taskId,
      allowInsecureHttp: true,
    }),
  );
  try {
    await client.callTool({
      name: "create_entities",
      arguments: { entities: [{ name: "issue-7", entityType: "issue", observations: ["crash on start"] }] },
    });
    const graph = await client.callTool({ name: "read_graph", arguments: {} });
    return graph.structuredContent;
  } finally {
    await client.close();
  }
}
// docs-example:end sdk-mcp

// docs-example:start oauth-http
/** Makes the call of `readIssue` with oauth4webapi alone: a token request, then a DPoP-bound call. */
async function readIssueWithOAuth(issuer: string, keyFile: string, taskId: string): Promise<Response> {
  const key = JSON.parse(await readFile(keyFile, "utf8")) as JWK & { client_id: string };
  const insecure = { [oauth.allowInsecureRequests]: true }; // plain http on loopback only
  const issuerUrl = new URL(issuer);
  const as = await oauth.processDiscoveryResponse(
    issuerUrl,
    await oauth.discoveryRequest(issuerUrl, { algorithm: "oauth2", ...insecure }),
  );
  const client: oauth.Client = { client_id: key.client_id };
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair("ES256"));
  const toolUrl = `${issuer}/tools/tracker`;

  const tokenResponse = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    oauth.PrivateKeyJwt((await importJWK(key)) as CryptoKey),
    {
      authorization_details: JSON.stringify([{ type: "agent_task", task_id: taskId }]),
      resource: toolUrl,
    },
    { DPoP: dpop, ...insecure },
  );
  const token = await oauth.processClientCredentialsResponse(as, client, tokenResponse);

  return oauth.protectedResourceRequest(
    token.access_token,
    "GET",
    new URL(`${toolUrl}/repos/acme/app/issues/7`),
    new Headers(),
    null,
    { DPoP: dpop, ...insecure },
  );
}
// docs-example:end oauth-http

/** Returns the code between the markers NAME in this file, without the marker lines. */
async function exampleRegion(name: string): Promise<string> {
  const source = await readFile(thisFile, "utf8");
  const start = `// docs-example:start ${name}\n`;
  const from = source.indexOf(start);
  const to = source.indexOf(`// docs-example:end ${name}\n`);
  assert.notEqual(from, -1, `start marker of example "${name}" not found`);
  assert.ok(to > from, `end marker of example "${name}" not found after its start`);
  return source.slice(from + start.length, to);
}

/** Starts an upstream API that serves only requests with its own credential, which the gateway injects. */
async function startTracker(): Promise<{ server: Server; url: string; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((request, response) => {
    seen.push(`${request.method} ${request.url} ${request.headers.authorization ?? "-"}`);
    if (request.headers.authorization !== `Bearer ${upstreamToken}`) {
      response.writeHead(401).end();
      return;
    }
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ number: 7, title: "crash on start", path: request.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, seen };
}

describe("documented agent examples", () => {
  let broker: TestBroker;
  let tracker: Awaited<ReturnType<typeof startTracker>>;
  let keyFile: string;
  let taskId: string;

  /** Runs the built CLI against the test broker with the admin's key, and parses its JSON output. */
  async function writ<T>(args: string[]): Promise<T> {
    const { stdout } = await run(process.execPath, [
      cliPath,
      "--url",
      broker.issuer,
      "--admin-key",
      broker.adminKeyFile,
      "--json",
      ...args,
    ]);
    return JSON.parse(stdout) as T;
  }

  before(async () => {
    requireBuiltCli();
    broker = await startTestBroker();
    tracker = await startTracker();
    await broker.admin.call("POST", "/v1/secrets/tracker-token", { value: upstreamToken });
    await broker.admin.call("POST", "/v1/tools", {
      name: "tracker",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /repos/*/*/issues/*" },
        { name: "close", spec: "POST /repos/*/*/issues/*/close" },
      ],
      config: {
        upstream: tracker.url,
        inject: ["header:Authorization=Bearer ${secret:tracker-token}"],
      },
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "memory",
      kind: "mcp",
      environment: "prod",
      actions: [{ name: "create_entities" }, { name: "read_graph" }],
      config: { command: ["node", memoryServer], state_paths: ["MEMORY_FILE_PATH=memory.jsonl"] },
    });

    keyFile = join(broker.dataDir, "..", "triage-bot.jwk");
    await writ([
      "agent",
      "add",
      "triage-bot",
      "--owner",
      "team-support",
      "--env",
      "prod",
      "--key-out",
      keyFile,
    ]);
    const task = await writ<{ id: string }>([
      "task",
      "start",
      "--agent",
      "triage-bot",
      "--tool",
      "tracker:read",
      "--tool",
      "memory:create_entities",
      "--tool",
      "memory:read_graph",
      "--intent",
      "triage new issues",
      "--env",
      "prod",
      "--ttl",
      "30m",
    ]);
    taskId = task.id;
  });

  after(async () => {
    await broker?.close();
    await new Promise<void>((resolve) =>
      tracker === undefined ? resolve() : tracker.server.close(() => resolve()),
    );
  });

  test("sdk example reads through gateway", async () => {
    const issue = (await readIssue(broker.issuer, keyFile, taskId)) as { number: number; path: string };

    assert.equal(issue.number, 7);
    assert.equal(issue.path, "/repos/acme/app/issues/7");
    assert.equal(tracker.seen.at(-1), `GET /repos/acme/app/issues/7 Bearer ${upstreamToken}`);
  });

  test("oauth4webapi example reads through gateway", async () => {
    const response = await readIssueWithOAuth(broker.issuer, keyFile, taskId);

    assert.equal(response.status, 200);
    assert.match(response.headers.get("writ-decision-id") ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(((await response.json()) as { number: number }).number, 7);
  });

  test("mcp example stores and reads", async () => {
    const graph = (await rememberFact(broker.issuer, keyFile, taskId)) as {
      entities: { name: string }[];
    };

    assert.deepEqual(
      graph.entities.map((entity) => entity.name),
      ["issue-7"],
    );
  });

  test("call outside task denied with decision", async () => {
    const key = JSON.parse(await readFile(keyFile, "utf8")) as JWK & { client_id: string };
    const agentFetch = dpopFetch({
      issuer: broker.issuer,
      clientId: key.client_id,
      privateKey: (await importJWK(key)) as CryptoKey,
      taskId,
      url: `${broker.issuer}/tools/tracker`,
      allowInsecureHttp: true,
    });
    const upstreamCalls = tracker.seen.length;

    const response = await agentFetch(`${broker.issuer}/tools/tracker/repos/acme/app/issues/7/close`, {
      method: "POST",
    });
    const body = (await response.json()) as { error: string; decision_id: string };

    assert.equal(response.status, 403);
    assert.equal(body.error, "insufficient_scope");
    assert.equal(response.headers.get("writ-decision-id"), body.decision_id);
    assert.equal(tracker.seen.length, upstreamCalls, "a denied call must not reach the upstream");
    const { events } = await broker.admin.call<{
      events: { kind: string; data: { decision_id?: string } }[];
    }>("GET", `/v1/audit?task=${taskId}`);
    const denied = events.find((event) => event.data.decision_id === body.decision_id);
    assert.equal(denied?.kind, "tool_call.denied");
  });

  test("held sdk fetch rejected after task end", async () => {
    const key = JSON.parse(await readFile(keyFile, "utf8")) as JWK & { client_id: string };
    const agentFetch = dpopFetch({
      issuer: broker.issuer,
      clientId: key.client_id,
      privateKey: (await importJWK(key)) as CryptoKey,
      taskId,
      url: `${broker.issuer}/tools/tracker`,
      allowInsecureHttp: true,
    });
    const issueUrl = `${broker.issuer}/tools/tracker/repos/acme/app/issues/7`;
    assert.equal((await agentFetch(issueUrl)).status, 200);

    await writ(["task", "end", taskId]);

    // The gateway rejects the held token, the fetch requests a new one once, and the broker rejects that.
    await assert.rejects(agentFetch(issueUrl), (error: unknown) => {
      assert.ok(error instanceof oauth.ResponseBodyError, `unexpected ${String(error)}`);
      assert.equal(error.error, "invalid_authorization_details");
      return true;
    });
  });

  for (const [name, pages] of [
    ["sdk-http", ["docs/integrating.md", "README.md"]],
    ["sdk-mcp", ["docs/integrating.md"]],
    ["oauth-http", ["docs/integrating.md"]],
  ] as const) {
    test(`${name} example matches docs`, async () => {
      const region = await exampleRegion(name);
      for (const page of pages) {
        const text = await readFile(join(repositoryRoot, page), "utf8");
        assert.ok(text.includes(region), `${page} does not show the example "${name}" of ${thisFile}`);
      }
    });
  }
});
