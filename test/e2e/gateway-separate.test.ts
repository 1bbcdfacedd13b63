// Separate gateways as real processes: `writ server` and two `writ gateway` processes, each gateway
// with its own registered identity, in front of a loopback upstream that responds only to requests that
// carry the tool's credential. The gateways learn of revocations from the broker's feed alone.
//
// Needs `npm run build` first: every process runs dist/cli/main.js as an operator would.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader } from "jose";
import type * as oauth from "oauth4webapi";
import { AdminClient, readKeyFile, type LoadedKey } from "../../src/cli/admin-client.js";
import { freePort } from "../support/broker.js";
import {
  auditEvents,
  discover,
  introspect,
  refusalOf,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
  type BrokerHandle,
  type TestAgent,
} from "../support/agent-client.js";
import {
  callTool,
  signResourceProof,
  registerReadTool,
  startRecordingUpstream,
  type RecordingUpstream,
  type ToolResponse,
} from "../support/gateway-client.js";
import {
  addGateway,
  connectAdmin,
  initBroker,
  requireBuiltCli,
  exitCodeWithin,
  runWritJson,
  spawnGateway,
  spawnWrit,
  startBrokerProcess,
  waitForStatus,
  type BrokerInstallation,
  type WritProcess,
} from "../support/writ-process.js";

const upstreamBearer = "upstream-bearer-5b0e7c2a";
/** Maximum time a revocation may take to reach a connected gateway, as the feed promises. */
const propagationBoundMs = 1000;
/** How long a poll for the effect of a revocation goes on before the test gives up. */
const pollLimitMs = 5000;

/** A running `writ gateway` process and the identity it runs as. */
interface RunningGateway {
  name: string;
  spiffeId: string;
  keyFile: string;
  url: string;
  process: WritProcess;
}

/** Calls the `gh` tool's read action through `gateway` with a fresh DPoP proof. */
async function readIssues(gateway: RunningGateway, token: AgentToken): Promise<ToolResponse> {
  return callTool(gateway.url, {
    target: "/tools/gh/repos/writ/issues",
    token: token.accessToken,
    proofKeys: token.dpopKeys,
  });
}

/**
 * Calls the gateway with `token` until it returns 401, for at most `pollLimitMs`; returns the
 * milliseconds from `startedAt` to that response, or undefined when none came.
 */
async function msUntilRejected(
  gateway: RunningGateway,
  token: AgentToken,
  startedAt: number,
): Promise<number | undefined> {
  for (;;) {
    const response = await readIssues(gateway, token);
    const elapsed = performance.now() - startedAt;
    if (response.status === 401) return elapsed;
    if (elapsed > pollLimitMs) return undefined;
  }
}

/** Sends a tool token to a broker API endpoint, with a correct DPoP proof for that URL. */
async function callApiWithToolToken(
  issuer: string,
  method: "GET" | "POST",
  path: string,
  token: AgentToken,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = `${issuer}${path}`;
  const headers = new Headers({
    authorization: `DPoP ${token.accessToken}`,
    dpop: await signResourceProof(token.dpopKeys, method, url, token.accessToken),
  });
  if (body !== undefined) headers.set("content-type", "application/json");
  const response = await fetch(url, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** Reads the first server-sent event of a stream and closes the stream. */
async function firstEvent(response: Response): Promise<{ type: string; data: unknown }> {
  assert.ok(response.body !== null, "the feed response has no body");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (!buffer.includes("\n\n")) {
      const { value, done } = await reader.read();
      if (done) assert.fail(`the feed ended before its first event: ${buffer}`);
      buffer += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel();
  }
  const lines = buffer.slice(0, buffer.indexOf("\n\n")).split("\n");
  const type =
    lines
      .find((line) => line.startsWith("event:"))
      ?.slice("event:".length)
      .trim() ?? "";
  const data = lines
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice("data:".length).trim())
    .join("\n");
  return { type, data: JSON.parse(data) as unknown };
}

describe("separate gateway processes", () => {
  let root: string;
  let installation: BrokerInstallation;
  let broker: BrokerHandle;
  let as: oauth.AuthorizationServer;
  let upstream: RecordingUpstream;
  const processes: WritProcess[] = [];
  const gateways: RunningGateway[] = [];
  let agentA: TestAgent;
  let agentB: TestAgent;
  let taskB: string;
  let tokenA: AgentToken;
  let tokenB: AgentToken;

  before(async () => {
    requireBuiltCli();
    root = await mkdtemp(join(tmpdir(), "writ-gateway-separate-"));
    installation = await initBroker(root);
    processes.push(await startBrokerProcess(installation));
    broker = { issuer: installation.issuer, admin: await connectAdmin(installation) };
    as = await discover(installation.issuer);
    upstream = await startRecordingUpstream({
      bearer: upstreamBearer,
      basic: { user: "unused", password: "unused-basic-password" },
      query: { name: "unused", value: "unused-query-value" },
    });

    const registered: Omit<RunningGateway, "url" | "process">[] = [];
    for (const name of ["edge-1", "edge-2"]) {
      const keyFile = join(root, `${name}-key.json`);
      registered.push({ name, keyFile, spiffeId: await addGateway(installation, name, keyFile) });
    }
    await broker.admin.call("POST", "/v1/secrets/gh-token", { value: upstreamBearer });
    await registerReadTool(broker.admin, "gh", upstream.url, ["edge-1", "edge-2"]);

    for (const identity of registered) {
      const port = await freePort();
      const gatewayProcess = spawnGateway({
        brokerUrl: installation.issuer,
        keyFile: identity.keyFile,
        dataDir: join(root, identity.name),
        port,
      });
      processes.push(gatewayProcess);
      gateways.push({ ...identity, url: `http://127.0.0.1:${port}`, process: gatewayProcess });
    }
    for (const gateway of gateways)
      await waitForStatus(`${gateway.url}/healthz`, 200, 30_000, gateway.process);

    agentA = await registerAgent(broker, "agent-a");
    agentB = await registerAgent(broker, "agent-b");
    const taskA = await startTask(broker, "agent-a", ["gh:read"]);
    taskB = (await startTask(broker, "agent-b", ["gh:read"])).id;
    tokenA = await requestTaskToken(as, agentA, taskA.id);
    tokenB = await requestTaskToken(as, agentB, taskB);
  });

  after(async () => {
    await Promise.allSettled(processes.map((running) => running.stop()));
    await upstream?.close();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  // Runs first, shortly after the gateways fetched the key set, as a rotation soon after a gateway
  // starts would.
  describe("key rotation", () => {
    test("new signing key works at running gateways", async () => {
      const oldToken = await requestTaskToken(as, agentB, taskB);
      const rotated = await broker.admin.call<{ kid: string }>("POST", "/v1/keys/rotate");
      const newToken = await requestTaskToken(as, agentB, taskB);
      assert.equal(decodeProtectedHeader(newToken.accessToken).kid, rotated.kid);

      for (const gateway of gateways) {
        const withOldKey = await readIssues(gateway, oldToken);
        const withNewKey = await readIssues(gateway, newToken);
        assert.equal(withOldKey.status, 200, `${gateway.name}, old key: ${withOldKey.text}`);
        assert.equal(withNewKey.status, 200, `${gateway.name}, new key: ${withNewKey.text}`);
      }
    });
  });

  describe("revocation", () => {
    test("both gateways serve both agents", async () => {
      for (const gateway of gateways) {
        const responseA = await readIssues(gateway, tokenA);
        const responseB = await readIssues(gateway, tokenB);
        assert.equal(responseA.status, 200, `${gateway.name}, agent A: ${responseA.text}`);
        assert.equal(responseB.status, 200, `${gateway.name}, agent B: ${responseB.text}`);
      }
    });

    test("agent revocation reaches both gateways", async () => {
      // The time runs from the revocation request, so it includes the broker's commit and the API call.
      const startedAt = performance.now();
      await broker.admin.call("POST", "/v1/revoke", { agent: "agent-a" });
      const revokeMs = performance.now() - startedAt;
      const elapsed = await Promise.all(
        gateways.map((gateway) => msUntilRejected(gateway, tokenA, startedAt)),
      );

      console.log(`POST /v1/revoke returned after ${revokeMs.toFixed(1)} ms`);
      for (const [index, gateway] of gateways.entries()) {
        const ms = elapsed[index];
        console.log(`revocation of agent A reached ${gateway.name} after ${ms?.toFixed(1) ?? "never"} ms`);
        assert.ok(ms !== undefined, `${gateway.name} still accepted agent A after ${pollLimitMs} ms`);
        assert.ok(ms < propagationBoundMs, `${gateway.name} rejected agent A only after ${ms.toFixed(1)} ms`);
      }
      for (const gateway of gateways) {
        const responseB = await readIssues(gateway, tokenB);
        assert.equal(responseB.status, 200, `${gateway.name}, agent B: ${responseB.text}`);
      }
    });
  });

  describe("identity checks", () => {
    const endpoints: { method: "GET" | "POST"; path: string; body?: unknown }[] = [
      { method: "GET", path: "/v1/revocations" },
      { method: "GET", path: "/v1/tools" },
      {
        method: "POST",
        path: "/v1/decisions",
        body: { events: [{ kind: "tool_call.allowed", actor: "spiffe://example.org/agent/agent-b" }] },
      },
      { method: "GET", path: "/v1/credentials/gh/gh-token" },
    ];

    for (const endpoint of endpoints) {
      test(`agent token rejected at ${endpoint.method} ${endpoint.path}`, async () => {
        const response = await callApiWithToolToken(
          installation.issuer,
          endpoint.method,
          endpoint.path,
          tokenB,
          endpoint.body,
        );
        assert.equal(response.status, 403);
        assert.equal(response.body.error, "access_denied");
        assert.equal(JSON.stringify(response.body).includes(upstreamBearer), false);
      });
    }

    test("agent cannot introspect", async () => {
      const refusal = await refusalOf(introspect(as, agentB, tokenB.accessToken));
      assert.equal(refusal.status, 403);
      assert.equal(refusal.error, "access_denied");
    });

    test("unassigned gateway gets no credential", async () => {
      const keyFile = join(root, "edge-3-key.json");
      await addGateway(installation, "edge-3", keyFile);
      const client = await AdminClient.connect({
        issuer: installation.issuer,
        key: await readKeyFile(keyFile),
      });

      const response = await client.open("GET", "/v1/credentials/gh/gh-token");
      const text = await response.text();

      assert.equal(response.status, 404);
      assert.equal((JSON.parse(text) as { error?: string }).error, "not_found");
      assert.equal(text.includes(upstreamBearer), false);
    });

    test("forged decision events recorded as rejected", async () => {
      const client = await AdminClient.connect({
        issuer: installation.issuer,
        key: await readKeyFile(gateways[1]?.keyFile ?? ""),
      });
      const jtiB = decodeJwt(tokenB.accessToken).jti as string;
      const forged = [
        // No token, yet a named agent and an allow.
        { kind: "tool_call.allowed", actor: agentB.clientId, task_id: taskB, data: { tool: "gh" } },
        // Agent B's token, but agent A as the actor.
        {
          kind: "tool_call.allowed",
          actor: agentA.clientId,
          task_id: taskB,
          jti: jtiB,
          data: { tool: "gh" },
        },
        // A token writ never issued.
        { kind: "tool_call.denied", actor: agentB.clientId, task_id: taskB, jti: "no-such-jti", data: {} },
      ];
      const { seqs } = await client.call<{ seqs: number[] }>("POST", "/v1/decisions", { events: forged });

      const rejected = await auditEvents(broker.admin, "gateway_event.rejected");
      for (const seq of seqs) {
        const event = rejected.find((candidate) => candidate.seq === seq);
        assert.ok(event !== undefined, `event ${seq} was not recorded as rejected`);
        assert.equal(event.actor, gateways[1]?.spiffeId);
        assert.equal(event.task_id, null);
      }
      const allowed = await auditEvents(broker.admin, "tool_call.allowed");
      assert.deepEqual(
        allowed.filter((event) => seqs.includes(event.seq)),
        [],
      );
    });

    test("decision event of a real token accepted", async () => {
      const client = await AdminClient.connect({
        issuer: installation.issuer,
        key: await readKeyFile(gateways[1]?.keyFile ?? ""),
      });
      const event = {
        kind: "tool_call.allowed",
        actor: agentB.clientId,
        task_id: taskB,
        jti: decodeJwt(tokenB.accessToken).jti,
        data: { tool: "gh", decision_id: "c1d2e3f4-0000-4000-8000-000000000001" },
      };
      // A call held for approval at a separate gateway is shipped the same way.
      const held = { ...event, kind: "tool_call.held" };
      const { seqs } = await client.call<{ seqs: number[] }>("POST", "/v1/decisions", {
        events: [event, held],
      });
      const allowed = await auditEvents(broker.admin, "tool_call.allowed");
      assert.equal(
        allowed.find((candidate) => candidate.seq === seqs[0])?.data.gateway,
        gateways[1]?.spiffeId,
      );
      const heldEvents = await auditEvents(broker.admin, "tool_call.held");
      assert.equal(
        heldEvents.find((candidate) => candidate.seq === seqs[1])?.data.gateway,
        gateways[1]?.spiffeId,
      );
    });

    test("disabled gateway loses its access", async () => {
      const keyFile = join(root, "edge-off-key.json");
      await addGateway(installation, "edge-off", keyFile);
      const key = await readKeyFile(keyFile);
      const client = await AdminClient.connect({ issuer: installation.issuer, key });
      assert.equal((await client.open("GET", "/v1/revocations", undefined, "text/event-stream")).status, 200);
      const setStatus = (verb: string) =>
        runWritJson<{ status: string }>([
          "--data",
          installation.dataDir,
          "--admin-key",
          installation.adminKeyFile,
          "gateway",
          verb,
          "edge-off",
        ]);

      assert.equal((await setStatus("disable")).status, "disabled");
      const rejected = await client.open("GET", "/v1/tools");
      assert.equal(rejected.status, 401);
      // A new client needs a new token, which the token endpoint refuses.
      const fresh = await AdminClient.connect({ issuer: installation.issuer, key });
      await assert.rejects(fresh.call("GET", "/v1/tools"));

      assert.equal((await setStatus("enable")).status, "active");
      const again = await AdminClient.connect({ issuer: installation.issuer, key });
      assert.equal((await again.open("GET", "/v1/tools")).status, 200);
      const disabled = await auditEvents(broker.admin, "gateway.disabled");
      assert.equal(disabled.at(-1)?.data.gateway, key.clientId);
    });

    test("assigned gateway gets its credential", async () => {
      const client = await AdminClient.connect({
        issuer: installation.issuer,
        key: await readKeyFile(gateways[0]?.keyFile ?? ""),
      });
      const released = await client.call<{ value: string }>("GET", "/v1/credentials/gh/gh-token");
      assert.equal(released.value, upstreamBearer);
    });

    test("gateway introspects agent token", async () => {
      const gatewayKey: LoadedKey = await readKeyFile(gateways[0]?.keyFile ?? "");
      const result = await introspect(as, gatewayKey, tokenB.accessToken);
      assert.equal(result.active, true);
    });

    test("gateway reads revocation feed", async () => {
      const client = await AdminClient.connect({
        issuer: installation.issuer,
        key: await readKeyFile(gateways[1]?.keyFile ?? ""),
      });
      const response = await client.open("GET", "/v1/revocations", undefined, "text/event-stream");
      assert.equal(response.status, 200);
      const event = await firstEvent(response);
      assert.equal(event.type, "snapshot");
    });
  });

  describe("assignment", () => {
    test("gateway add stores public URL", async () => {
      await addGateway(installation, "edge-url", join(root, "edge-url-key.json"), "https://edge.example.org");
      const { gateways: registered } = await broker.admin.call<{
        gateways: { name: string; public_url: string | null }[];
      }>("GET", "/v1/gateways");
      const stored = registered.find((gateway) => gateway.name === "edge-url");
      assert.equal(stored?.public_url, "https://edge.example.org");
    });

    test("tool of another gateway not served", async () => {
      await registerReadTool(broker.admin, "gh-edge-2", upstream.url, ["edge-2"]);
      const task = await startTask(broker, "agent-b", ["gh-edge-2:read"]);
      const token = await requestTaskToken(as, agentB, task.id);
      const [edge1, edge2] = gateways;
      assert.ok(edge1 !== undefined, "gateway edge-1 runs");
      assert.ok(edge2 !== undefined, "gateway edge-2 runs");
      upstream.seen.length = 0;

      const call = (gateway: RunningGateway) =>
        callTool(gateway.url, {
          target: "/tools/gh-edge-2/repos/writ/issues",
          token: token.accessToken,
          proofKeys: token.dpopKeys,
        });
      const notFound = await call(edge1);
      assert.equal(notFound.status, 404, notFound.text);
      assert.equal(notFound.json().error, "not_found");
      assert.deepEqual(upstream.seen, []);
      const served = await call(edge2);
      assert.equal(served.status, 200, served.text);
    });
  });

  describe("gateway start", () => {
    /** How long a gateway that cannot start may take to exit: its first snapshot wait is 5 s. */
    const exitTimeoutMs = 20_000;

    async function startFailing(extra: { port?: number; silenceBound?: string }): Promise<WritProcess> {
      const identity = gateways[0];
      assert.ok(identity !== undefined, "no gateway was registered");
      const started = spawnWrit([
        "--data",
        join(root, "edge-start"),
        "gateway",
        "--broker",
        installation.issuer,
        "--key",
        identity.keyFile,
        "--listen",
        `127.0.0.1:${extra.port ?? (await freePort())}`,
        ...(extra.silenceBound === undefined ? [] : ["--silence-bound", extra.silenceBound]),
      ]);
      processes.push(started);
      return started;
    }

    test("rejects short silence bound", async () => {
      const started = await startFailing({ silenceBound: "5" });
      const code = await exitCodeWithin(started, exitTimeoutMs);
      assert.equal(code, 1, started.output());
      assert.match(started.output(), /invalid silence bound 5/);
    });

    test("rejects non-numeric silence bound", async () => {
      const started = await startFailing({ silenceBound: "soon" });
      const code = await exitCodeWithin(started, exitTimeoutMs);
      assert.equal(code, 1, started.output());
      assert.match(started.output(), /invalid silence bound NaN/);
    });

    test("exits when port is taken", async () => {
      const started = await startFailing({ port: installation.port });
      const code = await exitCodeWithin(started, exitTimeoutMs);
      assert.equal(code, 1, started.output());
      assert.match(started.output(), /EADDRINUSE/);
    });
  });
});
