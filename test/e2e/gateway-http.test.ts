import { test, describe, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { Readable } from "node:stream";
import { Client } from "undici";
import type * as oauth from "oauth4webapi";
import type { AuditRecord } from "../../src/audit/chain.js";
import { ApiError, type AdminClient } from "../../src/cli/admin-client.js";
import type { Task } from "../../src/tasks/tasks.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  auditEvents,
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
  type TestAgent,
} from "../support/agent-client.js";
import {
  callTool,
  signResourceProof,
  startRecordingUpstream,
  targetsUnder,
  type RecordingUpstream,
  type ToolCall,
  type ToolResponse,
} from "../support/gateway-client.js";

const bearerSecret = "upstream-bearer-3f9c1a0d";
const basicSecret = "upstream-basic-7d21e0c4";
// `+`, `/` and `=` are percent-encoded in a query, so the encoded form differs from the value.
const querySecret = "Qk+7/upstream=query";
/** The `max_body_bytes` of the tool `gh-small`. */
const smallBodyLimit = 4096;
const encodedQuerySecret = new URLSearchParams({ v: querySecret }).toString().slice("v=".length);

/** Reads every audit event, all pages of `GET /v1/audit`. */
async function allAuditEvents(admin: AdminClient): Promise<AuditRecord[]> {
  const events: AuditRecord[] = [];
  let after = 0;
  for (;;) {
    const page = await admin.call<{ events: AuditRecord[] }>("GET", `/v1/audit?after=${after}&limit=1000`);
    const last = page.events.at(-1);
    if (last === undefined) return events;
    events.push(...page.events);
    after = last.seq;
  }
}

/** Calls `check` every 50 ms until it returns true, failing after `limitMs`. */
async function waitFor(check: () => Promise<boolean>, limitMs = 5000): Promise<void> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > limitMs) assert.fail(`condition not met within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Awaits an admin API call that must fail, and returns its error. */
async function apiErrorOf(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  assert.fail("expected the admin API to reject the call, it succeeded");
}

describe("gateway for HTTP tools", () => {
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let as: oauth.AuthorizationServer;
  let worker: TestAgent;
  let peer: TestAgent;
  /** The worker's token for `gh` with `read`, `upload`, `moved` and `deploy`. */
  let workerToken: AgentToken;
  let peerToken: AgentToken;

  /** Calls the gateway with `token`, its proof signed by the key the token is bound to. */
  async function call(
    token: AgentToken,
    target: string,
    options: Partial<ToolCall> = {},
  ): Promise<ToolResponse> {
    return callTool(broker.issuer, {
      target,
      token: token.accessToken,
      proofKeys: token.dpopKeys,
      ...options,
    });
  }

  /** Starts a task for `agent` and obtains its token for the task's one tool. */
  async function taskToken(agent: TestAgent, actions: string[]): Promise<{ task: Task; token: AgentToken }> {
    const task = await startTask(broker, agent.name, actions);
    return { task, token: await requestTaskToken(as, agent, task.id) };
  }

  /** Calls `target` every 20 ms until the response is not 200 or `limitMs` passes, and returns the last response. */
  async function pollUntilRefused(token: AgentToken, target: string, limitMs: number) {
    const started = performance.now();
    let response = await call(token, target);
    while (response.status === 200 && performance.now() - started < limitMs) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      response = await call(token, target);
    }
    return { response, elapsedMs: performance.now() - started };
  }

  before(async () => {
    upstream = await startRecordingUpstream({
      bearer: bearerSecret,
      basic: { user: "writ-bot", password: basicSecret },
      query: { name: "api_key", value: querySecret },
    });
    broker = await startTestBroker();
    as = await discover(broker.issuer);
    await broker.admin.call("POST", "/v1/secrets/gh-token", { value: bearerSecret });
    await broker.admin.call("POST", "/v1/secrets/basic-password", { value: basicSecret });
    await broker.admin.call("POST", "/v1/secrets/query-key", { value: querySecret });

    const read = { name: "read", spec: "GET /repos/*/issues/**" };
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh",
      kind: "http",
      environment: "prod",
      actions: [
        read,
        { name: "admin", spec: "GET /admin/**" },
        { name: "upload", spec: "POST /uploads/**" },
        { name: "moved", spec: "GET /moved/**" },
        { name: "deploy", spec: "POST /deploy/**", risk: "high" },
      ],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:gh-token}"] },
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh-basic",
      kind: "http",
      environment: "prod",
      actions: [read],
      config: { upstream: upstream.url, inject: ["basic:writ-bot=${secret:basic-password}"] },
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh-query",
      kind: "http",
      environment: "prod",
      actions: [read],
      config: { upstream: upstream.url, inject: ["query:api_key=${secret:query-key}"] },
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh-small",
      kind: "http",
      environment: "prod",
      actions: [{ name: "upload", spec: "POST /uploads/**" }],
      config: {
        upstream: upstream.url,
        inject: ["header:Authorization=Bearer ${secret:gh-token}"],
        max_body_bytes: smallBodyLimit,
      },
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "other",
      kind: "http",
      environment: "prod",
      actions: [read],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:gh-token}"] },
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "stage",
      kind: "http",
      environment: "staging",
      actions: [read],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:gh-token}"] },
    });

    worker = await registerAgent(broker, "worker");
    peer = await registerAgent(broker, "peer");
    workerToken = (await taskToken(worker, ["gh:read", "gh:upload", "gh:moved", "gh:deploy"])).token;
    peerToken = (await taskToken(peer, ["gh:read"])).token;
  });

  after(async () => {
    await broker.close();
    await upstream.close();
  });

  describe("allowed call", () => {
    let response: ToolResponse;

    before(async () => {
      upstream.seen.length = 0;
      response = await call(workerToken, "/tools/gh/repos/acme/issues/1");
    });

    test("returns upstream response", () => {
      assert.equal(response.status, 200);
      assert.equal(response.json().url, "/repos/acme/issues/1");
    });

    test("upstream receives injected credential", () => {
      assert.equal(upstream.seen.length, 1);
      assert.equal(upstream.seen[0]?.headers.authorization, `Bearer ${bearerSecret}`);
    });

    test("response omits injected secret", () => {
      assert.equal(response.text.includes(bearerSecret), false);
      assert.equal(JSON.stringify(response.headers).includes(bearerSecret), false);
    });

    test("echoing response header is removed", () => {
      assert.equal(response.headers["x-echo-authorization"], undefined);
      assert.equal(response.headers["x-upstream"], "ok");
    });

    test("echo in other case removed", () => {
      assert.equal(response.headers["x-echo-upper"], undefined);
    });

    test("base64 echo removed", () => {
      assert.equal(response.headers["x-echo-base64"], undefined);
    });

    test("agent token and proof not forwarded", () => {
      const seen = upstream.seen[0];
      assert.equal(seen?.headers.dpop, undefined);
      assert.notEqual(seen?.headers.authorization, `DPoP ${workerToken.accessToken}`);
      assert.equal(JSON.stringify(seen?.headers).includes(workerToken.accessToken), false);
    });

    test("response carries decision id", () => {
      assert.match(String(response.headers["writ-decision-id"]), /^[0-9a-f-]{36}$/);
    });
  });

  describe("basic credential", () => {
    let response: ToolResponse;

    before(async () => {
      upstream.seen.length = 0;
      const { token } = await taskToken(worker, ["gh-basic:read"]);
      response = await call(token, "/tools/gh-basic/repos/acme/issues/1");
    });

    test("upstream receives basic credential", () => {
      const expected = `Basic ${Buffer.from(`writ-bot:${basicSecret}`).toString("base64")}`;
      assert.equal(response.status, 200);
      assert.equal(upstream.seen[0]?.headers.authorization, expected);
    });

    test("echoed basic credential removed", () => {
      assert.equal(response.headers["x-echo-authorization"], undefined);
      assert.equal(response.headers["x-upstream"], "ok");
    });
  });

  describe("query credential", () => {
    let response: ToolResponse;

    before(async () => {
      upstream.seen.length = 0;
      const { token } = await taskToken(worker, ["gh-query:read"]);
      response = await call(token, "/tools/gh-query/repos/acme/issues/1?api_key=forged&page=2");
    });

    test("secret reaches upstream", () => {
      const seen = new URL(upstream.seen[0]?.url ?? "/", upstream.url);
      assert.equal(response.status, 200);
      assert.deepEqual(seen.searchParams.getAll("api_key"), [querySecret]);
    });

    test("other query parameters kept", () => {
      const seen = new URL(upstream.seen[0]?.url ?? "/", upstream.url);
      assert.deepEqual(seen.searchParams.getAll("page"), ["2"]);
    });

    test("echoed query secret removed", () => {
      assert.equal(response.headers["x-echo-url"], undefined);
      assert.equal(JSON.stringify(response.headers).includes(encodedQuerySecret), false);
    });

    test("secret absent from audit", async () => {
      const audit = JSON.stringify(await allAuditEvents(broker.admin));
      assert.ok(audit.includes('"tool":"gh-query"'), "the call was audited");
      assert.equal(audit.includes(querySecret), false);
      assert.equal(audit.includes(encodedQuerySecret), false);
    });
  });

  describe("forwarding headers", () => {
    const forged: [string, string][] = [
      ["X-Forwarded-For", "10.0.0.1"],
      ["X-Forwarded-Host", "admin.internal"],
      ["Forwarded", "for=10.0.0.1;host=admin.internal"],
      ["X-Real-IP", "10.0.0.1"],
      ["True-Client-IP", "10.0.0.1"],
      ["CF-Connecting-IP", "10.0.0.1"],
      ["X-HTTP-Method-Override", "DELETE"],
      ["X-Original-Method", "DELETE"],
      ["X-Original-URL", "/admin/delete"],
      ["X-Rewrite-URL", "/admin/delete"],
      ["Writ-Decision-Id", "forged-decision"],
    ];
    let response: ToolResponse;

    before(async () => {
      upstream.seen.length = 0;
      response = await call(workerToken, "/tools/gh/repos/acme/issues/2", { headers: forged });
    });

    test("call still allowed", () => {
      assert.equal(response.status, 200);
    });

    test("upstream sees original method", () => {
      assert.equal(upstream.seen[0]?.method, "GET");
    });

    for (const [name] of forged) {
      test(`${name} not forwarded`, () => {
        assert.equal(upstream.seen[0]?.headers[name.toLowerCase()], undefined);
      });
    }

    test("forwarded user without token", async () => {
      const refused = await callTool(broker.issuer, {
        target: "/tools/gh/repos/acme/issues/1",
        headers: [["X-Forwarded-User", "admin"]],
      });
      assert.equal(refused.status, 401);
      assert.equal(refused.json().error, "invalid_token");
    });
  });

  describe("credential misuse", () => {
    beforeEach(() => {
      upstream.seen.length = 0;
    });

    afterEach(() => {
      assert.deepEqual(upstream.seen, [], "a refused request reached the upstream");
    });

    test("proof by another agent's key", async () => {
      const response = await call(workerToken, "/tools/gh/repos/acme/issues/1", {
        proofKeys: peerToken.dpopKeys,
      });
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_dpop_proof");
    });

    test("bad proof outranks a denied action", async () => {
      // The decision is prepared while the proof is checked; none of it may be used or recorded.
      const response = await call(workerToken, "/tools/gh/admin/users", { proofKeys: peerToken.dpopKeys });
      const body = response.json();
      assert.equal(response.status, 401);
      assert.equal(body.error, "invalid_dpop_proof");

      const denied = (await auditEvents(broker.admin, "tool_call.denied")).find(
        (event) => event.data.decision_id === body.decision_id,
      );
      assert.equal(denied?.actor, "anonymous");
      assert.equal(denied?.task_id, null);
      assert.equal(denied?.data.action, null);
      assert.deepEqual(denied?.data.policies, []);
    });

    test("concurrent proof replay passes once", async () => {
      // The signature is checked while the decision is prepared; the jti must still be spent once.
      const target = "/tools/gh/repos/acme/issues/1";
      const proof = await signResourceProof(
        workerToken.dpopKeys,
        "GET",
        `${broker.issuer}${target}`,
        workerToken.accessToken,
      );
      const responses = await Promise.all(
        Array.from({ length: 8 }, () =>
          callTool(broker.issuer, {
            target,
            headers: [
              ["Authorization", `DPoP ${workerToken.accessToken}`],
              ["DPoP", proof],
            ],
          }),
        ),
      );
      const statuses = responses.map((response) => response.status).sort();
      assert.deepEqual(statuses, [200, 401, 401, 401, 401, 401, 401, 401]);
      assert.equal(upstream.seen.length, 1);
      upstream.seen.length = 0;
    });

    test("bad proof outranks a rejected path", async () => {
      const response = await call(workerToken, "/tools/gh/repos/acme%2Fissues", {
        proofKeys: peerToken.dpopKeys,
      });
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_dpop_proof");
    });

    test("token for another tool", async () => {
      const { token } = await taskToken(worker, ["other:read"]);
      const response = await call(token, "/tools/gh/repos/acme/issues/1");
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_token");
    });

    test("DPoP-bound token as Bearer", async () => {
      const response = await call(workerToken, "/tools/gh/repos/acme/issues/1", { scheme: "Bearer" });
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_token");
    });

    test("two Authorization headers", async () => {
      const response = await call(workerToken, "/tools/gh/repos/acme/issues/1", {
        headers: [["Authorization", `DPoP ${workerToken.accessToken}`]],
      });
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_token");
    });
  });

  describe("revocation", () => {
    test("ended task denied within 1 s", async () => {
      const { task, token } = await taskToken(worker, ["gh:read"]);
      const before = await call(token, "/tools/gh/repos/acme/issues/1");
      assert.equal(before.status, 200);

      await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
      const { response, elapsedMs } = await pollUntilRefused(token, "/tools/gh/repos/acme/issues/1", 1000);
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_token");
      assert.ok(elapsedMs < 1000, `refused after ${elapsedMs.toFixed(0)} ms`);
    });

    test("revoked agent denied, other agent kept", async () => {
      const revoked = await registerAgent(broker, "revoked-a");
      const kept = await registerAgent(broker, "kept-b");
      const revokedToken = (await taskToken(revoked, ["gh:read"])).token;
      const keptToken = (await taskToken(kept, ["gh:read"])).token;
      assert.equal((await call(revokedToken, "/tools/gh/repos/acme/issues/1")).status, 200);

      await broker.admin.call("POST", "/v1/revoke", { agent: "revoked-a" });
      const { response, elapsedMs } = await pollUntilRefused(
        revokedToken,
        "/tools/gh/repos/acme/issues/1",
        1000,
      );
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_token");
      assert.ok(elapsedMs < 1000, `refused after ${elapsedMs.toFixed(0)} ms`);

      const keptResponse = await call(keptToken, "/tools/gh/repos/acme/issues/1");
      assert.equal(keptResponse.status, 200);
    });
  });

  describe("task scope", () => {
    test("action outside task is audited", async () => {
      upstream.seen.length = 0;
      const response = await call(workerToken, "/tools/gh/admin/users");
      const body = response.json();
      assert.equal(response.status, 403);
      assert.equal(body.error, "insufficient_scope");
      assert.equal(typeof body.decision_id, "string");

      const denied = (await auditEvents(broker.admin, "tool_call.denied")).find(
        (event) => event.data.decision_id === body.decision_id,
      );
      assert.equal(denied?.data.action, "admin");
      assert.equal(denied?.data.path, "/admin/users");
      assert.equal(denied?.data.decision, "deny");
      assert.deepEqual(upstream.seen, []);
    });

    test("task in other environment rejected", async () => {
      const error = await apiErrorOf(startTask(broker, worker.name, ["gh:read"], 600, "staging"));
      assert.equal(error.status, 400);
      assert.equal(error.code, "invalid_request");
    });

    test("staging tool rejected for prod task", async () => {
      const error = await apiErrorOf(startTask(broker, worker.name, ["stage:read"]));
      assert.equal(error.status, 400);
      assert.equal(error.code, "invalid_request");
      assert.match(error.description, /environment "staging"/);
    });

    test("high-risk action needs site policy", async () => {
      const denied = await call(workerToken, "/tools/gh/deploy/web", {
        method: "POST",
        body: Buffer.from("{}"),
      });
      assert.equal(denied.status, 403);
      assert.equal(denied.json().error, "insufficient_scope");

      await broker.admin.call("POST", "/v1/policies", {
        id: "permit-deploy",
        text: 'permit (principal, action == Action::"gh:deploy", resource);',
      });
      const allowed = await call(workerToken, "/tools/gh/deploy/web", {
        method: "POST",
        body: Buffer.from("{}"),
      });
      assert.equal(allowed.status, 200);
    });
  });

  describe("bodies and redirects", () => {
    test("1 MiB body streams through", async () => {
      upstream.seen.length = 0;
      const body = randomBytes(1024 * 1024);
      const response = await call(workerToken, "/tools/gh/uploads/blob", {
        method: "POST",
        headers: [["content-type", "application/octet-stream"]],
        body,
      });
      assert.equal(response.status, 200);
      assert.equal(upstream.seen[0]?.body.length, body.length);
      assert.equal(response.json().body_sha256, createHash("sha256").update(body).digest("hex"));
    });

    test("body without content type streams through", async () => {
      upstream.seen.length = 0;
      const body = Buffer.from("plain bytes, no content type");
      const response = await call(workerToken, "/tools/gh/uploads/note", { method: "POST", body });
      assert.equal(response.status, 200);
      assert.deepEqual(upstream.seen[0]?.body, body);
    });

    test("declared oversize body rejected", async () => {
      upstream.seen.length = 0;
      const { token } = await taskToken(worker, ["gh-small:upload"]);
      const response = await call(token, "/tools/gh-small/uploads/blob", {
        method: "POST",
        body: randomBytes(smallBodyLimit + 1),
      });
      assert.equal(response.status, 400);
      assert.equal(response.json().error, "invalid_request");
      assert.deepEqual(upstream.seen, []);
    });

    test("chunked oversize body rejected", async () => {
      const { token } = await taskToken(worker, ["gh-small:upload"]);
      const body = Readable.from([randomBytes(smallBodyLimit), randomBytes(smallBodyLimit)]);
      const response = await call(token, "/tools/gh-small/uploads/blob", { method: "POST", body });
      assert.equal(response.status, 400);
      assert.equal(response.json().error, "invalid_request");
    });

    test("upstream response cut short is 503", async () => {
      const response = await call(workerToken, "/tools/gh/moved/truncated");
      assert.equal(response.status, 503);
      assert.equal(response.json().error, "temporarily_unavailable");

      // The allow stays the decision's one verdict, and the failure follows it.
      const decisionId = response.json().decision_id;
      const events = (await allAuditEvents(broker.admin)).filter(
        (event) => event.data.decision_id === decisionId,
      );
      assert.deepEqual(
        events.map((event) => event.kind),
        ["tool_call.allowed", "tool_call.failed"],
      );
    });

    test("long body cut short ends the response", async () => {
      const client = new Client(broker.issuer);
      try {
        const response = await client.request({
          method: "GET",
          path: "/tools/gh/moved/truncated-large",
          headers: {
            authorization: `DPoP ${workerToken.accessToken}`,
            dpop: await signResourceProof(
              workerToken.dpopKeys,
              "GET",
              `${broker.issuer}/tools/gh/moved/truncated-large`,
              workerToken.accessToken,
            ),
          },
          bodyTimeout: 10_000,
        });
        assert.equal(response.statusCode, 200);
        // The gateway closes the connection, so the client sees the body end early, not time out.
        await assert.rejects(response.body.arrayBuffer(), (error: { code?: string }) => {
          assert.notEqual(error.code, "UND_ERR_BODY_TIMEOUT");
          return true;
        });

        const decisionId = String(response.headers["writ-decision-id"]);
        await waitFor(async () =>
          (await allAuditEvents(broker.admin)).some(
            (event) => event.kind === "tool_call.failed" && event.data.decision_id === decisionId,
          ),
        );
      } finally {
        await client.close();
      }
    });

    test("expect 100-continue body forwarded", async () => {
      upstream.seen.length = 0;
      const body = randomBytes(1500);
      const target = "/tools/gh/uploads/expect";
      const proof = await signResourceProof(
        workerToken.dpopKeys,
        "POST",
        `${broker.issuer}${target}`,
        workerToken.accessToken,
      );
      const status = await new Promise<number>((resolve, reject) => {
        const outgoing = httpRequest(`${broker.issuer}${target}`, {
          method: "POST",
          headers: {
            authorization: `DPoP ${workerToken.accessToken}`,
            dpop: proof,
            expect: "100-continue",
            "content-length": String(body.length),
          },
        });
        outgoing.on("continue", () => outgoing.end(body));
        outgoing.on("response", (incoming) => {
          incoming.resume();
          incoming.on("end", () => resolve(incoming.statusCode ?? 0));
        });
        outgoing.on("error", reject);
      });
      assert.equal(status, 200);
      assert.equal(upstream.seen[0]?.body.length, body.length);
      assert.equal(upstream.seen[0]?.headers.expect, undefined);
    });

    test("redirect returned unfollowed", async () => {
      upstream.seen.length = 0;
      const response = await call(workerToken, "/tools/gh/moved/repo");
      assert.equal(response.status, 302);
      assert.equal(response.headers.location, `${upstream.url}/admin/after-redirect`);
      assert.deepEqual(targetsUnder(upstream.seen, "/admin"), []);
    });
  });
});
