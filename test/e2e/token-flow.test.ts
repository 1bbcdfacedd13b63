import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeJwt,
  exportJWK,
  decodeProtectedHeader,
  jwtVerify,
  SignJWT,
} from "jose";
import * as oauth from "oauth4webapi";
import { readKeyFile, type LoadedKey } from "../../src/cli/admin-client.js";
import type { Task } from "../../src/tasks/tasks.js";
import type { Tool } from "../../src/tools/registry.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  auditedRefusal,
  clientCredentialsForm,
  createDpopKey,
  discover,
  introspect,
  loopbackHttp,
  postTokenForm,
  refusalOf,
  registerAgent,
  registerTool,
  requestAgentToken,
  requestTaskToken,
  signClientAssertion,
  signTokenProof,
  startTask,
  taskDetails,
  type AgentToken,
  type TestAgent,
} from "../support/agent-client.js";

/** Returns the thumbprint of the public half of a DPoP key pair, which `cnf.jkt` must carry. */
async function thumbprintOf(keys: oauth.CryptoKeyPair): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(keys.publicKey), "sha256");
}

describe("token flow", () => {
  let broker: TestBroker;
  let as: oauth.AuthorizationServer;
  let adminKey: LoadedKey;
  let alice: TestAgent;
  let bob: TestAgent;
  let github: Tool;
  let tracker: Tool;
  let aliceTask: Task;
  let bobTask: Task;
  let issued: AgentToken;

  before(async () => {
    broker = await startTestBroker();
    as = await discover(broker.issuer);
    adminKey = await readKeyFile(broker.adminKeyFile);
    alice = await registerAgent(broker, "alice");
    bob = await registerAgent(broker, "bob");
    github = await registerTool(broker, "github");
    tracker = await registerTool(broker, "tracker");
    aliceTask = await startTask(broker, "alice", ["github:read"]);
    bobTask = await startTask(broker, "bob", ["github:read"]);
    issued = await requestTaskToken(as, alice, aliceTask.id, github.resource_uri);
  });

  after(async () => {
    await broker.close();
  });

  describe("metadata", () => {
    test("metadata names issuer and endpoints", () => {
      assert.equal(as.issuer, broker.issuer);
      assert.equal(as.token_endpoint, `${broker.issuer}/oauth/token`);
      assert.equal(as.jwks_uri, `${broker.issuer}/jwks.json`);
      assert.equal(as.introspection_endpoint, `${broker.issuer}/oauth/introspect`);
      assert.equal(as.revocation_endpoint, `${broker.issuer}/oauth/revoke`);
    });

    test("metadata lists the grant types", () => {
      assert.deepEqual(as.grant_types_supported, [
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
      ]);
    });

    test("metadata allows only private_key_jwt", () => {
      assert.deepEqual(as.token_endpoint_auth_methods_supported, ["private_key_jwt"]);
    });

    test("metadata lists asymmetric algorithms only", () => {
      const signing = as.token_endpoint_auth_signing_alg_values_supported ?? [];
      const dpop = as.dpop_signing_alg_values_supported ?? [];
      assert.ok(signing.includes("Ed25519"), `signing algorithms ${signing.join(" ")}`);
      assert.ok(dpop.includes("ES256"), `DPoP algorithms ${dpop.join(" ")}`);
      for (const forbidden of ["none", "HS256", "HS384", "HS512"]) {
        assert.ok(!signing.includes(forbidden), `client assertion algorithm ${forbidden} is listed`);
        assert.ok(!dpop.includes(forbidden), `DPoP algorithm ${forbidden} is listed`);
      }
    });

    test("metadata lists agent_task details", () => {
      assert.deepEqual(as.authorization_details_types_supported, ["agent_task"]);
    });
  });

  describe("issued token", () => {
    test("response is a DPoP token", () => {
      assert.equal(issued.response.token_type, "dpop");
    });

    test("response has no refresh token", () => {
      assert.equal(issued.response.refresh_token, undefined);
    });

    test("response has no scope", () => {
      assert.equal(issued.response.scope, undefined);
    });

    test("response expires within ten minutes", () => {
      const expiresIn = issued.response.expires_in ?? Infinity;
      assert.ok(expiresIn > 0, `expires_in ${expiresIn}`);
      assert.ok(expiresIn <= 600, `expires_in ${expiresIn}`);
    });

    test("response echoes authorization details", () => {
      assert.deepEqual(issued.response.authorization_details, [
        {
          type: "agent_task",
          task_id: aliceTask.id,
          locations: [github.resource_uri],
          actions: ["read"],
          environment: "prod",
        },
      ]);
    });

    test("token header is at+jwt", () => {
      assert.equal(decodeProtectedHeader(issued.accessToken).typ, "at+jwt");
    });

    test("token kid is in JWKS", async () => {
      const jwks = (await (await fetch(`${broker.issuer}/jwks.json`)).json()) as { keys: { kid: string }[] };
      const kid = decodeProtectedHeader(issued.accessToken).kid;
      assert.ok(
        jwks.keys.some((key) => key.kid === kid),
        `kid ${String(kid)} not in the JWKS`,
      );
    });

    test("token signature verifies against JWKS", async () => {
      const keySet = createRemoteJWKSet(new URL(`${broker.issuer}/jwks.json`));
      const { payload } = await jwtVerify(issued.accessToken, keySet, {
        issuer: broker.issuer,
        audience: github.resource_uri,
        typ: "at+jwt",
      });
      assert.equal(payload.jti, decodeJwt(issued.accessToken).jti);
    });

    test("token identifies issuer and agent", () => {
      const claims = decodeJwt(issued.accessToken);
      assert.equal(claims.iss, broker.issuer);
      assert.equal(claims.sub, "spiffe://example.org/agent/alice");
      assert.equal(claims.client_id, alice.clientId);
      assert.equal(claims.aud, github.resource_uri);
    });

    test("token has fresh iat and jti", () => {
      const claims = decodeJwt(issued.accessToken);
      const nowS = Math.floor(Date.now() / 1000);
      assert.equal(typeof claims.iat, "number");
      assert.ok(Math.abs((claims.iat ?? 0) - nowS) <= 60, `iat ${claims.iat}, now ${nowS}`);
      assert.equal(typeof claims.jti, "string");
      assert.ok((claims.jti ?? "").length >= 16, `jti ${claims.jti}`);
    });

    test("token lives at most ten minutes", () => {
      const claims = decodeJwt(issued.accessToken);
      const lifetime = (claims.exp ?? Infinity) - (claims.iat ?? 0);
      assert.ok(lifetime > 0, `exp - iat = ${lifetime}`);
      assert.ok(lifetime <= 600, `exp - iat = ${lifetime}`);
    });

    test("token carries task and details", () => {
      const claims = decodeJwt(issued.accessToken);
      assert.equal(claims.task_id, aliceTask.id);
      assert.deepEqual(claims.authorization_details, issued.response.authorization_details);
    });

    test("token has no scope claim", () => {
      assert.equal(decodeJwt(issued.accessToken).scope, undefined);
    });

    test("token cnf.jkt is DPoP thumbprint", async () => {
      const claims = decodeJwt<{ cnf: { jkt: string } }>(issued.accessToken);
      assert.equal(claims.cnf.jkt, await thumbprintOf(issued.dpopKeys));
    });

    test("token never outlives short task", async () => {
      const shortTask = await startTask(broker, "alice", ["github:read"], 60);
      const token = await requestTaskToken(as, alice, shortTask.id);
      const claims = decodeJwt(token.accessToken);
      assert.ok(
        (claims.exp ?? Infinity) <= shortTask.deadline_s,
        `exp ${claims.exp} > ${shortTask.deadline_s}`,
      );
      assert.ok((token.response.expires_in ?? Infinity) <= 60, `expires_in ${token.response.expires_in}`);
    });

    test("actions narrow to requested subset", async () => {
      const wideTask = await startTask(broker, "alice", ["github:read", "github:write"]);
      const token = await requestAgentToken(as, alice, {
        authorization_details: JSON.stringify([
          { type: "agent_task", task_id: wideTask.id, actions: ["write"] },
        ]),
      });
      const claims = decodeJwt<{ authorization_details: { actions: string[] }[] }>(token.accessToken);
      assert.deepEqual(claims.authorization_details[0]?.actions, ["write"]);
    });
  });

  describe("introspection", () => {
    test("admin introspection reports token", async () => {
      const result = await introspect(as, adminKey, issued.accessToken);
      const claims = decodeJwt(issued.accessToken);
      assert.equal(result.active, true);
      assert.equal(result.token_type, "DPoP");
      assert.deepEqual(result.cnf, { jkt: await thumbprintOf(issued.dpopKeys) });
      assert.equal(result.sub, alice.clientId);
      assert.equal(result.client_id, alice.clientId);
      assert.equal(result.aud, github.resource_uri);
      assert.equal(result.exp, claims.exp);
      assert.equal(result.task_id, aliceTask.id);
      assert.deepEqual(result.authorization_details, issued.response.authorization_details);
    });

    test("agent introspection is access_denied", async () => {
      const refusal = await refusalOf(introspect(as, alice, issued.accessToken));
      assert.equal(refusal.error, "access_denied");
    });

    test("wrong type hint still finds token", async () => {
      const client: oauth.Client = { client_id: adminKey.clientId };
      const response = await oauth.introspectionRequest(
        as,
        client,
        oauth.PrivateKeyJwt({ key: adminKey.privateKey }),
        issued.accessToken,
        { additionalParameters: { token_type_hint: "refresh_token" }, ...loopbackHttp },
      );
      const result = await oauth.processIntrospectionResponse(as, client, response);
      assert.equal(result.active, true);
    });

    test("garbage token is inactive", async () => {
      const result = await introspect(as, adminKey, "not.a.token");
      assert.equal(result.active, false);
    });
  });

  describe("revocation endpoint", () => {
    async function revokeAs(agent: TestAgent, token: string): Promise<undefined> {
      const client: oauth.Client = { client_id: agent.clientId };
      const response = await oauth.revocationRequest(
        as,
        client,
        oauth.PrivateKeyJwt({ key: agent.privateKey }),
        token,
        loopbackHttp,
      );
      return oauth.processRevocationResponse(response);
    }

    test("agent revokes own token", async () => {
      const token = await requestTaskToken(as, alice, aliceTask.id);
      await revokeAs(alice, token.accessToken);
      assert.equal((await introspect(as, adminKey, token.accessToken)).active, false);
    });

    test("unknown token revocation returns 200", async () => {
      assert.equal(await revokeAs(alice, "garbage"), undefined);
    });

    test("foreign token revocation is ignored", async () => {
      const bobToken = await requestTaskToken(as, bob, bobTask.id);
      await revokeAs(alice, bobToken.accessToken);
      assert.equal((await introspect(as, adminKey, bobToken.accessToken)).active, true);
    });
  });

  describe("token request refusals", () => {
    /** Asserts the refusal's error code and that its `token.refused` audit event carries the same code. */
    async function assertRefused(call: Promise<unknown>, code: string): Promise<void> {
      const refusal = await refusalOf(call);
      assert.equal(refusal.error, code);
      assert.equal(await auditedRefusal(broker.admin, refusal.requestId), code);
    }

    test("unknown task is refused", async () => {
      await assertRefused(requestTaskToken(as, alice, randomUUID()), "invalid_authorization_details");
    });

    test("other agent's task is refused", async () => {
      await assertRefused(requestTaskToken(as, alice, bobTask.id), "invalid_authorization_details");
    });

    test("ended task is refused", async () => {
      const task = await startTask(broker, "alice", ["github:read"]);
      await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
      await assertRefused(requestTaskToken(as, alice, task.id), "invalid_authorization_details");
    });

    test("malformed details JSON is refused", async () => {
      await assertRefused(
        requestAgentToken(as, alice, { authorization_details: '[{"type":"agent_task",' }),
        "invalid_authorization_details",
      );
    });

    test("unknown details type is refused", async () => {
      await assertRefused(
        requestAgentToken(as, alice, {
          authorization_details: JSON.stringify([{ type: "payment_initiation", task_id: aliceTask.id }]),
        }),
        "invalid_authorization_details",
      );
    });

    test("missing details are refused", async () => {
      await assertRefused(
        requestAgentToken(as, alice, { resource: github.resource_uri }),
        "invalid_authorization_details",
      );
    });

    test("action outside task is refused", async () => {
      await assertRefused(
        requestAgentToken(as, alice, {
          authorization_details: JSON.stringify([
            { type: "agent_task", task_id: aliceTask.id, actions: ["write"] },
          ]),
        }),
        "invalid_authorization_details",
      );
    });

    test("resource outside task is refused", async () => {
      await assertRefused(requestTaskToken(as, alice, aliceTask.id, tracker.resource_uri), "invalid_target");
    });

    test("unregistered resource is refused", async () => {
      await assertRefused(
        requestTaskToken(as, alice, aliceTask.id, `${broker.issuer}/tools/nothing`),
        "invalid_target",
      );
    });

    test("two resources are refused", async () => {
      const task = await startTask(broker, "alice", ["github:read", "tracker:read"]);
      const parameters = new URLSearchParams({ authorization_details: taskDetails(task.id) });
      parameters.append("resource", github.resource_uri);
      parameters.append("resource", tracker.resource_uri);
      await assertRefused(requestAgentToken(as, alice, parameters), "invalid_target");
    });

    test("no resource with two tools", async () => {
      const task = await startTask(broker, "alice", ["github:read", "tracker:read"]);
      await assertRefused(requestTaskToken(as, alice, task.id), "invalid_target");
    });

    test("disabled agent is invalid_client", async () => {
      const carol = await registerAgent(broker, "carol");
      const task = await startTask(broker, "carol", ["github:read"]);
      await broker.admin.call("POST", "/v1/agents/carol/disable");
      await assertRefused(requestTaskToken(as, carol, task.id), "invalid_client");
    });
  });

  describe("task lifecycle", () => {
    test("ended task deactivates token", async () => {
      const task = await startTask(broker, "alice", ["github:read"]);
      const token = await requestTaskToken(as, alice, task.id);
      await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
      assert.equal((await introspect(as, adminKey, token.accessToken)).active, false);
      assert.equal(
        (await refusalOf(requestTaskToken(as, alice, task.id))).error,
        "invalid_authorization_details",
      );
    });

    test("revoked task deactivates token", async () => {
      const task = await startTask(broker, "alice", ["github:read"]);
      const token = await requestTaskToken(as, alice, task.id);
      await broker.admin.call("POST", "/v1/revoke", { task: task.id });
      assert.equal((await introspect(as, adminKey, token.accessToken)).active, false);
    });

    test("revoked token is inactive", async () => {
      const token = await requestTaskToken(as, alice, aliceTask.id);
      await broker.admin.call("POST", "/v1/revoke", { token: decodeJwt(token.accessToken).jti });
      assert.equal((await introspect(as, adminKey, token.accessToken)).active, false);
    });
  });

  describe("agent revocation", () => {
    let dave: TestAgent;
    let erin: TestAgent;
    let daveToken: AgentToken;
    let erinToken: AgentToken;
    let erinTask: Task;
    let daveTask: Task;

    before(async () => {
      dave = await registerAgent(broker, "dave");
      erin = await registerAgent(broker, "erin");
      daveTask = await startTask(broker, "dave", ["github:read"]);
      erinTask = await startTask(broker, "erin", ["github:read"]);
      daveToken = await requestTaskToken(as, dave, daveTask.id);
      erinToken = await requestTaskToken(as, erin, erinTask.id);
      await broker.admin.call("POST", "/v1/revoke", { agent: "dave" });
    });

    test("revoked agent is invalid_client", async () => {
      const refusal = await refusalOf(requestTaskToken(as, dave, daveTask.id));
      assert.equal(refusal.error, "invalid_client");
    });

    test("revoked agent's token is inactive", async () => {
      assert.equal((await introspect(as, adminKey, daveToken.accessToken)).active, false);
    });

    test("other agent keeps its token", async () => {
      assert.equal((await introspect(as, adminKey, erinToken.accessToken)).active, true);
    });

    test("other agent gets new tokens", async () => {
      const token = await requestTaskToken(as, erin, erinTask.id);
      assert.equal((await introspect(as, adminKey, token.accessToken)).active, true);
    });
  });

  describe("request encoding", () => {
    test("JSON token request is invalid_request", async () => {
      const assertion = await signClientAssertion(alice, broker.issuer);
      const response = await fetch(`${broker.issuer}/oauth/token`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          DPoP: await signTokenProof(await createDpopKey(), broker.issuer),
        },
        body: JSON.stringify({ ...clientCredentialsForm(alice, assertion, aliceTask.id) }),
      });
      assert.equal(((await response.json()) as { error: string }).error, "invalid_request");
    });

    for (const endpoint of ["token", "introspect", "revoke"]) {
      test(`JSON array at ${endpoint} is invalid_request`, async () => {
        const response = await fetch(`${broker.issuer}/oauth/${endpoint}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "[1]",
        });
        assert.equal(response.status, 400);
        assert.equal(((await response.json()) as { error: string }).error, "invalid_request");
      });
    }
  });

  describe("client assertion", () => {
    async function postWithAssertion(assertion: string): Promise<{ status: number; error: unknown }> {
      const proof = await signTokenProof(await createDpopKey(), broker.issuer);
      const response = await postTokenForm(
        broker.issuer,
        clientCredentialsForm(alice, assertion, aliceTask.id),
        [proof],
      );
      return { status: response.status, error: response.body.error };
    }

    test("fresh raw assertion is accepted", async () => {
      const response = await postWithAssertion(await signClientAssertion(alice, broker.issuer));
      assert.equal(response.status, 200);
    });

    test("raw token response is no-store", async () => {
      const proof = await signTokenProof(await createDpopKey(), broker.issuer);
      const assertion = await signClientAssertion(alice, broker.issuer);
      const response = await postTokenForm(
        broker.issuer,
        clientCredentialsForm(alice, assertion, aliceTask.id),
        [proof],
      );
      assert.equal(response.headers["cache-control"], "no-store");
    });

    test("unsupported grant type is refused", async () => {
      const proof = await signTokenProof(await createDpopKey(), broker.issuer);
      const assertion = await signClientAssertion(alice, broker.issuer);
      const form = { ...clientCredentialsForm(alice, assertion, aliceTask.id), grant_type: "password" };
      const response = await postTokenForm(broker.issuer, form, [proof]);
      assert.equal(response.body.error, "unsupported_grant_type");
    });

    test("replayed assertion is invalid_client", async () => {
      const assertion = await signClientAssertion(alice, broker.issuer);
      const first = await postWithAssertion(assertion);
      assert.equal(first.status, 200);
      const second = await postWithAssertion(assertion);
      assert.equal(second.error, "invalid_client");
    });

    test("array aud is invalid_client", async () => {
      const assertion = await signClientAssertion(alice, broker.issuer, { claims: { aud: [broker.issuer] } });
      assert.equal((await postWithAssertion(assertion)).error, "invalid_client");
    });

    test("six-minute assertion is invalid_client", async () => {
      const assertion = await signClientAssertion(alice, broker.issuer, { lifetimeSeconds: 360 });
      assert.equal((await postWithAssertion(assertion)).error, "invalid_client");
    });

    test("foreign-key assertion is invalid_client", async () => {
      const forged = await signClientAssertion(
        { clientId: alice.clientId, privateKey: bob.privateKey },
        broker.issuer,
      );
      assert.equal((await postWithAssertion(forged)).error, "invalid_client");
    });

    test("unsigned assertion is invalid_client", async () => {
      const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const nowS = Math.floor(Date.now() / 1000);
      const claims = {
        iss: alice.clientId,
        sub: alice.clientId,
        aud: broker.issuer,
        jti: randomUUID(),
        iat: nowS,
        exp: nowS + 60,
      };
      const unsigned = `${encode({ alg: "none" })}.${encode(claims)}.`;
      assert.equal((await postWithAssertion(unsigned)).error, "invalid_client");
    });

    test("HS256 assertion is invalid_client", async () => {
      const nowS = Math.floor(Date.now() / 1000);
      const assertion = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: "HS256" })
        .setIssuer(alice.clientId)
        .setSubject(alice.clientId)
        .setAudience(broker.issuer)
        .setIssuedAt(nowS)
        .setExpirationTime(nowS + 60)
        .sign(new TextEncoder().encode(JSON.stringify(alice.key.publicJwk)));
      assert.equal((await postWithAssertion(assertion)).error, "invalid_client");
    });

    test("future iat is invalid_client", async () => {
      const nowS = Math.floor(Date.now() / 1000);
      const assertion = await signClientAssertion(alice, broker.issuer, {
        claims: { iat: nowS + 120, exp: nowS + 180 },
      });
      assert.equal((await postWithAssertion(assertion)).error, "invalid_client");
    });

    test("wrong aud is invalid_client", async () => {
      const assertion = await signClientAssertion(alice, broker.issuer, {
        claims: { aud: `${broker.issuer}/oauth/token` },
      });
      assert.equal((await postWithAssertion(assertion)).error, "invalid_client");
    });

    test("invalid_client refusal is audited", async () => {
      const proof = await signTokenProof(await createDpopKey(), broker.issuer);
      const assertion = await signClientAssertion(alice, broker.issuer, { lifetimeSeconds: 360 });
      const response = await postTokenForm(
        broker.issuer,
        clientCredentialsForm(alice, assertion, aliceTask.id),
        [proof],
      );
      assert.equal(await auditedRefusal(broker.admin, String(response.body.request_id)), "invalid_client");
    });
  });
});

describe("signing key rotation", () => {
  let broker: TestBroker;
  let as: oauth.AuthorizationServer;
  let adminKey: LoadedKey;
  let agent: TestAgent;
  let task: Task;
  let oldToken: AgentToken;
  let rotated: { kid: string; retired: string[] };

  before(async () => {
    broker = await startTestBroker();
    as = await discover(broker.issuer);
    adminKey = await readKeyFile(broker.adminKeyFile);
    agent = await registerAgent(broker, "rotor");
    await registerTool(broker, "github");
    task = await startTask(broker, "rotor", ["github:read"]);
    oldToken = await requestTaskToken(as, agent, task.id);
    rotated = await broker.admin.call("POST", "/v1/keys/rotate");
  });

  after(async () => {
    await broker.close();
  });

  test("rotation publishes both kids", async () => {
    const jwks = (await (await fetch(`${broker.issuer}/jwks.json`)).json()) as { keys: { kid: string }[] };
    const kids = jwks.keys.map((key) => key.kid);
    assert.ok(kids.includes(rotated.kid), `new kid ${rotated.kid} missing from ${kids.join(" ")}`);
    assert.ok(
      kids.includes(String(decodeProtectedHeader(oldToken.accessToken).kid)),
      "old kid missing from the JWKS",
    );
  });

  test("rotation retires the old kid", () => {
    assert.deepEqual(rotated.retired, [decodeProtectedHeader(oldToken.accessToken).kid]);
  });

  test("old token still verifies", async () => {
    const keySet = createRemoteJWKSet(new URL(`${broker.issuer}/jwks.json`));
    const { protectedHeader } = await jwtVerify(oldToken.accessToken, keySet, { issuer: broker.issuer });
    assert.notEqual(protectedHeader.kid, rotated.kid);
  });

  test("old token still introspects active", async () => {
    assert.equal((await introspect(as, adminKey, oldToken.accessToken)).active, true);
  });

  test("new token uses new kid", async () => {
    const token = await requestTaskToken(as, agent, task.id);
    assert.equal(decodeProtectedHeader(token.accessToken).kid, rotated.kid);
  });
});

describe("server DPoP nonce", () => {
  let broker: TestBroker;
  let as: oauth.AuthorizationServer;
  let agent: TestAgent;
  let task: Task;

  before(async () => {
    broker = await startTestBroker();
    as = await discover(broker.issuer);
    agent = await registerAgent(broker, "noncer");
    await registerTool(broker, "github");
    task = await startTask(broker, "noncer", ["github:read"]);
    // The token endpoint reads this setting on every request.
    broker.server.broker.context.config.dpop_nonce_required = true;
  });

  after(async () => {
    await broker.close();
  });

  test("first request gets use_dpop_nonce", async () => {
    const client: oauth.Client = { client_id: agent.clientId };
    const dpop = oauth.DPoP(client, await oauth.generateKeyPair("ES256"));
    const response = await oauth.clientCredentialsGrantRequest(
      as,
      client,
      oauth.PrivateKeyJwt({ key: agent.privateKey }),
      { authorization_details: taskDetails(task.id) },
      { DPoP: dpop, ...loopbackHttp },
    );
    assert.ok(response.headers.get("dpop-nonce"), "no DPoP-Nonce header");
    const refusal = await refusalOf(oauth.processClientCredentialsResponse(as, client, response));
    assert.equal(refusal.error, "use_dpop_nonce");
  });

  test("retry with nonce succeeds", async () => {
    const client: oauth.Client = { client_id: agent.clientId };
    const dpop = oauth.DPoP(client, await oauth.generateKeyPair("ES256"));
    const send = async () =>
      oauth.processClientCredentialsResponse(
        as,
        client,
        await oauth.clientCredentialsGrantRequest(
          as,
          client,
          oauth.PrivateKeyJwt({ key: agent.privateKey }),
          { authorization_details: taskDetails(task.id) },
          { DPoP: dpop, ...loopbackHttp },
        ),
      );
    const first = await refusalOf(send());
    assert.equal(first.error, "use_dpop_nonce");
    const result = await send();
    assert.equal(result.token_type, "dpop");
  });

  test("nonce refusal leaves assertion unspent", async () => {
    const dpopKey = await createDpopKey();
    const assertion = await signClientAssertion(agent, broker.issuer);
    const form = clientCredentialsForm(agent, assertion, task.id);
    const first = await postTokenForm(broker.issuer, form, [await signTokenProof(dpopKey, broker.issuer)]);
    const nonce = first.headers["dpop-nonce"];
    assert.equal(typeof nonce, "string");
    const retried = await postTokenForm(broker.issuer, form, [
      await signTokenProof(dpopKey, broker.issuer, { claims: { nonce: String(nonce) } }),
    ]);
    assert.equal(retried.status, 200);
  });

  test("unknown nonce gets use_dpop_nonce", async () => {
    const assertion = await signClientAssertion(agent, broker.issuer);
    const proof = await signTokenProof(await createDpopKey(), broker.issuer, { claims: { nonce: "stale" } });
    const response = await postTokenForm(broker.issuer, clientCredentialsForm(agent, assertion, task.id), [
      proof,
    ]);
    assert.equal(response.body.error, "use_dpop_nonce");
  });
});
