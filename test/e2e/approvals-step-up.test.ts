import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { importJWK, type CryptoKey } from "jose";
import type * as oauth from "oauth4webapi";
import type { Approval } from "../../src/approvals/approvals.js";
import { AdminClient, ApiError } from "../../src/cli/admin-client.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  auditEvents,
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
} from "../support/agent-client.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";

const bearer = "step-up-bearer-51c0";

/** Registers a person with a fresh key and returns an API client acting as them. */
async function addPerson(broker: TestBroker, name: string, roles: string[]): Promise<AdminClient> {
  const key = await generateIdentityKey("Ed25519");
  const person = await broker.admin.call<{ spiffe_id: string }>("POST", "/v1/humans", {
    display_name: name,
    roles,
    public_jwk: key.publicJwk,
  });
  const privateKey = (await importJWK(key.privateJwk, "Ed25519")) as CryptoKey;
  return AdminClient.connect({
    issuer: broker.issuer,
    key: { clientId: person.spiffe_id, privateKey, kid: key.publicJwk.kid },
  });
}

async function apiErrorOf(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  assert.fail("expected the API to reject the call, it succeeded");
}

describe("step-up approval of tool calls", () => {
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let as: oauth.AuthorizationServer;
  let approver: AdminClient;
  let auditor: AdminClient;
  let token: AgentToken;

  function deploy(path: string, body: string) {
    return callTool(broker.issuer, {
      method: "POST",
      target: `/tools/ops/deploy/${path}`,
      token: token.accessToken,
      proofKeys: token.dpopKeys,
      headers: [["content-type", "application/json"]],
      body: Buffer.from(body),
    });
  }

  before(async () => {
    upstream = await startRecordingUpstream({
      bearer,
      basic: { user: "unused", password: "unused-password" },
      query: { name: "unused", value: "unused-value" },
    });
    broker = await startTestBroker();
    as = await discover(broker.issuer);
    await broker.admin.call("POST", "/v1/secrets/ops-token", { value: bearer });
    await broker.admin.call("POST", "/v1/tools", {
      name: "ops",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /status/**" },
        { name: "deploy", spec: "POST /deploy/**", approval: { role: "approver", count: 1 } },
      ],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:ops-token}"] },
    });
    approver = await addPerson(broker, "Ann", ["approver"]);
    auditor = await addPerson(broker, "Aud", ["auditor"]);
    const agent = await registerAgent(broker, "deployer");
    const task = await startTask(broker, agent.name, ["ops:read", "ops:deploy"]);
    token = await requestTaskToken(as, agent, task.id);
  });

  after(async () => {
    await broker?.close();
    await upstream?.close();
  });

  test("action without a rule passes unheld", async () => {
    const response = await callTool(broker.issuer, {
      target: "/tools/ops/status/now",
      token: token.accessToken,
      proofKeys: token.dpopKeys,
    });
    assert.equal(response.status, 200);
  });

  test("call held, then allowed once after approval", async () => {
    const held = await deploy("prod", '{"version":"1.2.3"}');
    assert.equal(held.status, 403);
    assert.equal(held.headers["retry-after"], "5");
    assert.equal(held.json().status, "pending");
    const approvalId = held.json().approval_id as string;
    assert.match(approvalId, /^[0-9a-f-]{36}$/);
    assert.equal(upstream.seen.filter((seen) => seen.url.startsWith("/deploy/")).length, 0);

    const again = await deploy("prod", '{"version":"1.2.3"}');
    assert.equal(again.json().approval_id, approvalId, "a repeated call joins the open request");

    const granted = await approver.call<Approval>("POST", `/v1/approvals/${approvalId}/approve`);
    assert.equal(granted.status, "granted");

    const allowed = await deploy("prod", '{"version":"1.2.3"}');
    assert.equal(allowed.status, 200);
    const forwarded = upstream.seen.filter((seen) => seen.url === "/deploy/prod");
    assert.equal(forwarded.length, 1);
    assert.equal(forwarded[0]?.body.toString(), '{"version":"1.2.3"}');
    assert.equal(
      allowed.json().body_sha256,
      createHash("sha256").update('{"version":"1.2.3"}').digest("hex"),
    );

    const reused = await deploy("prod", '{"version":"1.2.3"}');
    assert.equal(reused.status, 403, "an approval is spent by one call");
    assert.notEqual(reused.json().approval_id, approvalId);
    const shown = await approver.call<Approval>("GET", `/v1/approvals/${approvalId}`);
    assert.equal(shown.status, "used");
    assert.equal(shown.votes.length, 1);
  });

  test("approval refused for other body or path", async () => {
    const held = await deploy("staging", '{"version":"2.0.0"}');
    const approvalId = held.json().approval_id as string;
    await approver.call("POST", `/v1/approvals/${approvalId}/approve`);

    const otherBody = await deploy("staging", '{"version":"2.0.1"}');
    assert.equal(otherBody.status, 403);
    assert.equal(otherBody.json().status, "pending");
    assert.notEqual(otherBody.json().approval_id, approvalId);

    const otherPath = await deploy("prod", '{"version":"2.0.0"}');
    assert.equal(otherPath.status, 403);
    assert.notEqual(otherPath.json().approval_id, approvalId);

    const exact = await deploy("staging", '{"version":"2.0.0"}');
    assert.equal(exact.status, 200, "the approval still serves the exact call it was given for");
    assert.equal(upstream.seen.filter((seen) => seen.url === "/deploy/staging").length, 1);
  });

  test("rejected step-up denied", async () => {
    const held = await deploy("prod", '{"version":"6.6.6"}');
    const approvalId = held.json().approval_id as string;
    const rejected = await approver.call<Approval>("POST", `/v1/approvals/${approvalId}/reject`);
    assert.equal(rejected.status, "rejected");

    const denied = await deploy("prod", '{"version":"6.6.6"}');
    assert.equal(denied.status, 403);
    assert.equal(denied.json().status, "rejected");
    assert.equal(denied.json().approval_id, approvalId);
    assert.equal(denied.headers["retry-after"], undefined);
    const late = await apiErrorOf(approver.call("POST", `/v1/approvals/${approvalId}/approve`));
    assert.equal(late.code, "conflict");
  });

  test("task initiator and non-approvers may not vote", async () => {
    const held = await deploy("prod", '{"version":"7.0.0"}');
    const approvalId = held.json().approval_id as string;

    const byInitiator = await apiErrorOf(broker.admin.call("POST", `/v1/approvals/${approvalId}/approve`));
    assert.equal(byInitiator.code, "access_denied");
    const byAuditor = await apiErrorOf(auditor.call("POST", `/v1/approvals/${approvalId}/approve`));
    assert.equal(byAuditor.code, "access_denied");
    const open = await approver.call<Approval>("GET", `/v1/approvals/${approvalId}`);
    assert.equal(open.status, "pending");
    assert.equal(open.votes.length, 0);
  });

  test("every step of an approval audited", async () => {
    for (const kind of [
      "approval.requested",
      "approval.voted",
      "approval.granted",
      "approval.rejected",
      "approval.used",
      "tool_call.held",
    ]) {
      const events = await auditEvents(broker.admin, kind);
      assert.ok(events.length > 0, `no ${kind} event`);
    }
    const held = await auditEvents(broker.admin, "tool_call.held");
    assert.equal(typeof held[0]?.data.approval_id, "string");
  });

  test("rule validated at registration", async () => {
    const error = await apiErrorOf(
      broker.admin.call("POST", "/v1/tools", {
        name: "ops-bad",
        kind: "http",
        environment: "prod",
        actions: [{ name: "deploy", spec: "POST /deploy/**", approval: { people: ["Ann"], count: 1 } }],
      }),
    );
    assert.equal(error.code, "invalid_request");
    assert.match(error.description, /not a person's SPIFFE ID/);
  });
});
