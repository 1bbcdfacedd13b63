import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createRemoteJWKSet, decodeJwt, importJWK, jwtVerify, type CryptoKey, type JWTPayload } from "jose";
import type * as oauth from "oauth4webapi";
import type { Approval } from "../../src/approvals/approvals.js";
import type { Breakglass } from "../../src/breakglass/breakglass.js";
import { AdminClient, ApiError } from "../../src/cli/admin-client.js";
import { ManualClock } from "../../src/clock.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import type { Task } from "../../src/tasks/tasks.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  auditEvents,
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type TestAgent,
} from "../support/agent-client.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";

const bearer = "breakglass-bearer-90ad";
const alertType = "writ-alert+jwt";

/** An alert as the receiver accepted it. */
interface ReceivedAlert {
  jws: string;
  payload: JWTPayload & { event: string; data: Record<string, unknown> };
}

/**
 * A webhook receiver that does what docs/approvals.md requires of one: verify the JWS against the
 * broker's JWKS with the alert `typ` and issuer, reject alerts older than `maxAge`, and reject any
 * `jti` it has accepted before (409), remembering each one for as long as `maxAge` would accept it.
 */
async function startAlertReceiver(broker: { issuer?: string }) {
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  const accepted: ReceivedAlert[] = [];
  const replays: string[] = [];
  const seenJtis = new Set<string>();
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const jws = Buffer.concat(chunks).toString();
      const issuer = broker.issuer ?? "";
      jwks ??= createRemoteJWKSet(new URL(`${issuer}/jwks.json`));
      jwtVerify(jws, jwks, {
        typ: alertType,
        issuer,
        maxTokenAge: "10m",
        // The broker runs on a ManualClock moved ahead by the test, so its iat may lead ours.
        clockTolerance: 60,
        requiredClaims: ["jti", "iat"],
      }).then(
        ({ payload }) => {
          const jti = payload.jti as string;
          if (seenJtis.has(jti)) {
            replays.push(jti);
            response.writeHead(409).end("replayed");
            return;
          }
          seenJtis.add(jti);
          accepted.push({ jws, payload: payload as ReceivedAlert["payload"] });
          response.writeHead(204).end();
        },
        () => response.writeHead(401).end("invalid signature"),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`,
    accepted,
    replays,
    events: () => accepted.map((alert) => alert.payload.event),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Registers a person with a fresh key and returns an API client acting as them. */
async function addPerson(broker: TestBroker, name: string, roles: string[]) {
  const key = await generateIdentityKey("Ed25519");
  const person = await broker.admin.call<{ spiffe_id: string }>("POST", "/v1/humans", {
    display_name: name,
    roles,
    public_jwk: key.publicJwk,
  });
  const privateKey = (await importJWK(key.privateJwk, "Ed25519")) as CryptoKey;
  const client = await AdminClient.connect({
    issuer: broker.issuer,
    key: { clientId: person.spiffe_id, privateKey, kid: key.publicJwk.kid },
  });
  return { id: person.spiffe_id, client };
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

/** Polls `check` every 50 ms until it returns true or `limitMs` passes. */
async function waitFor(check: () => Promise<boolean> | boolean, limitMs = 5000): Promise<boolean> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

describe("break-glass windows", () => {
  const clock = new ManualClock();
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let receiver: Awaited<ReturnType<typeof startAlertReceiver>>;
  let as: oauth.AuthorizationServer;
  let agent: TestAgent;
  let alice: Awaited<ReturnType<typeof addPerson>>;
  let aliceUpper: Awaited<ReturnType<typeof addPerson>>;
  let aliceWide: Awaited<ReturnType<typeof addPerson>>;

  function drop(accessToken: string, keys: oauth.CryptoKeyPair) {
    return callTool(broker.issuer, {
      method: "POST",
      target: "/tools/db/drop/cache",
      token: accessToken,
      proofKeys: keys,
    });
  }

  function request(client: AdminClient, duration_s: number) {
    return client.call<Breakglass>("POST", "/v1/breakglass", {
      agent: agent.name,
      actions: ["db:drop"],
      reason: "cache corrupted; drop it to restore service",
      duration_s,
    });
  }

  before(async () => {
    upstream = await startRecordingUpstream({
      bearer,
      basic: { user: "unused", password: "unused-password" },
      query: { name: "unused", value: "unused-value" },
    });
    // The receiver learns the issuer once the broker is up; the broker is configured with its URL.
    const issuer: { issuer?: string } = {};
    receiver = await startAlertReceiver(issuer);
    broker = await startTestBroker({ clock, config: { alert_webhooks: [receiver.url] } });
    issuer.issuer = broker.issuer;
    as = await discover(broker.issuer);
    await broker.admin.call("POST", "/v1/secrets/db-token", { value: bearer });
    await broker.admin.call("POST", "/v1/tools", {
      name: "db",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /rows/**" },
        { name: "drop", spec: "POST /drop/**", risk: "high" },
      ],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:db-token}"] },
    });
    agent = await registerAgent(broker, "fixer");
    alice = await addPerson(broker, "Alice", ["approver"]);
    aliceUpper = await addPerson(broker, "ALICE", ["approver"]);
    aliceWide = await addPerson(broker, "\uff21\uff4c\uff49\uff43\uff45", ["approver"]);
  });

  after(async () => {
    await broker?.close();
    await upstream?.close();
    await receiver?.close();
  });

  test("high-risk action denied outside break-glass", async () => {
    const task = await startTask(broker, agent.name, ["db:drop"]);
    const token = await requestTaskToken(as, agent, task.id);
    const response = await drop(token.accessToken, token.dpopKeys);
    assert.equal(response.status, 403);
  });

  test("person request for a human rejected", async () => {
    const error = await apiErrorOf(
      alice.client.call("POST", "/v1/breakglass", {
        human: "Alice",
        actions: ["db:drop"],
        reason: "test",
        duration_s: 60,
      }),
    );
    assert.equal(error.code, "invalid_request");
    assert.match(error.description, /not supported yet/);
  });

  test("self-approval rejected under any display name", async () => {
    const requested = await request(alice.client, 30);
    assert.equal(requested.status, "pending");
    const own = await apiErrorOf(alice.client.call("POST", `/v1/approvals/${requested.approval_id}/approve`));
    assert.equal(own.code, "access_denied");
    assert.equal(own.status, 403);

    // Two more people carry Alice's name in other case and in full-width Unicode. They are other
    // people, so each vote counts as theirs; neither is Alice.
    assert.notEqual(aliceUpper.id, alice.id);
    assert.notEqual(aliceWide.id, alice.id);
    const still = await alice.client.call<Approval>("GET", `/v1/approvals/${requested.approval_id}`);
    assert.equal(still.status, "pending");
    assert.deepEqual(still.votes, []);

    const rejected = await aliceWide.client.call<Approval>(
      "POST",
      `/v1/approvals/${requested.approval_id}/reject`,
    );
    assert.equal(rejected.status, "rejected");
    assert.equal(rejected.votes[0]?.approver, aliceWide.id);
    const closed = await alice.client.call<Breakglass>("GET", `/v1/breakglass/${requested.id}`);
    assert.equal(closed.status, "rejected");
  });

  test("window expires and revokes on time", async () => {
    const requested = await request(alice.client, 20);
    const noteTooEarly = await apiErrorOf(
      alice.client.call("POST", `/v1/breakglass/${requested.id}/note`, { text: "early" }),
    );
    assert.equal(noteTooEarly.code, "conflict");

    const granted = await aliceUpper.client.call<Approval>(
      "POST",
      `/v1/approvals/${requested.approval_id}/approve`,
    );
    assert.equal(granted.status, "granted");
    const active = await alice.client.call<Breakglass>("GET", `/v1/breakglass/${requested.id}`);
    assert.equal(active.status, "active");
    assert.ok(active.task_id !== null);
    const task = await broker.admin.call<Task>("GET", `/v1/tasks/${active.task_id}`);
    assert.equal(task.breakglass_id, requested.id);
    assert.equal(task.intent, "cache corrupted; drop it to restore service");
    assert.equal(task.deadline_s, active.ends_at_s);

    const token = await requestTaskToken(as, agent, task.id);
    assert.equal(decodeJwt(token.accessToken).breakglass_id, requested.id);
    const allowed = await drop(token.accessToken, token.dpopKeys);
    assert.equal(allowed.status, 200, allowed.text);
    const flagged = (await auditEvents(broker.admin, "tool_call.allowed")).filter(
      (event) => event.data.breakglass_id === requested.id,
    );
    assert.equal(flagged.length, 1);
    assert.deepEqual(flagged[0]?.data.policies, ["writ.permit_breakglass"]);

    clock.advanceSeconds(21);
    const expired = await waitFor(async () => {
      const shown = await alice.client.call<Breakglass>("GET", `/v1/breakglass/${requested.id}`);
      return shown.status === "expired";
    });
    assert.ok(expired, "the sweeper did not expire the window");
    const ended = await broker.admin.call<Task>("GET", `/v1/tasks/${task.id}`);
    assert.notEqual(ended.status, "active");
    const expiredEvent = (await auditEvents(broker.admin, "breakglass.expired")).find(
      (event) => event.data.breakglass_id === requested.id,
    );
    assert.ok(expiredEvent !== undefined, "no breakglass.expired event");
    assert.equal(ended.end_reason, "break-glass window expired");
    const refused = await drop(token.accessToken, token.dpopKeys);
    assert.equal(refused.status, 401);

    const noted = await alice.client.call<Breakglass>("POST", `/v1/breakglass/${requested.id}/note`, {
      text: "cache rebuilt; root cause in the deploy script",
    });
    assert.equal(noted.note, "cache rebuilt; root cause in the deploy script");
  });

  test("window ended early revokes its task", async () => {
    const requested = await request(alice.client, 600);
    await aliceWide.client.call("POST", `/v1/approvals/${requested.approval_id}/approve`);
    const active = await alice.client.call<Breakglass>("GET", `/v1/breakglass/${requested.id}`);
    const token = await requestTaskToken(as, agent, active.task_id as string);
    const ended = await aliceUpper.client.call<Breakglass>("POST", `/v1/breakglass/${requested.id}/end`);
    assert.equal(ended.status, "ended");
    const task = await broker.admin.call<Task>("GET", `/v1/tasks/${active.task_id}`);
    assert.equal(task.status, "revoked");
    const refused = await drop(token.accessToken, token.dpopKeys);
    assert.equal(refused.status, 401);
  });

  test("alerts verify against the JWKS and replays detected", async () => {
    const wanted = [
      "breakglass.requested",
      "breakglass.approved",
      "breakglass.activated",
      "breakglass.used",
      "breakglass.expired",
      "breakglass.ended",
    ];
    const arrived = await waitFor(() => wanted.every((event) => receiver.events().includes(event)));
    assert.ok(arrived, `alerts missing: got ${receiver.events().join(", ")}`);

    const jwks = (await (await fetch(`${broker.issuer}/jwks.json`)).json()) as {
      keys: { kid: string; use: string }[];
    };
    const first = receiver.accepted[0];
    assert.ok(first !== undefined);
    const alertKey = jwks.keys.find((key) => key.kid.startsWith("alert-"));
    assert.equal(alertKey?.use, "sig");
    assert.ok(jwks.keys.length >= 2, "the JWKS publishes the token key and the alert key");

    const replay = await fetch(receiver.url, { method: "POST", body: first.jws });
    assert.equal(replay.status, 409);
    assert.deepEqual(receiver.replays, [first.payload.jti]);

    const delivered = await auditEvents(broker.admin, "alert_delivery.succeeded");
    assert.ok(delivered.length >= wanted.length);
  });
});
