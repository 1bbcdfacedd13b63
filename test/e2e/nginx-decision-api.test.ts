import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as oauth from "oauth4webapi";
import { Client } from "undici";
import { ApiError } from "../../src/cli/admin-client.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import { freePort, startTestBroker, type TestBroker } from "../support/broker.js";
import {
  auditEvents,
  registerAgent,
  startTask,
  taskDetails,
  type TestAgent,
} from "../support/agent-client.js";
import { callTool, signResourceProof, type ToolResponse } from "../support/gateway-client.js";
import { startNginx, type RunningNginx } from "../support/nginx.js";
import {
  createClientCertificate,
  createTestCa,
  type CertificateFiles,
  type TestCa,
} from "../support/test-ca.js";

const upstreamSecret = "nginx-upstream-bearer-5be02c7a";

/** One request as the upstream received it. */
interface UpstreamRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * Starts an upstream API that records every request and responds with 200 only to
 * `Bearer <secret>`, else 401. Unlike the gateway tests' upstream it echoes no header, so a secret
 * in a response to the agent can only come from nginx or the decision API.
 */
async function startUpstream(
  secret: string,
): Promise<{ url: string; seen: UpstreamRequest[]; server: Server }> {
  const seen: UpstreamRequest[] = [];
  const server = createServer((request, response) => {
    seen.push({ method: request.method ?? "", url: request.url ?? "", headers: request.headers });
    request.resume();
    if (request.headers.authorization !== `Bearer ${secret}`) {
      response.writeHead(401, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: "unauthorized" }));
      return;
    }
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ method: request.method, url: request.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

/**
 * Returns the nginx server block. Agents call `/tools/gh/…` over plain http on loopback, and every
 * request first goes to the decision API as an `auth_request` subrequest over mutual TLS.
 */
function nginxServer(options: {
  port: number;
  brokerPort: number;
  upstream: string;
  gatewayCertificate: CertificateFiles;
  caFile: string;
}): string {
  return `
  server {
    listen 127.0.0.1:${options.port};

    location /tools/gh/ {
      auth_request /_writ/authorize;
      auth_request_set $writ_authorization $upstream_http_authorization;
      auth_request_set $writ_path $upstream_http_writ_path;
      proxy_set_header Authorization $writ_authorization;
      # An empty value drops the field: the agent's proof is for nginx, not for the upstream.
      proxy_set_header DPoP "";
      # Forwards the normalised path that writ authorised, not nginx's own reading of the URI.
      proxy_pass ${options.upstream}$writ_path$is_args$args;
    }

    location = /_writ/authorize {
      internal;
      proxy_pass https://127.0.0.1:${options.brokerPort}/v1/authorize;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_ssl_certificate ${options.gatewayCertificate.certFile};
      proxy_ssl_certificate_key ${options.gatewayCertificate.keyFile};
      proxy_ssl_trusted_certificate ${options.caFile};
      proxy_ssl_verify on;
      # nginx 1.22 matches this name against DNS SANs only, never IP SANs.
      proxy_ssl_name localhost;
    }
  }
`;
}

/** A decision API response with its body read. */
interface DecisionResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

describe("nginx auth_request against the decision API", () => {
  let root: string;
  let ca: TestCa;
  let gatewayCertificate: CertificateFiles;
  let strangerCertificate: CertificateFiles;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let broker: TestBroker;
  let nginx: RunningNginx;
  let agent: TestAgent;
  let accessToken: string;
  let dpopKeys: oauth.CryptoKeyPair;

  /** Calls a tool through nginx as the agent, with a fresh proof for nginx's URL. */
  async function callThroughNginx(target: string): Promise<ToolResponse> {
    return callTool(nginx.url, { target, token: accessToken, proofKeys: dpopKeys });
  }

  /**
   * Calls the decision API directly over TLS, presenting `certificate` when given. The agent's token
   * and a valid proof for nginx's URL go along, as a proxy would forward them.
   */
  async function askDecisionApi(options: {
    method: string;
    path: string;
    /** The method and target of the tool request at nginx, which the proof signs. */
    toolMethod: string;
    toolTarget: string;
    certificate?: CertificateFiles;
    headers?: [string, string][];
    body?: string;
  }): Promise<DecisionResponse> {
    const proof = await signResourceProof(
      dpopKeys,
      options.toolMethod,
      `${nginx.url}${options.toolTarget}`,
      accessToken,
    );
    const headers = ["authorization", `DPoP ${accessToken}`, "dpop", proof];
    for (const [name, value] of options.headers ?? []) headers.push(name, value);
    const client = new Client(broker.issuer, {
      connect: {
        ca: ca.certificate,
        ...(options.certificate === undefined
          ? {}
          : { cert: options.certificate.certificate, key: options.certificate.key }),
      },
    });
    try {
      const response = await client.request({
        method: options.method as "GET",
        path: options.path,
        headers,
        body: options.body ?? null,
      });
      return { status: response.statusCode, headers: response.headers, text: await response.body.text() };
    } finally {
      await client.close();
    }
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "writ-nginx-"));
    ca = await createTestCa(root);
    const brokerCertificate = await ca.issueServer("broker");
    gatewayCertificate = await createClientCertificate(root, "nginx-gateway");
    strangerCertificate = await createClientCertificate(root, "stranger");

    upstream = await startUpstream(upstreamSecret);
    broker = await startTestBroker({
      tls: { certFile: brokerCertificate.certFile, keyFile: brokerCertificate.keyFile, ca: ca.certificate },
    });
    const nginxPort = await freePort();

    await broker.admin.call("POST", "/v1/secrets/gh-token", { value: upstreamSecret });
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /repos/*/issues/**" },
        { name: "comment", spec: "POST /repos/*/issues/*/comments" },
        { name: "admin", spec: "GET /admin/**" },
      ],
      config: {
        upstream: upstream.url,
        inject: ["header:Authorization=Bearer ${secret:gh-token}"],
        gateways: ["edge-nginx"],
      },
    });
    await broker.admin.call("POST", "/v1/tools", {
      name: "unassigned",
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /repos/**" }],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:gh-token}"] },
    });
    const gatewayKey = await generateIdentityKey("Ed25519");
    await broker.admin.call("POST", "/v1/gateways", {
      name: "edge-nginx",
      public_jwk: gatewayKey.publicJwk,
      tls_cert_sha256: gatewayCertificate.sha256,
      public_url: `http://127.0.0.1:${nginxPort}`,
    });

    nginx = await startNginx({
      prefix: join(root, "nginx"),
      port: nginxPort,
      server: nginxServer({
        port: nginxPort,
        brokerPort: Number(new URL(broker.issuer).port),
        upstream: upstream.url,
        gatewayCertificate,
        caFile: ca.certFile,
      }),
    });

    agent = await registerAgent(broker, "nginx-bot");
    const task = await startTask(broker, agent.name, ["gh:read", "gh:comment"]);
    // requestTaskToken in agent-client uses the global fetch, which does not trust the test CA, so
    // the same oauth4webapi calls run here through the broker's fetch.
    const http = { [oauth.customFetch]: broker.fetch };
    const issuer = new URL(broker.issuer);
    const as = await oauth.processDiscoveryResponse(
      issuer,
      await oauth.discoveryRequest(issuer, { ...http, algorithm: "oauth2" }),
    );
    const client: oauth.Client = { client_id: agent.clientId };
    dpopKeys = await oauth.generateKeyPair("ES256");
    const response = await oauth.clientCredentialsGrantRequest(
      as,
      client,
      oauth.PrivateKeyJwt({ key: agent.privateKey }),
      { authorization_details: taskDetails(task.id) },
      { DPoP: oauth.DPoP(client, dpopKeys), ...http },
    );
    accessToken = (await oauth.processClientCredentialsResponse(as, client, response)).access_token;
  });

  after(async () => {
    await nginx?.close();
    await broker?.close();
    upstream?.server.closeAllConnections();
    await new Promise<void>((resolve) =>
      upstream === undefined ? resolve() : upstream.server.close(() => resolve()),
    );
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  describe("allowed call", () => {
    let response: ToolResponse;
    let seen: UpstreamRequest | undefined;

    before(async () => {
      upstream.seen.length = 0;
      response = await callThroughNginx("/tools/gh/repos/acme/issues/7?state=open");
      seen = upstream.seen[0];
    });

    test("returns upstream response", async () => {
      assert.equal(response.status, 200, await nginx.errorLog());
      assert.equal(response.json().url, "/repos/acme/issues/7?state=open");
    });

    test("upstream called once", () => {
      assert.equal(upstream.seen.length, 1);
    });

    test("upstream receives injected credential", () => {
      assert.equal(seen?.headers.authorization, `Bearer ${upstreamSecret}`);
    });

    test("upstream receives no DPoP proof", () => {
      assert.equal(seen?.headers.dpop, undefined);
    });

    test("upstream never sees agent token", () => {
      assert.equal(JSON.stringify(seen?.headers ?? {}).includes(accessToken), false);
    });

    test("response omits injected secret", () => {
      assert.equal(response.text.includes(upstreamSecret), false);
      assert.equal(JSON.stringify(response.headers).includes(upstreamSecret), false);
    });

    test("decision is audited", async () => {
      const allowed = await auditEvents(broker.admin, "tool_call.allowed");
      const paths = allowed.map((event) => event.data.path);
      assert.ok(paths.includes("/repos/acme/issues/7"), JSON.stringify(paths));
    });
  });

  describe("denied call", () => {
    let response: ToolResponse;
    let upstreamCalls: number;

    before(async () => {
      upstream.seen.length = 0;
      response = await callThroughNginx("/tools/gh/admin/settings");
      upstreamCalls = upstream.seen.length;
    });

    test("nginx returns 403", () => {
      assert.equal(response.status, 403);
    });

    test("upstream not called", () => {
      assert.equal(upstreamCalls, 0);
    });

    test("denial is audited", async () => {
      const denied = await auditEvents(broker.admin, "tool_call.denied");
      const paths = denied.map((event) => event.data.path);
      assert.ok(paths.includes("/admin/settings"), JSON.stringify(paths));
    });
  });

  describe("dot segments leaving the task", () => {
    let response: ToolResponse;

    before(async () => {
      upstream.seen.length = 0;
      response = await callThroughNginx("/tools/gh/repos/acme/issues/../../../admin/settings");
    });

    test("nginx returns 403", () => {
      assert.equal(response.status, 403);
    });

    test("upstream not called", () => {
      assert.equal(upstream.seen.length, 0);
    });
  });

  describe("call without token", () => {
    let response: ToolResponse;

    before(async () => {
      upstream.seen.length = 0;
      response = await callTool(nginx.url, { target: "/tools/gh/repos/acme/issues/7" });
    });

    test("nginx returns 401", () => {
      assert.equal(response.status, 401);
    });

    test("nginx passes DPoP challenge", () => {
      assert.match(String(response.headers["www-authenticate"]), /^DPoP /);
    });

    test("upstream not called", () => {
      assert.equal(upstream.seen.length, 0);
    });
  });

  describe("agent calling decision API directly", () => {
    const originalHeaders: [string, string][] = [
      ["x-original-method", "GET"],
      ["x-original-uri", "/tools/gh/repos/acme/issues/7"],
    ];
    let withoutCertificate: DecisionResponse;
    let withStrangerCertificate: DecisionResponse;
    let withGatewayCertificate: DecisionResponse;

    before(async () => {
      const request = {
        method: "GET",
        path: "/v1/authorize",
        toolMethod: "GET",
        toolTarget: "/tools/gh/repos/acme/issues/7",
        headers: originalHeaders,
      };
      withoutCertificate = await askDecisionApi(request);
      withStrangerCertificate = await askDecisionApi({ ...request, certificate: strangerCertificate });
      withGatewayCertificate = await askDecisionApi({ ...request, certificate: gatewayCertificate });
    });

    // The same token, proof shape and headers pass with the registered certificate, so the 403s
    // below come from the missing or unknown certificate alone.
    test("registered certificate gets 200", () => {
      assert.equal(withGatewayCertificate.status, 200, withGatewayCertificate.text);
    });

    test("no certificate gets 403", () => {
      assert.equal(withoutCertificate.status, 403);
    });

    test("no certificate gets access_denied", () => {
      assert.equal(JSON.parse(withoutCertificate.text).error, "access_denied");
    });

    test("no certificate gets no secret", () => {
      assert.equal(withoutCertificate.text.includes(upstreamSecret), false);
      assert.equal(JSON.stringify(withoutCertificate.headers).includes(upstreamSecret), false);
    });

    test("no certificate gets no credential header", () => {
      assert.equal(withoutCertificate.headers.authorization, undefined);
    });

    test("unregistered certificate gets 403", () => {
      assert.equal(withStrangerCertificate.status, 403);
    });

    test("unregistered certificate gets access_denied", () => {
      assert.equal(JSON.parse(withStrangerCertificate.text).error, "access_denied");
    });

    test("unregistered certificate gets no secret", () => {
      assert.equal(withStrangerCertificate.text.includes(upstreamSecret), false);
      assert.equal(JSON.stringify(withStrangerCertificate.headers).includes(upstreamSecret), false);
    });

    test("unregistered certificate gets no credential header", () => {
      assert.equal(withStrangerCertificate.headers.authorization, undefined);
    });
  });

  describe("Envoy-style call with registered certificate", () => {
    let response: DecisionResponse;

    before(async () => {
      response = await askDecisionApi({
        method: "POST",
        path: "/v1/authorize/tools/gh/repos/acme/issues/7/comments",
        toolMethod: "POST",
        toolTarget: "/tools/gh/repos/acme/issues/7/comments",
        certificate: gatewayCertificate,
        headers: [["content-type", "application/json"]],
        body: JSON.stringify({ body: "looks good" }),
      });
    });

    test("returns 200", () => {
      assert.equal(response.status, 200, response.text);
    });

    test("returns injection header", () => {
      assert.equal(response.headers.authorization, `Bearer ${upstreamSecret}`);
    });

    test("returns authorised path", () => {
      assert.equal(response.headers["writ-path"], "/repos/acme/issues/7/comments");
    });

    test("returns decision id", () => {
      assert.match(String(response.headers["writ-decision-id"]), /^[0-9a-f-]{36}$/);
    });
  });

  describe("tool not assigned to the gateway", () => {
    let response: DecisionResponse;

    before(async () => {
      response = await askDecisionApi({
        method: "GET",
        path: "/v1/authorize/tools/unassigned/repos/acme",
        toolMethod: "GET",
        toolTarget: "/tools/unassigned/repos/acme",
        certificate: gatewayCertificate,
      });
    });

    test("returns 404", () => {
      assert.equal(response.status, 404, response.text);
    });

    test("returns no secret", () => {
      assert.ok(!response.text.includes(upstreamSecret));
      assert.equal(response.headers.authorization, undefined);
    });
  });

  describe("second gateway with same certificate", () => {
    let error: unknown;

    before(async () => {
      const key = await generateIdentityKey("Ed25519");
      try {
        await broker.admin.call("POST", "/v1/gateways", {
          name: "edge-copy",
          public_jwk: key.publicJwk,
          tls_cert_sha256: gatewayCertificate.sha256,
          public_url: "http://127.0.0.1:9",
        });
      } catch (caught) {
        error = caught;
      }
    });

    // The decision API identifies its caller only by this fingerprint, so it must name one gateway.
    test("registration rejected with 409", () => {
      assert.ok(error instanceof ApiError, String(error));
      assert.equal(error.status, 409);
    });
  });
});
