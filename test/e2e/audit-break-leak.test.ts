// Searches a real broker's audit export for secrets and tokens after flows that carry them: secret
// injection, a token request, calls with a replayed or malformed token, and a token in the query
// string. It also checks that an agent's token cannot read the audit API.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decodeJwt } from "jose";
import type * as oauth from "oauth4webapi";
import {
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
} from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";

const upstreamBearer = "upstream-bearer-0c4f7a91";
const queryValue = "query-secret-77e1b2";

describe("audit leaks and access", () => {
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let as: oauth.AuthorizationServer;
  let token: AgentToken;
  let exported: string;

  before(async () => {
    upstream = await startRecordingUpstream({
      bearer: upstreamBearer,
      basic: { user: "unused", password: "unused-41a0" },
      query: { name: "key", value: queryValue },
    });
    broker = await startTestBroker();
    as = await discover(broker.issuer);
    await broker.admin.call("POST", "/v1/secrets/gh-token", { value: upstreamBearer });
    await broker.admin.call("POST", "/v1/secrets/gh-query", { value: queryValue });
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh",
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /repos/**" }],
      config: {
        upstream: upstream.url,
        inject: ["header:Authorization=Bearer ${secret:gh-token}", "query:key=${secret:gh-query}"],
      },
    });
    const worker = await registerAgent(broker, "worker");
    const task = await startTask(broker, worker.name, ["gh:read"]);
    token = await requestTaskToken(as, worker, task.id);

    const calls = [
      // An ordinary allowed call, with the secrets injected upstream.
      { target: "/tools/gh/repos/acme/issues", token: token.accessToken, proofKeys: token.dpopKeys },
      // The agent puts its own token in the query string.
      {
        target: `/tools/gh/repos/acme/issues?access_token=${token.accessToken}`,
        token: token.accessToken,
        proofKeys: token.dpopKeys,
      },
      // The token replayed without its DPoP proof, and as a Bearer token.
      { target: "/tools/gh/repos/acme/issues", token: token.accessToken },
      { target: "/tools/gh/repos/acme/issues", token: token.accessToken, scheme: "Bearer" },
      // A token whose signature was cut off.
      {
        target: "/tools/gh/repos/acme/issues",
        token: token.accessToken.split(".").slice(0, 2).join(".") + ".",
        proofKeys: token.dpopKeys,
      },
    ];
    for (const call of calls) await callTool(broker.issuer, call);

    const response = await broker.admin.open(
      "GET",
      "/v1/audit/export?format=jsonl",
      undefined,
      "application/x-ndjson",
    );
    exported = await response.text();
    const ocsf = await broker.admin.open(
      "GET",
      "/v1/audit/export?format=ocsf",
      undefined,
      "application/x-ndjson",
    );
    exported += await ocsf.text();
  });

  after(async () => {
    await broker?.close();
    await upstream?.close();
  });

  test("export holds no secret values", () => {
    assert.ok(upstream.seen.length > 0, "the upstream saw no call");
    assert.ok(!exported.includes(upstreamBearer), "the injected bearer secret is in the export");
    assert.ok(!exported.includes(queryValue), "the injected query secret is in the export");
  });

  test("export holds no full token", () => {
    const signature = token.accessToken.split(".")[2] as string;
    assert.ok(!exported.includes(signature), "an access token's signature is in the export");
    const payload = token.accessToken.split(".")[1] as string;
    assert.ok(!exported.includes(payload), "an access token's payload is in the export");
  });

  test("agent token cannot read audit", async () => {
    for (const path of ["/v1/audit/export", "/v1/audit", "/v1/audit/events", "/v1/audit/who?tool=gh"]) {
      const response = await callTool(broker.issuer, {
        target: path,
        token: token.accessToken,
        proofKeys: token.dpopKeys,
      });
      assert.ok(response.status === 401 || response.status === 403, `${path} answered ${response.status}`);
      assert.ok(!response.text.includes("tool_call"), `${path} returned events`);
    }
    assert.equal(typeof decodeJwt(token.accessToken).jti, "string");
  });
});
