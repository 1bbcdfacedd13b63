import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
} from "../support/agent-client.js";
import {
  callTool,
  signResourceProof,
  startRecordingUpstream,
  type RecordingUpstream,
  type ToolResponse,
} from "../support/gateway-client.js";

const bearerSecret = "upstream-bearer-91c2e5aa";

/**
 * Raw request targets that try to reach `GET /admin/**`, which the task does not name, from the
 * allowed `GET /repos/*\/issues/**`, with the status and error code each must get.
 */
const tricks: [target: string, status: number, error: string][] = [
  ["/tools/t/repos/x/issues/../../../admin/x", 403, "insufficient_scope"],
  ["/tools/t/a/../../admin", 400, "invalid_request"],
  ["/tools/t/../t/admin/x", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/%2e%2e/%2e%2e/%2e%2e/admin/x", 403, "insufficient_scope"],
  ["/tools/t/repos/x/issues/%2E%2E/%2E%2E/%2E%2E/admin/x", 403, "insufficient_scope"],
  ["/tools/t/repos/x/issues/.%2e/%2E./.%2E/admin/x", 403, "insufficient_scope"],
  ["/tools/t/repos/x/issues/1/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/admin", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/..%2F..%2F..%2Fadmin/x", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/..%2f..%2f..%2fadmin/x", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/..%5C..%5C..%5Cadmin/x", 400, "invalid_request"],
  ["/tools/t//admin/x", 403, "insufficient_scope"],
  ["/tools/t/repos/x/issues/..;x/../../admin", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/1;/admin", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/%252e%252e/%252e%252e/%252e%252e/admin", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/..\\..\\..\\admin\\x", 400, "invalid_request"],
  ["/tools/t/repos/x/issues/%00/../../../../admin", 400, "invalid_request"],
  ["/tools/t/ADMIN/x", 403, "insufficient_scope"],
  ["/tools/t/Repos/x/issues/1", 403, "insufficient_scope"],
  // A request target has no fragment. The forwarder's URL parser would cut the path at `#`, so the
  // upstream would see `/repos/x`, a path the task does not name.
  ["/tools/t/repos/x#/issues/1", 400, "invalid_request"],
];

/** Sends `head` (a request line and fields) over a new connection and returns the status code. */
async function sendRaw(origin: string, head: string): Promise<number> {
  const { hostname, port } = new URL(origin);
  const socket = connect(Number(port), hostname);
  socket.write(`${head}\r\nConnection: close\r\n\r\n`);
  let reply = "";
  for await (const chunk of socket) reply += String(chunk);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1];
  if (status === undefined)
    assert.fail(`no HTTP/1.1 status line in the reply: ${JSON.stringify(reply.slice(0, 200))}`);
  return Number(status);
}

/** Allowed raw targets and the exact target the upstream must see for each. */
const normalised: [target: string, upstreamTarget: string][] = [
  ["/tools/t/repos/x/./issues//1", "/repos/x/issues/1"],
  ["/tools/t/repos/x/issues/2/../3", "/repos/x/issues/3"],
  ["/tools/t/repos/%78/issues/%34", "/repos/x/issues/4"],
  ["/tools/t/repos/x/issues/a%2db%7e", "/repos/x/issues/a-b~"],
  ["/tools/t/repos/x/issues/a%20b", "/repos/x/issues/a%20b"],
  ["/tools/t/repos/x/issues/a%3ab", "/repos/x/issues/a%3Ab"],
  ["/tools/t/repos/x/issues/5?state=open&q=a%2Fb", "/repos/x/issues/5?state=open&q=a%2Fb"],
  ["/tools/t/repos/x/issues/6/", "/repos/x/issues/6/"],
  ["/tools/ci/Repos/X/ISSUES/7", "/repos/x/issues/7"],
];

describe("gateway path normalisation", () => {
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let token: AgentToken;
  let caseInsensitiveToken: AgentToken;

  async function call(agentToken: AgentToken, target: string): Promise<ToolResponse> {
    return callTool(broker.issuer, { target, token: agentToken.accessToken, proofKeys: agentToken.dpopKeys });
  }

  before(async () => {
    upstream = await startRecordingUpstream({
      bearer: bearerSecret,
      basic: { user: "unused", password: "unused-password" },
      query: { name: "unused", value: "unused-value" },
    });
    broker = await startTestBroker();
    await broker.admin.call("POST", "/v1/secrets/t-token", { value: bearerSecret });
    const actions = [
      { name: "read", spec: "GET /repos/*/issues/**" },
      { name: "admin", spec: "GET /admin/**" },
    ];
    const config = { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:t-token}"] };
    await broker.admin.call("POST", "/v1/tools", {
      name: "t",
      kind: "http",
      environment: "prod",
      actions,
      config,
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "ci",
      kind: "http",
      environment: "prod",
      actions,
      config: { ...config, case_sensitive: false },
    });

    const as = await discover(broker.issuer);
    const agent = await registerAgent(broker, "walker");
    token = await requestTaskToken(as, agent, (await startTask(broker, agent.name, ["t:read"])).id);
    caseInsensitiveToken = await requestTaskToken(
      as,
      agent,
      (await startTask(broker, agent.name, ["ci:read"])).id,
    );
  });

  after(async () => {
    await broker.close();
    await upstream.close();
  });

  describe("tricks", () => {
    for (const [target, status, error] of tricks) {
      test(`refuses ${target}`, async () => {
        const response = await call(token, target);
        assert.equal(response.status, status, response.text);
        assert.equal(response.json().error, error);
      });
    }

    test("upstream saw no admin request", () => {
      const admin = upstream.seen.map((seen) => seen.url).filter((url) => /admin/i.test(url));
      assert.deepEqual(admin, []);
    });

    test("upstream saw no request at all", () => {
      assert.deepEqual(
        upstream.seen.map((seen) => seen.url),
        [],
      );
    });
  });

  describe("allowed paths", () => {
    for (const [target, upstreamTarget] of normalised) {
      test(`forwards ${target}`, async () => {
        upstream.seen.length = 0;
        const response = await call(target.startsWith("/tools/ci/") ? caseInsensitiveToken : token, target);
        assert.equal(response.status, 200, response.text);
        assert.equal(upstream.seen.length, 1);
        assert.equal(upstream.seen[0]?.url, upstreamTarget);
      });
    }
  });

  describe("malformed escape", () => {
    // Fastify rejects a malformed percent-escape before routing; the refusal still gets writ's body.
    test("gets gateway error body", async () => {
      const response = await call(token, "/tools/t/repos/x/issues/%zz");
      assert.equal(response.status, 400);
      assert.equal(response.json().error, "invalid_request");
    });
  });

  describe("absolute-form target", () => {
    async function sendAbsolute(authority: string, path: string): Promise<number> {
      const proof = await signResourceProof(
        token.dpopKeys,
        "GET",
        `${broker.issuer}${path}`,
        token.accessToken,
      );
      return sendRaw(
        broker.issuer,
        `GET http://${authority}${path} HTTP/1.1\r\nHost: ${new URL(broker.issuer).host}\r\n` +
          `Authorization: DPoP ${token.accessToken}\r\nDPoP: ${proof}`,
      );
    }

    test("allowed path forwarded", async () => {
      upstream.seen.length = 0;
      assert.equal(await sendAbsolute(new URL(broker.issuer).host, "/tools/t/repos/x/issues/8"), 200);
      assert.deepEqual(
        upstream.seen.map((seen) => seen.url),
        ["/repos/x/issues/8"],
      );
    });

    test("authority plays no part", async () => {
      upstream.seen.length = 0;
      assert.equal(await sendAbsolute("admin.internal", "/tools/t/repos/x/issues/9"), 200);
      assert.equal(await sendAbsolute("admin.internal", "/tools/t/admin/x"), 403);
      assert.deepEqual(
        upstream.seen.map((seen) => seen.url),
        ["/repos/x/issues/9"],
      );
    });
  });

  describe("case-insensitive tool", () => {
    test("upper-case admin denied", async () => {
      upstream.seen.length = 0;
      const response = await call(caseInsensitiveToken, "/tools/ci/ADMIN/x");
      assert.equal(response.status, 403);
      assert.equal(response.json().error, "insufficient_scope");
      assert.deepEqual(upstream.seen, []);
    });
  });
});
