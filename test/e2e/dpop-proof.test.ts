import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { SignJWT, exportJWK, type JWTHeaderParameters } from "jose";
import type { Task } from "../../src/tasks/tasks.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  auditEvents,
  clientCredentialsForm,
  createDpopKey,
  postTokenForm,
  registerAgent,
  registerTool,
  signClientAssertion,
  signTokenProof,
  startTask,
  type DpopKey,
  type RawResponse,
  type TestAgent,
} from "../support/agent-client.js";

function base64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

describe("DPoP proof at token endpoint", () => {
  let broker: TestBroker;
  let agent: TestAgent;
  let task: Task;
  let dpopKey: DpopKey;

  /** Sends a token request with a valid, fresh client assertion and the given `DPoP` header values. */
  async function requestWithProofs(proofs: string[]): Promise<RawResponse> {
    const assertion = await signClientAssertion(agent, broker.issuer);
    return postTokenForm(broker.issuer, clientCredentialsForm(agent, assertion, task.id), proofs);
  }

  /** Asserts a 400 `invalid_dpop_proof` response, as RFC 9449 section 5 prescribes for the token endpoint. */
  function assertInvalidProof(response: RawResponse): void {
    assert.equal(response.body.error, "invalid_dpop_proof");
    assert.equal(response.status, 400);
  }

  before(async () => {
    broker = await startTestBroker();
    agent = await registerAgent(broker, "prover");
    await registerTool(broker, "github");
    task = await startTask(broker, "prover", ["github:read"]);
    dpopKey = await createDpopKey();
  });

  after(async () => {
    await broker.close();
  });

  test("valid raw proof is accepted", async () => {
    const response = await requestWithProofs([await signTokenProof(dpopKey, broker.issuer)]);
    assert.equal(response.status, 200);
  });

  test("alg none is rejected", async () => {
    const header = base64urlJson({ typ: "dpop+jwt", alg: "none", jwk: dpopKey.publicJwk });
    const payload = base64urlJson({
      htm: "POST",
      htu: `${broker.issuer}/oauth/token`,
      iat: Math.floor(Date.now() / 1000),
      jti: crypto.randomUUID(),
    });
    assertInvalidProof(await requestWithProofs([`${header}.${payload}.`]));
  });

  test("HS256 proof is rejected", async () => {
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const proof = await new SignJWT({
      htm: "POST",
      htu: `${broker.issuer}/oauth/token`,
      iat: Math.floor(Date.now() / 1000),
      jti: crypto.randomUUID(),
    })
      // jose's header type forbids a symmetric jwk, which is exactly the malformed input under test.
      .setProtectedHeader({
        alg: "HS256",
        typ: "dpop+jwt",
        jwk: { kty: "oct", k: Buffer.from(secret).toString("base64url") },
      } as unknown as JWTHeaderParameters)
      .sign(secret);
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("embedded private key is rejected", async () => {
    const privateJwk = await exportJWK(dpopKey.privateKey);
    const proof = await signTokenProof(dpopKey, broker.issuer, { header: { jwk: privateJwk } });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("typ JWT is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer, { header: { typ: "JWT" } });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("htu of another URL is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer, {
      claims: { htu: `${broker.issuer}/oauth/introspect` },
    });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("htm GET is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer, { claims: { htm: "GET" } });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("two DPoP headers are rejected", async () => {
    const response = await requestWithProofs([
      await signTokenProof(dpopKey, broker.issuer),
      await signTokenProof(dpopKey, broker.issuer),
    ]);
    assertInvalidProof(response);

    // The audit event records the broker's view, which shows that both fields arrived separately.
    const refused = await auditEvents(broker.admin, "token.refused");
    const event = refused.find((candidate) => candidate.data.request_id === response.body.request_id);
    assert.equal(event?.data.detail, "2 DPoP headers");
  });

  test("two-minute-old iat is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer, {
      claims: { iat: Math.floor(Date.now() / 1000) - 120 },
    });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("iat 30 s ahead is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer, {
      claims: { iat: Math.floor(Date.now() / 1000) + 30 },
    });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("missing jti is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer, { claims: { jti: undefined } });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("replayed proof is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer);
    const first = await requestWithProofs([proof]);
    assert.equal(first.status, 200);
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("missing DPoP header is rejected", async () => {
    assertInvalidProof(await requestWithProofs([]));
  });

  test("signature by other key is rejected", async () => {
    const other = await createDpopKey();
    const proof = await signTokenProof(other, broker.issuer, { header: { jwk: dpopKey.publicJwk } });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("missing jwk header is rejected", async () => {
    const proof = await signTokenProof(dpopKey, broker.issuer, { header: { jwk: undefined } });
    assertInvalidProof(await requestWithProofs([proof]));
  });

  test("garbage proof is rejected", async () => {
    assertInvalidProof(await requestWithProofs(["not-a-jwt"]));
  });

  test("proof refusals are audited", async () => {
    const response = await requestWithProofs([]);
    const refused = await auditEvents(broker.admin, "token.refused");
    const event = refused.find((candidate) => candidate.data.request_id === response.body.request_id);
    assert.equal(event?.data.error, "invalid_dpop_proof");
  });
});
