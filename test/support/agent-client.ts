import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  SignJWT,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from "jose";
import * as oauth from "oauth4webapi";
import { request } from "undici";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { AdminClient } from "../../src/cli/admin-client.js";
import { generateIdentityKey, type GeneratedKey } from "../../src/identity/keys.js";
import type { Task } from "../../src/tasks/tasks.js";
import type { Tool } from "../../src/tools/registry.js";

/** The oauth4webapi option that permits plain http, which test brokers on loopback use. */
export const loopbackHttp = { [oauth.allowInsecureRequests]: true } as const;

/** The parts of a `TestBroker` that these helpers use. */
export interface BrokerHandle {
  issuer: string;
  admin: AdminClient;
}

/** An agent registered with its own key, as the agent process itself would hold it. */
export interface TestAgent {
  name: string;
  /** The agent's SPIFFE ID, which is its OAuth client_id. */
  clientId: string;
  key: GeneratedKey;
  privateKey: CryptoKey;
}

/** Fetches and validates the broker's RFC 8414 metadata with oauth4webapi. */
export async function discover(issuer: string): Promise<oauth.AuthorizationServer> {
  const url = new URL(issuer);
  const response = await oauth.discoveryRequest(url, { ...loopbackHttp, algorithm: "oauth2" });
  return oauth.processDiscoveryResponse(url, response);
}

/** Registers an agent with a fresh Ed25519 key through the admin API. */
export async function registerAgent(
  broker: BrokerHandle,
  name: string,
  environment = "prod",
): Promise<TestAgent> {
  const key = await generateIdentityKey("Ed25519");
  const agent = await broker.admin.call<{ spiffe_id: string }>("POST", "/v1/agents", {
    name,
    owner: "team-test",
    environment,
    public_jwk: key.publicJwk,
  });
  const privateKey = (await importJWK(key.privateJwk, "Ed25519")) as CryptoKey;
  return { name, clientId: agent.spiffe_id, key, privateKey };
}

/** Registers an HTTP tool with a `read` and a `write` action. */
export async function registerTool(broker: BrokerHandle, name: string, environment = "prod"): Promise<Tool> {
  return broker.admin.call<Tool>("POST", "/v1/tools", {
    name,
    kind: "http",
    environment,
    actions: [
      { name: "read", spec: "GET /repos/**" },
      { name: "write", spec: "POST /repos/**" },
    ],
  });
}

/** Starts a task for `agent` with `actions` given as `TOOL:ACTION`. */
export async function startTask(
  broker: BrokerHandle,
  agent: string,
  actions: string[],
  ttlSeconds = 600,
  environment = "prod",
): Promise<Task> {
  return broker.admin.call<Task>("POST", "/v1/tasks", {
    agent,
    actions,
    intent: "triage the open issues",
    environment,
    ttl_seconds: ttlSeconds,
  });
}

/** Returns the `authorization_details` parameter that names one task. */
export function taskDetails(taskId: string): string {
  return JSON.stringify([{ type: "agent_task", task_id: taskId }]);
}

/** A token obtained by an agent, with the DPoP handle and key pair it is bound to. */
export interface AgentToken {
  response: oauth.TokenEndpointResponse;
  accessToken: string;
  dpop: oauth.DPoPHandle;
  dpopKeys: oauth.CryptoKeyPair;
}

/**
 * Requests a token with oauth4webapi as a real agent would: private_key_jwt client authentication,
 * a DPoP proof by a fresh ES256 key (or `dpopKeys`), and the given form parameters.
 */
export async function requestAgentToken(
  as: oauth.AuthorizationServer,
  agent: Pick<TestAgent, "clientId" | "privateKey">,
  parameters: Record<string, string> | URLSearchParams,
  dpopKeys?: oauth.CryptoKeyPair,
): Promise<AgentToken> {
  const client: oauth.Client = { client_id: agent.clientId };
  const keys = dpopKeys ?? (await oauth.generateKeyPair("ES256"));
  const dpop = oauth.DPoP(client, keys);
  const response = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    oauth.PrivateKeyJwt({ key: agent.privateKey }),
    parameters,
    { DPoP: dpop, ...loopbackHttp },
  );
  const result = await oauth.processClientCredentialsResponse(as, client, response);
  return { response: result, accessToken: result.access_token, dpop, dpopKeys: keys };
}

/** Requests a token for the one tool of `taskId`, naming `resource` when given. */
export async function requestTaskToken(
  as: oauth.AuthorizationServer,
  agent: Pick<TestAgent, "clientId" | "privateKey">,
  taskId: string,
  resource?: string,
): Promise<AgentToken> {
  return requestAgentToken(as, agent, {
    authorization_details: taskDetails(taskId),
    ...(resource === undefined ? {} : { resource }),
  });
}

/** An OAuth error response, as the caller sees it. */
export interface Refusal {
  status: number;
  error: string;
  requestId: string;
}

/** Awaits an oauth4webapi call that must fail with an OAuth error response, and returns that error. */
export async function refusalOf(call: Promise<unknown>): Promise<Refusal> {
  try {
    await call;
  } catch (error) {
    if (error instanceof oauth.ResponseBodyError) {
      return { status: error.status, error: error.error, requestId: String(error.cause.request_id) };
    }
    throw error;
  }
  assert.fail("expected an OAuth error response, the request succeeded");
}

/** A person's key as `readKeyFile` loads it. */
export interface PersonKey {
  clientId: string;
  privateKey: CryptoKey;
}

/** Introspects `token` with oauth4webapi, authenticating as `caller` (an admin, normally). */
export async function introspect(
  as: oauth.AuthorizationServer,
  caller: PersonKey | Pick<TestAgent, "clientId" | "privateKey">,
  token: string,
): Promise<oauth.IntrospectionResponse> {
  const client: oauth.Client = { client_id: caller.clientId };
  const response = await oauth.introspectionRequest(
    as,
    client,
    oauth.PrivateKeyJwt({ key: caller.privateKey }),
    token,
    loopbackHttp,
  );
  return oauth.processIntrospectionResponse(as, client, response);
}

/** Obtains a person's DPoP-bound token for the admin API at `<issuer>/v1`. */
export async function requestPersonToken(
  as: oauth.AuthorizationServer,
  person: PersonKey,
): Promise<{ accessToken: string; dpop: oauth.DPoPHandle }> {
  const client: oauth.Client = { client_id: person.clientId };
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair("Ed25519"));
  const response = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    oauth.PrivateKeyJwt({ key: person.privateKey }),
    { resource: `${as.issuer}/v1` },
    { DPoP: dpop, ...loopbackHttp },
  );
  const result = await oauth.processClientCredentialsResponse(as, client, response);
  return { accessToken: result.access_token, dpop };
}

/** Returns every audit event of `kind`, reading all pages of `GET /v1/audit`. */
export async function auditEvents(admin: AdminClient, kind: string): Promise<AuditRecord[]> {
  const found: AuditRecord[] = [];
  let after = 0;
  for (;;) {
    const { events } = await admin.call<{ events: AuditRecord[] }>(
      "GET",
      `/v1/audit?after=${after}&limit=1000`,
    );
    found.push(...events.filter((event) => event.kind === kind));
    const last = events.at(-1);
    if (last === undefined) return found;
    after = last.seq;
  }
}

/** Returns the `error` of the `token.refused` audit event of a request, or undefined when none exists. */
export async function auditedRefusal(admin: AdminClient, requestId: string): Promise<unknown> {
  const refused = await auditEvents(admin, "token.refused");
  return refused.find((event) => event.data.request_id === requestId)?.data.error;
}

// ---------------------------------------------------------------------------------------------------
// Raw requests, for inputs that a conforming client library would never send
// ---------------------------------------------------------------------------------------------------

export const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/**
 * Signs a private_key_jwt client assertion with jose: `iss` = `sub` = client_id, `aud` = the issuer,
 * a fresh `jti`, and a lifetime of `lifetimeSeconds`. `claims` overrides any of these.
 */
export async function signClientAssertion(
  agent: Pick<TestAgent, "clientId" | "privateKey">,
  issuer: string,
  options: { claims?: JWTPayload; lifetimeSeconds?: number } = {},
): Promise<string> {
  const nowS = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: agent.clientId,
    sub: agent.clientId,
    aud: issuer,
    jti: randomUUID(),
    iat: nowS,
    exp: nowS + (options.lifetimeSeconds ?? 60),
    ...options.claims,
  })
    .setProtectedHeader({ alg: "Ed25519" })
    .sign(agent.privateKey);
}

/** A DPoP key pair as raw tests use it: the private key and the public JWK for the proof header. */
export interface DpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** Generates an ES256 DPoP key whose private key is extractable, so a test can embed it in a proof header. */
export async function createDpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { privateKey, publicJwk: await exportJWK(publicKey) };
}

/**
 * Signs a DPoP proof with jose for `POST <issuer>/oauth/token`: `typ` `dpop+jwt`, ES256, the public
 * JWK in the header, a fresh `jti` and the current `iat`. `claims` and `header` override any member,
 * and a claim set to undefined is left out.
 */
export async function signTokenProof(
  key: DpopKey,
  issuer: string,
  options: { claims?: JWTPayload; header?: Record<string, unknown> } = {},
): Promise<string> {
  const payload: JWTPayload = {
    htm: "POST",
    htu: `${issuer}/oauth/token`,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    ...options.claims,
  };
  for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: key.publicJwk, ...options.header })
    .sign(key.privateKey);
}

/** Builds the client_credentials form of a raw token request for the one tool of a task. */
export function clientCredentialsForm(
  agent: Pick<TestAgent, "clientId">,
  assertion: string,
  taskId: string,
): Record<string, string> {
  return {
    grant_type: "client_credentials",
    client_id: agent.clientId,
    client_assertion_type: clientAssertionType,
    client_assertion: assertion,
    authorization_details: taskDetails(taskId),
  };
}

/** A raw HTTP response with its parsed JSON body. */
export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/**
 * Posts a form to the token endpoint with one `DPoP` header field per entry of `proofs`. undici's
 * `request` sends each entry of a flat header list as its own field, where `fetch` would join them.
 */
export async function postTokenForm(
  issuer: string,
  form: Record<string, string>,
  proofs: string[],
): Promise<RawResponse> {
  const headers = ["content-type", "application/x-www-form-urlencoded"];
  for (const proof of proofs) headers.push("DPoP", proof);
  const response = await request(`${issuer}/oauth/token`, {
    method: "POST",
    headers,
    body: new URLSearchParams(form).toString(),
  });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    headers: response.headers,
    body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>),
  };
}
