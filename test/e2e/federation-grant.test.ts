import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  SignJWT,
  calculateJwkThumbprint,
  decodeJwt,
  exportJWK,
  generateKeyPair,
  type CryptoKey,
  type JWK,
} from "jose";
import * as oauth from "oauth4webapi";
import { ApiError } from "../../src/cli/admin-client.js";
import type { Task } from "../../src/tasks/tasks.js";
import type { Tool } from "../../src/tools/registry.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  discover,
  loopbackHttp,
  refusalOf,
  registerTool,
  startTask,
  taskDetails,
} from "../support/agent-client.js";

const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const platformAudience = "writ-broker";
const repositorySubject = "repo:octo-org/deploy-bot:ref:refs/heads/main";
const serviceAccountSubject = "system:serviceaccount:agents:triage";
const serviceAccountUid = "0f5a3c1e-8d2b-4c47-9a61-3b7e2d9f4a10";
const recreatedServiceAccountUid = "7c2e9b14-1a3d-4f58-b6e0-9d4c8a2f1e37";

/** A platform token issuer on loopback: it signs tokens and serves its JWKS at `/jwks`. */
interface PlatformIssuer {
  url: string;
  jwksUrl: string;
  sign(claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

async function startPlatformIssuer(): Promise<PlatformIssuer> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: "platform-1", alg: "ES256", use: "sig" };
  const server: Server = createServer((request, response) => {
    if (request.url !== "/jwks") {
      response.writeHead(404).end();
      return;
    }
    response
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ keys: [publicJwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    jwksUrl: `${url}/jwks`,
    sign: (claims) => signPlatformToken(privateKey, url, claims),
    close: () =>
      new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}

async function signPlatformToken(
  key: CryptoKey,
  issuer: string,
  claims: Record<string, unknown>,
): Promise<string> {
  const nowS = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: issuer, aud: platformAudience, iat: nowS, nbf: nowS, exp: nowS + 300, ...claims })
    .setProtectedHeader({ alg: "ES256", kid: "platform-1", typ: "JWT" })
    .sign(key);
}

/** Claims of a GitHub Actions OIDC token for one repository. */
function githubClaims(repositoryId: string): Record<string, unknown> {
  return {
    sub: repositorySubject,
    repository: "octo-org/deploy-bot",
    repository_id: repositoryId,
    repository_owner: "octo-org",
    repository_owner_id: "5100",
    ref: "refs/heads/main",
    jti: crypto.randomUUID(),
  };
}

/** Claims of a projected Kubernetes service account token. */
function kubernetesClaims(uid: string): Record<string, unknown> {
  return {
    sub: serviceAccountSubject,
    "kubernetes.io": {
      namespace: "agents",
      serviceaccount: { name: "triage", uid },
      pod: { name: "triage-7d9f", uid: "3d1c6b2a-5e4f-4a3b-9c8d-7e6f5a4b3c2d" },
    },
  };
}

describe("jwt-bearer federation grant", () => {
  let broker: TestBroker;
  let platform: PlatformIssuer;
  let as: oauth.AuthorizationServer;
  let tool: Tool;
  let githubAgentId: string;
  let githubTask: Task;
  let kubernetesAgentId: string;
  let kubernetesTask: Task;

  /** Requests a token with the jwt-bearer grant through oauth4webapi. The agent has no key, so the client does not authenticate. */
  async function requestFederatedToken(
    clientId: string,
    assertion: string,
    taskId: string,
    dpopKeys?: oauth.CryptoKeyPair,
  ): Promise<{ response: oauth.TokenEndpointResponse; dpopKeys: oauth.CryptoKeyPair }> {
    const client: oauth.Client = { client_id: clientId };
    const keys = dpopKeys ?? (await oauth.generateKeyPair("ES256"));
    const response = await oauth.genericTokenEndpointRequest(
      as,
      client,
      oauth.None(),
      jwtBearerGrant,
      { assertion, resource: tool.resource_uri, authorization_details: taskDetails(taskId) },
      { DPoP: oauth.DPoP(client, keys), ...loopbackHttp },
    );
    return {
      response: await oauth.processGenericTokenEndpointResponse(as, client, response),
      dpopKeys: keys,
    };
  }

  async function registerKeylessAgent(name: string): Promise<string> {
    const agent = await broker.admin.call<{ spiffe_id: string; attestation: string }>("POST", "/v1/agents", {
      name,
      owner: "team-platform",
      environment: "prod",
    });
    assert.equal(agent.attestation, "federated");
    return agent.spiffe_id;
  }

  before(async () => {
    broker = await startTestBroker();
    platform = await startPlatformIssuer();
    as = await discover(broker.issuer);
    tool = await registerTool(broker, "github");

    githubAgentId = await registerKeylessAgent("deploy-bot");
    await broker.admin.call("POST", "/v1/agents/deploy-bot/bindings", {
      kind: "github",
      issuer: platform.url,
      audience: platformAudience,
      jwksUrl: platform.jwksUrl,
      claims: { sub: repositorySubject, repository_id: "700100", repository_owner_id: "5100" },
    });
    githubTask = await startTask(broker, "deploy-bot", ["github:read"]);

    kubernetesAgentId = await registerKeylessAgent("triage");
    await broker.admin.call("POST", "/v1/agents/triage/bindings", {
      kind: "kubernetes",
      issuer: platform.url,
      audience: platformAudience,
      jwksUrl: platform.jwksUrl,
      claims: { sub: serviceAccountSubject, "kubernetes.io.serviceaccount.uid": serviceAccountUid },
    });
    kubernetesTask = await startTask(broker, "triage", ["github:read"]);
  });

  after(async () => {
    await broker.close();
    await platform.close();
  });

  test("bound repository gets token", async () => {
    const assertion = await platform.sign(githubClaims("700100"));
    const { response } = await requestFederatedToken(githubAgentId, assertion, githubTask.id);
    assert.equal(response.token_type, "dpop");
  });

  test("federated token names the agent", async () => {
    const assertion = await platform.sign(githubClaims("700100"));
    const { response, dpopKeys } = await requestFederatedToken(githubAgentId, assertion, githubTask.id);
    const claims = decodeJwt<{ cnf: { jkt: string } }>(response.access_token);
    const jkt = await calculateJwkThumbprint(
      await crypto.subtle.exportKey("jwk", dpopKeys.publicKey),
      "sha256",
    );
    assert.equal(claims.sub, githubAgentId);
    assert.equal(claims.client_id, githubAgentId);
    assert.equal(claims.task_id, githubTask.id);
    assert.equal(claims.cnf.jkt, jkt);
  });

  test("other repository is invalid_grant", async () => {
    const assertion = await platform.sign(githubClaims("700999"));
    const refusal = await refusalOf(requestFederatedToken(githubAgentId, assertion, githubTask.id));
    assert.equal(refusal.error, "invalid_grant");
  });

  test("other audience is invalid_grant", async () => {
    const assertion = await platform.sign({ ...githubClaims("700100"), aud: "another-service" });
    const refusal = await refusalOf(requestFederatedToken(githubAgentId, assertion, githubTask.id));
    assert.equal(refusal.error, "invalid_grant");
  });

  test("expired platform token is invalid_grant", async () => {
    const nowS = Math.floor(Date.now() / 1000);
    const assertion = await platform.sign({
      ...githubClaims("700100"),
      iat: nowS - 600,
      nbf: nowS - 600,
      exp: nowS - 300,
    });
    const refusal = await refusalOf(requestFederatedToken(githubAgentId, assertion, githubTask.id));
    assert.equal(refusal.error, "invalid_grant");
  });

  test("unsigned platform token is invalid_grant", async () => {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const nowS = Math.floor(Date.now() / 1000);
    const assertion = `${encode({ alg: "none", typ: "JWT" })}.${encode({
      iss: platform.url,
      aud: platformAudience,
      iat: nowS,
      exp: nowS + 300,
      ...githubClaims("700100"),
    })}.`;
    const refusal = await refusalOf(requestFederatedToken(githubAgentId, assertion, githubTask.id));
    assert.equal(refusal.error, "invalid_grant");
  });

  test("token for other agent is invalid_grant", async () => {
    const assertion = await platform.sign(githubClaims("700100"));
    const refusal = await refusalOf(requestFederatedToken(kubernetesAgentId, assertion, kubernetesTask.id));
    assert.equal(refusal.error, "invalid_grant");
  });

  test("binding without subject is invalid_binding", async () => {
    await registerKeylessAgent("loose-bot");
    const creation = broker.admin.call("POST", "/v1/agents/loose-bot/bindings", {
      kind: "github",
      issuer: platform.url,
      audience: platformAudience,
      jwksUrl: platform.jwksUrl,
      claims: { repository_id: "700100", repository_owner_id: "5100" },
    });
    await assert.rejects(creation, (error: unknown) => {
      assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
      assert.equal(error.status, 400);
      assert.equal(error.code, "invalid_binding");
      return true;
    });
  });

  test("bound service account gets token", async () => {
    const assertion = await platform.sign(kubernetesClaims(serviceAccountUid));
    const { response } = await requestFederatedToken(kubernetesAgentId, assertion, kubernetesTask.id);
    assert.equal(decodeJwt(response.access_token).sub, kubernetesAgentId);
  });

  test("other service account uid is invalid_grant", async () => {
    const assertion = await platform.sign(kubernetesClaims(recreatedServiceAccountUid));
    const refusal = await refusalOf(requestFederatedToken(kubernetesAgentId, assertion, kubernetesTask.id));
    assert.equal(refusal.error, "invalid_grant");
  });

  test("federated grant needs DPoP", async () => {
    const assertion = await platform.sign(githubClaims("700100"));
    const response = await fetch(`${broker.issuer}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: jwtBearerGrant,
        client_id: githubAgentId,
        assertion,
        resource: tool.resource_uri,
        authorization_details: taskDetails(githubTask.id),
      }),
    });
    assert.equal(((await response.json()) as { error: string }).error, "invalid_dpop_proof");
  });
});
