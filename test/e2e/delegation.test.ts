import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { decodeJwt, exportJWK, generateKeyPair, importJWK, type CryptoKey } from "jose";
import type { CryptoKeyPair } from "oauth4webapi";
import { readKeyFile } from "../../src/cli/admin-client.js";
import { systemClock } from "../../src/clock.js";
import type { Task } from "../../src/tasks/tasks.js";
import {
  auditEvents,
  clientAssertionType,
  createDpopKey,
  discover,
  postTokenForm,
  registerAgent,
  signClientAssertion,
  signTokenProof,
  type DpopKey,
  type TestAgent,
} from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";

const exchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";
const accessTokenType = "urn:ietf:params:oauth:token-type:access_token";
const ticketType = "urn:writ:params:oauth:token-type:delegation-ticket";

/** An agent's own token with the ES256 key it is bound to, as raw requests need both. */
interface HeldToken {
  token: string;
  dpop: DpopKey;
  keys: CryptoKeyPair;
}

describe("delegation by token exchange", () => {
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let parent: TestAgent;
  let child: TestAgent;
  let grandchild: TestAgent;
  let stranger: TestAgent;
  let rootTask: Task;
  let rootToken: HeldToken;

  /** Generates an ES256 key usable both for raw token proofs and for gateway proofs. */
  async function newDpop(): Promise<{ dpop: DpopKey; keys: CryptoKeyPair }> {
    const keys = (await generateKeyPair("ES256", { extractable: true })) as CryptoKeyPair;
    return {
      dpop: { privateKey: keys.privateKey as CryptoKey, publicJwk: await exportJWK(keys.publicKey) },
      keys,
    };
  }

  async function tokenFor(agent: TestAgent, taskId: string): Promise<HeldToken> {
    const { dpop, keys } = await newDpop();
    const response = await postTokenForm(
      broker.issuer,
      {
        grant_type: "client_credentials",
        client_id: agent.clientId,
        client_assertion_type: clientAssertionType,
        client_assertion: await signClientAssertion(agent, broker.issuer),
        authorization_details: JSON.stringify([{ type: "agent_task", task_id: taskId }]),
        resource: `${broker.issuer}/tools/tracker`,
      },
      [await signTokenProof(dpop, broker.issuer)],
    );
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return { token: response.body.access_token as string, dpop, keys };
  }

  /** Posts a token exchange; `shiftSeconds` dates the assertion and proof as a moved broker clock expects. */
  async function exchange(
    agent: TestAgent,
    proofKey: DpopKey,
    form: Record<string, string>,
    shiftSeconds = 0,
  ) {
    const nowS = Math.floor(Date.now() / 1000) + shiftSeconds;
    return postTokenForm(
      broker.issuer,
      {
        grant_type: exchangeGrant,
        client_id: agent.clientId,
        client_assertion_type: clientAssertionType,
        client_assertion: await signClientAssertion(agent, broker.issuer, {
          claims: { iat: nowS, exp: nowS + 60 },
        }),
        ...form,
      },
      [await signTokenProof(proofKey, broker.issuer, { claims: { iat: nowS } })],
    );
  }

  async function ticketFor(holder: TestAgent, held: HeldToken, delegate: TestAgent, actions: string[]) {
    return exchange(holder, held.dpop, {
      subject_token: held.token,
      subject_token_type: accessTokenType,
      requested_token_type: ticketType,
      audience: delegate.clientId,
      authorization_details: JSON.stringify([{ type: "agent_task", actions }]),
    });
  }

  async function redeem(
    agent: TestAgent,
    ticket: string,
    shiftSeconds = 0,
  ): Promise<{ status: number; body: Record<string, unknown>; held?: HeldToken }> {
    const { dpop, keys } = await newDpop();
    const response = await exchange(
      agent,
      dpop,
      { subject_token: ticket, subject_token_type: ticketType, resource: `${broker.issuer}/tools/tracker` },
      shiftSeconds,
    );
    return response.status === 200
      ? { ...response, held: { token: response.body.access_token as string, dpop, keys } }
      : response;
  }

  before(async () => {
    upstream = await startRecordingUpstream({
      bearer: "tracker-secret",
      basic: { user: "unused", password: "unused-password" },
      query: { name: "unused", value: "unused-value" },
    });
    broker = await startTestBroker();
    await broker.admin.call("POST", "/v1/secrets/tracker", { value: "tracker-secret" });
    await broker.admin.call("POST", "/v1/tools", {
      name: "tracker",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /issues/**" },
        { name: "comment", spec: "POST /issues/*/comments" },
        { name: "close", spec: "POST /issues/*/close" },
      ],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:tracker}"] },
    });
    parent = await registerAgent(broker, "planner");
    child = await registerAgent(broker, "researcher");
    grandchild = await registerAgent(broker, "summariser");
    stranger = await registerAgent(broker, "stranger");
    rootTask = await broker.admin.call<Task>("POST", "/v1/tasks", {
      agent: "planner",
      actions: ["tracker:read", "tracker:comment", "tracker:close"],
      intent: "plan the release",
      environment: "prod",
      ttl_seconds: 600,
    });
    rootToken = await tokenFor(parent, rootTask.id);
  });

  after(async () => {
    await broker.close();
    await upstream.close();
  });

  describe("three-level chain", () => {
    let childToken: HeldToken;
    let grandchildToken: HeldToken;

    before(async () => {
      const ticket = await ticketFor(parent, rootToken, child, ["tracker:read", "tracker:comment"]);
      assert.equal(ticket.status, 200, JSON.stringify(ticket.body));
      const redeemed = await redeem(child, ticket.body.access_token as string);
      childToken = redeemed.held as HeldToken;
      const second = await ticketFor(child, childToken, grandchild, ["tracker:read"]);
      assert.equal(second.status, 200, JSON.stringify(second.body));
      grandchildToken = (await redeem(grandchild, second.body.access_token as string)).held as HeldToken;
    });

    test("ticket response is token exchange shaped", async () => {
      const ticket = await ticketFor(parent, rootToken, child, ["tracker:read"]);
      assert.equal(ticket.body.issued_token_type, ticketType);
      assert.equal(ticket.body.token_type, "N_A");
      const claims = decodeJwt(ticket.body.access_token as string);
      assert.deepEqual(claims.may_act, { sub: child.clientId });
      assert.equal(claims.aud, broker.issuer);
      assert.ok((claims.exp as number) - (claims.iat as number) <= 60);
    });

    test("child token keeps root sub", () => {
      assert.equal(decodeJwt(childToken.token).sub, parent.clientId);
    });

    test("child token nests act", () => {
      assert.deepEqual(decodeJwt(childToken.token).act, {
        sub: child.clientId,
        act: { sub: parent.clientId },
      });
    });

    test("grandchild token nests two actors", () => {
      assert.deepEqual(decodeJwt(grandchildToken.token).act, {
        sub: grandchild.clientId,
        act: { sub: child.clientId, act: { sub: parent.clientId } },
      });
    });

    test("client_id is the current actor", () => {
      assert.equal(decodeJwt(grandchildToken.token).client_id, grandchild.clientId);
    });

    test("each token is narrower", () => {
      const actionsOf = (token: string) =>
        (decodeJwt(token).authorization_details as { actions: string[] }[])[0]?.actions ?? [];
      assert.deepEqual(actionsOf(rootToken.token), ["read", "comment", "close"]);
      assert.deepEqual(actionsOf(childToken.token), ["read", "comment"]);
      assert.deepEqual(actionsOf(grandchildToken.token), ["read"]);
    });

    test("grandchild issuance attributed to grandchild", async () => {
      const issued = await auditEvents(broker.admin, "token.issued");
      const event = issued.find((entry) => entry.jti === decodeJwt(grandchildToken.token).jti);
      assert.equal(event?.actor, grandchild.clientId);
      assert.equal(event?.data.sub, parent.clientId);
      assert.deepEqual(event?.data.actors, [grandchild.clientId, child.clientId, parent.clientId]);
    });

    test("grandchild call attributed to grandchild", async () => {
      const response = await callTool(broker.issuer, {
        target: "/tools/tracker/issues/1",
        token: grandchildToken.token,
        proofKeys: grandchildToken.keys,
      });
      assert.equal(response.status, 200, response.text);
      const allowed = await auditEvents(broker.admin, "tool_call.allowed");
      const last = allowed.at(-1);
      assert.equal(last?.actor, grandchild.clientId);
      assert.equal(last?.data.sub, parent.clientId);
      assert.deepEqual(last?.data.actors, [grandchild.clientId, child.clientId, parent.clientId]);
    });

    test("grandchild may not comment", async () => {
      const response = await callTool(broker.issuer, {
        method: "POST",
        target: "/tools/tracker/issues/1/comments",
        token: grandchildToken.token,
        proofKeys: grandchildToken.keys,
        body: Buffer.from("{}"),
        headers: [["content-type", "application/json"]],
      });
      assert.equal(response.status, 403);
    });

    test("chain recorded in audit log", async () => {
      const delegated = await auditEvents(broker.admin, "task.delegated");
      assert.ok(
        delegated.some((event) => event.actor === parent.clientId && event.data.delegate === child.clientId),
      );
      assert.ok(
        delegated.some(
          (event) => event.actor === child.clientId && event.data.delegate === grandchild.clientId,
        ),
      );
    });

    test("sub-agent using parent token rejected", async () => {
      const response = await callTool(broker.issuer, {
        target: "/tools/tracker/issues/1",
        token: rootToken.token,
        proofKeys: childToken.keys,
      });
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_dpop_proof");
    });

    test("parent using child token rejected", async () => {
      const response = await callTool(broker.issuer, {
        target: "/tools/tracker/issues/1",
        token: childToken.token,
        proofKeys: rootToken.keys,
      });
      assert.equal(response.status, 401);
    });

    test("another client's subject token rejected", async () => {
      const response = await exchange(child, rootToken.dpop, {
        subject_token: rootToken.token,
        subject_token_type: accessTokenType,
        requested_token_type: ticketType,
        audience: grandchild.clientId,
        authorization_details: JSON.stringify([{ type: "agent_task", actions: ["tracker:read"] }]),
      });
      assert.equal(response.body.error, "invalid_grant");
    });
  });

  describe("widening", () => {
    test("extra action is invalid_authorization_details", async () => {
      const response = await ticketFor(parent, rootToken, child, ["tracker:read", "tracker:delete"]);
      assert.equal(response.body.error, "invalid_authorization_details");
    });

    test("scope is invalid_scope", async () => {
      const response = await exchange(parent, rootToken.dpop, {
        subject_token: rootToken.token,
        subject_token_type: accessTokenType,
        requested_token_type: ticketType,
        audience: child.clientId,
        scope: "admin",
        authorization_details: JSON.stringify([{ type: "agent_task", actions: ["tracker:read"] }]),
      });
      assert.equal(response.body.error, "invalid_scope");
    });

    test("longer life is invalid_authorization_details", async () => {
      const response = await exchange(parent, rootToken.dpop, {
        subject_token: rootToken.token,
        subject_token_type: accessTokenType,
        requested_token_type: ticketType,
        audience: child.clientId,
        authorization_details: JSON.stringify([
          { type: "agent_task", actions: ["tracker:read"], ttl_seconds: 86400 },
        ]),
      });
      assert.equal(response.body.error, "invalid_authorization_details");
    });

    test("foreign resource is invalid_target", async () => {
      const response = await exchange(parent, rootToken.dpop, {
        subject_token: rootToken.token,
        subject_token_type: accessTokenType,
        requested_token_type: ticketType,
        audience: child.clientId,
        resource: `${broker.issuer}/tools/elsewhere`,
        authorization_details: JSON.stringify([{ type: "agent_task", actions: ["tracker:read"] }]),
      });
      assert.equal(response.body.error, "invalid_target");
    });
  });

  describe("tickets", () => {
    test("redeemed twice rejected", async () => {
      const ticket = (await ticketFor(parent, rootToken, child, ["tracker:read"])).body
        .access_token as string;
      assert.equal((await redeem(child, ticket)).status, 200);
      const again = await redeem(child, ticket);
      assert.equal(again.body.error, "invalid_grant");
    });

    test("redeemed by another agent rejected", async () => {
      const ticket = (await ticketFor(parent, rootToken, child, ["tracker:read"])).body
        .access_token as string;
      const response = await redeem(stranger, ticket);
      assert.equal(response.body.error, "invalid_grant");
    });

    test("redeemed after expiry rejected", async () => {
      const ticket = (await ticketFor(parent, rootToken, child, ["tracker:read"])).body
        .access_token as string;
      const realNow = systemClock.nowMs;
      // The broker reads time through its clock; moving it past the ticket's 60 s life expires it.
      const clock = broker.server.broker.context.clock as { nowMs: () => number };
      clock.nowMs = () => realNow() + 120_000;
      try {
        const response = await redeem(child, ticket, 120);
        assert.equal(response.body.error, "invalid_grant");
      } finally {
        clock.nowMs = realNow;
      }
    });

    test("proof by another key rejected", async () => {
      const other = await createDpopKey();
      const response = await exchange(parent, other, {
        subject_token: rootToken.token,
        subject_token_type: accessTokenType,
        requested_token_type: ticketType,
        audience: child.clientId,
        authorization_details: JSON.stringify([{ type: "agent_task", actions: ["tracker:read"] }]),
      });
      assert.equal(response.body.error, "invalid_grant");
    });

    test("ticket never passes as access token", async () => {
      const ticket = (await ticketFor(parent, rootToken, child, ["tracker:read"])).body
        .access_token as string;
      const response = await callTool(broker.issuer, {
        target: "/tools/tracker/issues/1",
        token: ticket,
        proofKeys: rootToken.keys,
      });
      assert.equal(response.status, 401);
      assert.equal(response.json().error, "invalid_token");
    });

    test("access token never passes as ticket", async () => {
      const { dpop } = await newDpop();
      const response = await exchange(child, dpop, {
        subject_token: rootToken.token,
        subject_token_type: ticketType,
        resource: `${broker.issuer}/tools/tracker`,
      });
      assert.equal(response.body.error, "invalid_grant");
    });
  });

  describe("revocation", () => {
    test("parent revocation cascades down", async () => {
      const task = await broker.admin.call<Task>("POST", "/v1/tasks", {
        agent: "planner",
        actions: ["tracker:read"],
        intent: "cascade",
        environment: "prod",
        ttl_seconds: 600,
      });
      const held = await tokenFor(parent, task.id);
      const ticket = (await ticketFor(parent, held, child, ["tracker:read"])).body.access_token as string;
      const childHeld = (await redeem(child, ticket)).held as HeldToken;
      await broker.admin.call("POST", "/v1/revoke", { task: task.id });
      const childTaskId = decodeJwt(childHeld.token).task_id as string;
      const childTask = await broker.admin.call<Task>("GET", `/v1/tasks/${childTaskId}`);
      assert.equal(childTask.status, "revoked");
      const response = await callTool(broker.issuer, {
        target: "/tools/tracker/issues/2",
        token: childHeld.token,
        proofKeys: childHeld.keys,
      });
      assert.equal(response.status, 401);
    });

    test("child revocation spares parent", async () => {
      const task = await broker.admin.call<Task>("POST", "/v1/tasks", {
        agent: "planner",
        actions: ["tracker:read"],
        intent: "spare the parent",
        environment: "prod",
        ttl_seconds: 600,
      });
      const held = await tokenFor(parent, task.id);
      const ticket = (await ticketFor(parent, held, child, ["tracker:read"])).body.access_token as string;
      const childHeld = (await redeem(child, ticket)).held as HeldToken;
      await broker.admin.call("POST", "/v1/revoke", { task: decodeJwt(childHeld.token).task_id as string });
      const parentTask = await broker.admin.call<Task>("GET", `/v1/tasks/${task.id}`);
      assert.equal(parentTask.status, "active");
      const response = await callTool(broker.issuer, {
        target: "/tools/tracker/issues/3",
        token: held.token,
        proofKeys: held.keys,
      });
      assert.equal(response.status, 200);
    });
  });

  describe("a person joins a task", () => {
    test("join is attributed to the person", async () => {
      const joined = await broker.admin.call<{ access_token: string }>(
        "POST",
        `/v1/tasks/${rootTask.id}/join`,
        { tool: "tracker" },
      );
      const claims = decodeJwt(joined.access_token);
      const person = await readKeyFile(broker.adminKeyFile);
      assert.equal(claims.sub, parent.clientId);
      assert.deepEqual(claims.act, { sub: person.clientId });
      assert.equal(claims.task_join, true);
      // The token is bound to the person's own identity key, so that key signs the proof.
      const jwk = JSON.parse(await readFile(broker.adminKeyFile, "utf8")) as Record<string, string>;
      const privateKey = (await importJWK(
        { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d },
        "Ed25519",
      )) as CryptoKey;
      const publicKey = (await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, "Ed25519")) as CryptoKey;
      const response = await callTool(broker.issuer, {
        target: "/tools/tracker/issues/9",
        token: joined.access_token,
        proofKeys: { privateKey, publicKey },
        proofAlg: "Ed25519",
      });
      assert.equal(response.status, 200, response.text);
      const allowed = await auditEvents(broker.admin, "tool_call.allowed");
      assert.equal(allowed.at(-1)?.actor, person.clientId);
    });
  });

  test("discovery lists token exchange", async () => {
    const metadata = await discover(broker.issuer);
    assert.ok(metadata.grant_types_supported?.includes(exchangeGrant));
  });
});
