// An audit store that fails for real: the broker runs on PostgreSQL as an ordinary role that owns its
// database, and the test revokes that role's INSERT and UPDATE on the audit tables while the broker
// runs. Every other table still works. Tool calls and token requests must then be denied, because
// nothing may take effect before its event is durable. A revocation must still take effect at once,
// raise an alert, and have its event written once the privileges come back.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { decodeJwt, decodeProtectedHeader } from "jose";
import pg from "pg";
import type * as oauth from "oauth4webapi";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { EvidenceVerdict } from "../../src/audit/checkpoint-verify.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
  type TestAgent,
} from "../support/agent-client.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";
import { startPostgres, type PostgresCluster } from "../support/postgres.js";

const upstreamBearer = "upstream-bearer-audit-failure";
const appRole = "writ_app";
const appPassword = "writ-app-password-for-this-test";
const databaseName = "audit_failure";

/** How long the test waits for an asynchronous outcome (an alert, a retried event) before failing. */
const waitLimitMs = 30_000;

/** Polls `check` every 100 ms until it returns a value other than undefined, or fails after the limit. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + waitLimitMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    assert.ok(Date.now() < deadline, `${what} did not happen within ${waitLimitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Starts a loopback receiver of alert webhooks that keeps each posted JWT. */
async function startAlertReceiver(): Promise<{ url: string; jwts: string[]; server: Server }> {
  const jwts: string[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      jwts.push(Buffer.concat(chunks).toString("utf8"));
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`, jwts, server };
}

describe("audit store failure", () => {
  let cluster: PostgresCluster;
  let superuser: pg.Client;
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let alerts: Awaited<ReturnType<typeof startAlertReceiver>>;
  let as: oauth.AuthorizationServer;
  let agent: TestAgent;
  let taskId: string;
  let token: AgentToken;

  /** Runs one statement as the superuser in the broker's database. */
  async function asSuperuser(statement: string): Promise<void> {
    await superuser.query(statement);
  }

  function callUpstream(path: string) {
    return callTool(broker.issuer, {
      target: `/tools/api/repos/${path}`,
      token: token.accessToken,
      proofKeys: token.dpopKeys,
    });
  }

  before(async () => {
    cluster = await startPostgres();
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    try {
      await admin.query(`create role ${appRole} login password '${appPassword}'`);
      await admin.query(`create database ${databaseName} owner ${appRole}`);
    } finally {
      await admin.end();
    }
    const url = new URL(cluster.url);
    url.username = appRole;
    url.password = appPassword;
    url.pathname = `/${databaseName}`;
    const superUrl = new URL(cluster.url);
    superUrl.pathname = `/${databaseName}`;
    superuser = new pg.Client({ connectionString: superUrl.toString() });
    await superuser.connect();

    upstream = await startRecordingUpstream({
      bearer: upstreamBearer,
      basic: { user: "unused", password: "unused-password" },
      query: { name: "unused", value: "unused-value" },
    });
    alerts = await startAlertReceiver();
    broker = await startTestBroker({ postgresUrl: url.toString(), config: { alert_webhooks: [alerts.url] } });
    as = await discover(broker.issuer);
    await broker.admin.call("POST", "/v1/secrets/api-token", { value: upstreamBearer });
    await broker.admin.call("POST", "/v1/tools", {
      name: "api",
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /repos/**" }],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:api-token}"] },
    });
    agent = await registerAgent(broker, "failure-bot");
    taskId = (await startTask(broker, agent.name, ["api:read"])).id;
    token = await requestTaskToken(as, agent, taskId);
  });

  after(async () => {
    await broker?.close();
    await superuser?.end();
    await upstream?.close();
    await new Promise((resolve) => alerts?.server.close(resolve));
    await cluster?.stop();
  });

  test("call is allowed while audit works", async () => {
    const response = await callUpstream("before");
    assert.equal(response.status, 200);
    assert.deepEqual(
      upstream.seen.map((seen) => seen.url),
      ["/repos/before"],
    );
  });

  test("call is denied while audit fails", async () => {
    await asSuperuser(`revoke insert, update on audit_events, audit_head from ${appRole}`);
    const response = await callUpstream("during");
    assert.notEqual(response.status, 200, `the gateway answered ${response.status}: ${response.text}`);
    assert.ok(response.status >= 400, `the gateway answered ${response.status}`);
    assert.deepEqual(
      upstream.seen.map((seen) => seen.url),
      ["/repos/before"],
    );
  });

  test("token request is refused while audit fails", async () => {
    await assert.rejects(requestTaskToken(as, agent, taskId));
  });

  test("revocation takes effect while audit fails", async () => {
    // The admin client still has the token it obtained while the audit log worked.
    await broker.admin.call("POST", "/v1/revoke", { task: taskId });
    const task = await broker.admin.call<{ status: string }>("GET", `/v1/tasks/${taskId}`);
    assert.equal(task.status, "revoked");
    const response = await callUpstream("after-revoke");
    assert.equal(response.status, 401, response.text);
    assert.deepEqual(
      upstream.seen.map((seen) => seen.url),
      ["/repos/before"],
    );
  });

  test("failing revocation event raises an alert", async () => {
    const jwt = await eventually("an audit_append.failing alert", async () =>
      alerts.jwts.find((candidate) => decodeJwt(candidate).event === "audit_append.failing"),
    );
    assert.equal(decodeProtectedHeader(jwt).typ, "writ-alert+jwt");
    const data = decodeJwt(jwt).data as { audit_kind?: string; task_id?: string };
    assert.equal(data.audit_kind, "task.revoked");
    assert.equal(data.task_id, taskId);
  });

  test("revocation event is written after recovery", async () => {
    await asSuperuser(`grant insert, update on audit_events, audit_head to ${appRole}`);
    const revoked = await eventually("the task.revoked event", async () => {
      const { events } = await broker.admin.call<{ events: AuditRecord[] }>(
        "GET",
        `/v1/audit?task=${encodeURIComponent(taskId)}`,
      );
      return events.find((event) => event.kind === "task.revoked");
    });
    assert.equal(revoked.task_id, taskId);
    const verdict = await broker.admin.call<EvidenceVerdict>("GET", "/v1/audit/verify");
    assert.equal(verdict.ok, true, JSON.stringify(verdict));
  });
});
