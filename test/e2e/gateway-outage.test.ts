// A separate gateway process while its broker process is stopped and started again. It serves valid
// tokens from the keys, tools, tasks and credentials it has cached until the revocation feed has been
// silent for the silence bound, then denies everything. It spools its decisions and ships them once
// the broker is back. A gateway started while the broker is down serves nothing until the broker
// responds.
//
// Needs `npm run build` first: every process runs dist/cli/main.js as an operator would.

import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import SqliteDatabase from "better-sqlite3";
import type * as oauth from "oauth4webapi";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { ChainVerdict } from "../../src/audit/verify.js";
import { freePort } from "../support/broker.js";
import {
  auditEvents,
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
  type BrokerHandle,
} from "../support/agent-client.js";
import {
  callTool,
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
  spawnGateway,
  startBrokerProcess,
  waitForStatus,
  type BrokerInstallation,
  type WritProcess,
} from "../support/writ-process.js";

const upstreamBearer = "upstream-bearer-91d4e6f0";
/** The smallest silence bound `writ gateway --silence-bound` accepts, in seconds. */
const silenceBoundSeconds = 6;
/** Maximum time a revocation may take to reach a connected gateway, as the feed promises. */
const propagationBoundMs = 1000;
/** Maximum delay between two reconnection attempts of a gateway's feed follower. */
const reconnectMaxMs = 5000;
/**
 * Slack for observing a deadline by polling: one poll interval plus the time one tool request
 * takes on loopback.
 */
const pollSlackMs = 500;
const pollIntervalMs = 100;
/** The interval at which a separate gateway fetches tools and policies again. */
const policyRefreshMs = 5000;
/** How long a poll for a change of state goes on before the test gives up. */
const pollLimitMs = 15_000;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls the `gh` tool's read action through the gateway at `url` with a fresh DPoP proof. */
async function readIssues(url: string, token: AgentToken): Promise<ToolResponse> {
  return callTool(url, {
    target: "/tools/gh/repos/writ/issues",
    token: token.accessToken,
    proofKeys: token.dpopKeys,
  });
}

/** Returns the `decision_id` of every event waiting in a gateway's spool. */
function spooledDecisionIds(gatewayDataDir: string): string[] {
  const database = new SqliteDatabase(join(gatewayDataDir, "gateway-spool.db"), {
    readonly: true,
    fileMustExist: true,
  });
  try {
    const rows = database.prepare("select event from spool order by id").all() as { event: string }[];
    return rows.map((row) => String((JSON.parse(row.event) as AuditRecord).data.decision_id));
  } finally {
    database.close();
  }
}

describe("separate gateway during a broker outage", () => {
  let root: string;
  let installation: BrokerInstallation;
  let broker: BrokerHandle;
  let brokerProcess: WritProcess;
  let as: oauth.AuthorizationServer;
  let upstream: RecordingUpstream;
  const processes: WritProcess[] = [];
  let gatewayId: string;
  let gatewayDataDir: string;
  let gatewayUrl: string;
  let lateKeyFile: string;
  let taskA: string;
  let markerTask: string;
  let tokenA: AgentToken;
  let tokenB: AgentToken;
  let markerToken: AgentToken;
  /** Decision IDs of the requests the gateway allowed while the broker was down. */
  const allowedDuringOutage: string[] = [];
  /** When the marker task was ended; the gateway heard its revocation after this. */
  let markerEndedAt: number;
  let stoppedAt: number;

  before(async () => {
    requireBuiltCli();
    root = await mkdtemp(join(tmpdir(), "writ-gateway-outage-"));
    installation = await initBroker(root);
    brokerProcess = await startBrokerProcess(installation);
    processes.push(brokerProcess);
    broker = { issuer: installation.issuer, admin: await connectAdmin(installation) };
    as = await discover(installation.issuer);
    upstream = await startRecordingUpstream({
      bearer: upstreamBearer,
      basic: { user: "unused", password: "unused-basic-password" },
      query: { name: "unused", value: "unused-query-value" },
    });

    const keyFile = join(root, "edge-1-key.json");
    gatewayId = await addGateway(installation, "edge-1", keyFile);
    lateKeyFile = join(root, "edge-late-key.json");
    await addGateway(installation, "edge-late", lateKeyFile);
    await broker.admin.call("POST", "/v1/secrets/gh-token", { value: upstreamBearer });
    await registerReadTool(broker.admin, "gh", upstream.url, ["edge-1", "edge-late"]);

    const port = await freePort();
    gatewayDataDir = join(root, "edge-1");
    gatewayUrl = `http://127.0.0.1:${port}`;
    const gateway = spawnGateway({
      brokerUrl: installation.issuer,
      keyFile,
      dataDir: gatewayDataDir,
      port,
      silenceBoundSeconds,
    });
    processes.push(gateway);
    await waitForStatus(`${gatewayUrl}/healthz`, 200, 30_000, gateway);

    const agentA = await registerAgent(broker, "agent-a");
    const agentB = await registerAgent(broker, "agent-b");
    taskA = (await startTask(broker, "agent-a", ["gh:read"])).id;
    const taskB = (await startTask(broker, "agent-b", ["gh:read"])).id;
    markerTask = (await startTask(broker, "agent-b", ["gh:read"])).id;
    tokenA = await requestTaskToken(as, agentA, taskA);
    tokenB = await requestTaskToken(as, agentB, taskB);
    markerToken = await requestTaskToken(as, agentB, markerTask);
  });

  after(async () => {
    await Promise.allSettled(processes.map((running) => running.stop()));
    await upstream?.close();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  test("gateway serves before outage", async () => {
    for (const [name, token] of [
      ["A", tokenA],
      ["B", tokenB],
      ["marker", markerToken],
    ] as const) {
      const response = await readIssues(gatewayUrl, token);
      assert.equal(response.status, 200, `agent ${name}: ${response.text}`);
    }
  });

  test("valid token works after broker stops", async () => {
    // Ending a task sends a revocation, so once its token is rejected the gateway has just heard the
    // feed, and the silence bound is counted from about now rather than from an unknown heartbeat.
    markerEndedAt = performance.now();
    await broker.admin.call("POST", `/v1/tasks/${markerTask}/end`);
    let marker = await readIssues(gatewayUrl, markerToken);
    for (let attempt = 0; marker.status !== 401 && attempt < 50; attempt += 1) {
      await pause(20);
      marker = await readIssues(gatewayUrl, markerToken);
    }
    assert.equal(marker.status, 401);

    await brokerProcess.stop();
    stoppedAt = performance.now();
    const response = await readIssues(gatewayUrl, tokenA);
    const decisionId = String(response.headers["writ-decision-id"]);
    allowedDuringOutage.push(decisionId);

    assert.equal(response.status, 200, response.text);
    assert.ok(spooledDecisionIds(gatewayDataDir).includes(decisionId), "the decision is not in the spool");
  });

  test("gateway fails closed past silence bound", async () => {
    let response = await readIssues(gatewayUrl, tokenA);
    while (response.status === 200 && performance.now() - stoppedAt < pollLimitMs) {
      allowedDuringOutage.push(String(response.headers["writ-decision-id"]));
      await pause(pollIntervalMs);
      response = await readIssues(gatewayUrl, tokenA);
    }
    const deniedAt = performance.now();
    const deniedAfterMs = deniedAt - stoppedAt;
    console.log(`gateway denied agent A ${deniedAfterMs.toFixed(0)} ms after the broker stopped`);
    const health = await fetch(`${gatewayUrl}/healthz`);

    assert.equal(response.status, 503, response.text);
    assert.equal(response.json().error, "temporarily_unavailable");
    assert.ok(
      deniedAfterMs <= silenceBoundSeconds * 1000 + pollSlackMs,
      `the gateway denied only ${deniedAfterMs.toFixed(0)} ms after the broker stopped`,
    );
    // The gateway heard the marker's revocation after it was ended, so it must serve until then + bound.
    assert.ok(
      deniedAt - markerEndedAt >= silenceBoundSeconds * 1000,
      `the gateway denied ${(deniedAt - markerEndedAt).toFixed(0)} ms after it last heard the feed`,
    );
    assert.equal(health.status, 503);
  });

  test("gateway applies revocation after restart", async () => {
    brokerProcess = await startBrokerProcess(installation);
    processes.push(brokerProcess);
    const backAt = performance.now();
    await broker.admin.call("POST", "/v1/revoke", { task: taskA });
    const revokedAt = performance.now();

    const statuses: number[] = [];
    let response = await readIssues(gatewayUrl, tokenA);
    statuses.push(response.status);
    while (response.status !== 401 && performance.now() - revokedAt < pollLimitMs) {
      await pause(pollIntervalMs);
      response = await readIssues(gatewayUrl, tokenA);
      statuses.push(response.status);
    }
    const rejectedAt = performance.now();
    console.log(
      `after the restart, agent A was rejected ${(rejectedAt - revokedAt).toFixed(0)} ms after the revocation ` +
        `and ${(rejectedAt - backAt).toFixed(0)} ms after the broker answered again`,
    );
    const health = await fetch(`${gatewayUrl}/healthz`);
    const responseB = await readIssues(gatewayUrl, tokenB);

    assert.equal(response.status, 401, response.text);
    assert.deepEqual(
      statuses.filter((status) => status === 200),
      [],
    );
    assert.ok(
      rejectedAt - backAt <= reconnectMaxMs + propagationBoundMs + pollSlackMs,
      `agent A was rejected only ${(rejectedAt - backAt).toFixed(0)} ms after the broker answered again`,
    );
    assert.equal(health.status, 200);
    assert.equal(responseB.status, 200, responseB.text);
  });

  test("spooled decisions reach broker audit", async () => {
    let allowed: AuditRecord[] = [];
    const startedAt = performance.now();
    for (;;) {
      allowed = await auditEvents(broker.admin, "tool_call.allowed");
      const shipped = new Set(allowed.map((event) => event.data.decision_id));
      if (allowedDuringOutage.every((id) => shipped.has(id))) break;
      if (performance.now() - startedAt > pollLimitMs) break;
      await pause(pollIntervalMs);
    }
    const verdict = await broker.admin.call<ChainVerdict>("GET", "/v1/audit/verify");

    for (const decisionId of allowedDuringOutage) {
      const event = allowed.find((candidate) => candidate.data.decision_id === decisionId);
      assert.ok(event !== undefined, `decision ${decisionId} did not reach the audit log`);
      assert.equal(event.data.gateway, gatewayId);
    }
    assert.equal(verdict.ok, true, JSON.stringify(verdict));
  });

  describe("gateway started while broker is down", () => {
    let lateUrl: string;
    let late: WritProcess;

    before(async () => {
      await brokerProcess.stop();
      const port = await freePort();
      lateUrl = `http://127.0.0.1:${port}`;
      late = spawnGateway({
        brokerUrl: installation.issuer,
        keyFile: lateKeyFile,
        dataDir: join(root, "edge-late"),
        port,
        silenceBoundSeconds,
      });
      processes.push(late);
    });

    test("health check answers 503", async () => {
      await waitForStatus(`${lateUrl}/healthz`, 503, 30_000, late);
    });

    test("tool request answers 503", async () => {
      const withToken = await readIssues(lateUrl, tokenB);
      const withoutToken = await callTool(lateUrl, { target: "/tools/gh/repos/writ/issues" });

      assert.equal(withToken.status, 503, withToken.text);
      assert.equal(withToken.json().error, "temporarily_unavailable");
      assert.equal(withoutToken.status, 503, withoutToken.text);
    });

    test("serves once broker starts", async () => {
      brokerProcess = await startBrokerProcess(installation);
      processes.push(brokerProcess);
      const backAt = performance.now();

      const statuses: number[] = [];
      let response = await readIssues(lateUrl, tokenB);
      statuses.push(response.status);
      while (response.status !== 200 && performance.now() - backAt < pollLimitMs) {
        await pause(pollIntervalMs);
        response = await readIssues(lateUrl, tokenB);
        statuses.push(response.status);
      }
      const servedAfterMs = performance.now() - backAt;
      console.log(
        `the late gateway served agent B ${servedAfterMs.toFixed(0)} ms after the broker answered; ` +
          `statuses before: ${[...new Set(statuses)].join(", ")}`,
      );

      assert.equal(response.status, 200, response.text);
      // The token was valid throughout, so the gateway must never have called it invalid.
      assert.equal(statuses.includes(401), false, `statuses: ${statuses.join(", ")}`);
      // The gateway reconnects its feed and fetches policies within these intervals; the extra second
      // covers its first token request, the key and tool fetches and the poll interval.
      assert.ok(
        servedAfterMs <= Math.max(reconnectMaxMs, policyRefreshMs) + 1000,
        `the late gateway served only ${servedAfterMs.toFixed(0)} ms after the broker answered`,
      );
    });
  });
});
