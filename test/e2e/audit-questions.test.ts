import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { exportJWK, generateKeyPair, importJWK, type CryptoKey } from "jose";
import type * as oauth from "oauth4webapi";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { BlastRadius } from "../../src/audit/questions/blast-radius.js";
import type { EventPage } from "../../src/audit/questions/filters.js";
import type { WhoAnswer, WhoIdentity } from "../../src/audit/questions/who.js";
import type { TaskStory } from "../../src/audit/task-story.js";
import type { Breakglass } from "../../src/breakglass/breakglass.js";
import { AdminClient, readKeyFile } from "../../src/cli/admin-client.js";
import type { Clock } from "../../src/clock.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import type { Task } from "../../src/tasks/tasks.js";
import {
  clientAssertionType,
  discover,
  postTokenForm,
  registerAgent,
  requestTaskToken,
  signClientAssertion,
  signTokenProof,
  type AgentToken,
  type DpopKey,
  type TestAgent,
} from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";

const execFileAsync = promisify(execFile);
const cliSource = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

const exchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";
const accessTokenType = "urn:ietf:params:oauth:token-type:access_token";
const ticketType = "urn:writ:params:oauth:token-type:delegation-ticket";
const upstreamBearer = "tracker-upstream-bearer-51c2";

/** A token with the key pair it is bound to, in the two shapes the helpers take. */
interface HeldToken {
  token: string;
  keys: oauth.CryptoKeyPair;
  dpop: DpopKey;
}

/** A person's join token with their own identity key, which signs its proofs. */
interface JoinedToken {
  token: string;
  keys: oauth.CryptoKeyPair;
}

async function held(agentToken: AgentToken): Promise<HeldToken> {
  return {
    token: agentToken.accessToken,
    keys: agentToken.dpopKeys,
    dpop: {
      privateKey: agentToken.dpopKeys.privateKey as CryptoKey,
      publicJwk: await exportJWK(agentToken.dpopKeys.publicKey),
    },
  };
}

/** Returns the `jti` claim of a JWT without verifying it, because the test only needs the identifier. */
function jtiOf(token: string): string {
  const payload = JSON.parse(Buffer.from(token.split(".")[1] as string, "base64url").toString()) as {
    jti: string;
  };
  return payload.jti;
}

/**
 * The real time plus an offset that the test moves forward, so that each phase of the scenario has
 * timestamps of its own. ManualClock does not fit here: the CLI processes the test starts sign their
 * DPoP proofs with the real time, which would run ahead of a clock that does not move.
 */
class SteppedClock implements Clock {
  private offsetMs = 0;

  nowMs(): number {
    return Date.now() + this.offsetMs;
  }

  advanceSeconds(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
}

/**
 * A recorded multi-agent scenario on a real broker with its embedded HTTP gateway and a loopback
 * upstream that demands the credential the gateway injects. The planner agent reads and comments,
 * is denied once, delegates reading to a researcher, has its task joined by a person, and gets a
 * break-glass window. The reporter agent works alone. The dynamic database role and the shared-account
 * checkouts are recorded as the audit events the dynamic-credentials part writes (`lease.created`,
 * `account.checked_out`, `account.checked_in`), appended directly, because creating a real role needs
 * a PostgreSQL server with a management role set up for it, which the questions do not depend on.
 */
describe("audit questions on a multi-agent scenario", () => {
  const clock = new SteppedClock();
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let as: oauth.AuthorizationServer;
  let planner: TestAgent;
  let researcher: TestAgent;
  let reporter: TestAgent;
  let alice: { id: string; client: AdminClient };
  let adminId: string;
  let plannerTask: Task;
  let researcherTaskId: string;
  let reporterTask: Task;
  let breakglass: Breakglass;
  let plannerToken: HeldToken;
  let researcherToken: HeldToken;
  let reporterToken: HeldToken;
  let breakglassToken: HeldToken;
  let firstCallMs: number;
  let checkoutMs: number;
  let checkinMs: number;
  let humanCheckoutMs: number;

  const call = (token: Pick<HeldToken, "token" | "keys">, target: string, method = "GET") =>
    callTool(broker.issuer, {
      method,
      target,
      token: token.token,
      proofKeys: token.keys,
      ...(method === "POST"
        ? { body: Buffer.from("{}"), headers: [["content-type", "application/json"]] }
        : {}),
    });

  /** Moves the broker's clock one second on, so that each phase of the scenario has its own timestamps. */
  const tick = () => clock.advanceSeconds(1);

  async function exchange(agent: TestAgent, proofKey: DpopKey, form: Record<string, string>) {
    const response = await postTokenForm(
      broker.issuer,
      {
        grant_type: exchangeGrant,
        client_id: agent.clientId,
        client_assertion_type: clientAssertionType,
        client_assertion: await signClientAssertion(agent, broker.issuer),
        ...form,
      },
      [await signTokenProof(proofKey, broker.issuer)],
    );
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body;
  }

  async function delegateReading(): Promise<HeldToken> {
    const ticket = await exchange(planner, plannerToken.dpop, {
      subject_token: plannerToken.token,
      subject_token_type: accessTokenType,
      requested_token_type: ticketType,
      audience: researcher.clientId,
      authorization_details: JSON.stringify([{ type: "agent_task", actions: ["tracker:read"] }]),
    });
    const keys = (await generateKeyPair("ES256", { extractable: true })) as oauth.CryptoKeyPair;
    const dpop = { privateKey: keys.privateKey as CryptoKey, publicJwk: await exportJWK(keys.publicKey) };
    const redeemed = await exchange(researcher, dpop, {
      subject_token: ticket.access_token as string,
      subject_token_type: ticketType,
      resource: `${broker.issuer}/tools/tracker`,
    });
    return { token: redeemed.access_token as string, keys, dpop };
  }

  async function joinAsAdmin(): Promise<JoinedToken> {
    const joined = await broker.admin.call<{ access_token: string }>(
      "POST",
      `/v1/tasks/${plannerTask.id}/join`,
      { tool: "tracker" },
    );
    const jwk = JSON.parse(await readFile(broker.adminKeyFile, "utf8")) as Record<string, string>;
    const privateKey = (await importJWK(
      { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d },
      "Ed25519",
    )) as CryptoKey;
    const publicKey = (await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, "Ed25519")) as CryptoKey;
    return { token: joined.access_token, keys: { privateKey, publicKey } };
  }

  /** Appends an event the way the dynamic-credentials part records it; returns its time. */
  async function record(kind: string, taskId: string | null, data: Record<string, unknown>): Promise<number> {
    const appended = await broker.server.broker.context.audit.append({
      kind,
      actor: kind === "lease.created" ? adminId : "writ",
      task_id: taskId,
      data,
    });
    return appended.time;
  }

  before(async () => {
    upstream = await startRecordingUpstream({
      bearer: upstreamBearer,
      basic: { user: "unused", password: "unused-password" },
      query: { name: "unused", value: "unused-value" },
    });
    broker = await startTestBroker({ clock });
    as = await discover(broker.issuer);
    adminId = (await readKeyFile(broker.adminKeyFile)).clientId;
    await broker.admin.call("POST", "/v1/secrets/tracker-token", { value: upstreamBearer });
    await broker.admin.call("POST", "/v1/tools", {
      name: "tracker",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /issues/**" },
        { name: "comment", spec: "POST /issues/*/comments" },
        { name: "purge", spec: "POST /purge/**", risk: "high" },
      ],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:tracker-token}"] },
    });
    planner = await registerAgent(broker, "planner");
    researcher = await registerAgent(broker, "researcher");
    reporter = await registerAgent(broker, "reporter");
    alice = await addPerson(broker, "Alice", ["approver"]);

    plannerTask = await startTaskFor(
      broker,
      "planner",
      ["tracker:read", "tracker:comment"],
      "plan the release",
    );
    reporterTask = await startTaskFor(broker, "reporter", ["tracker:read"], "write the weekly report");
    plannerToken = await held(await requestTaskToken(as, planner, plannerTask.id));
    reporterToken = await held(await requestTaskToken(as, reporter, reporterTask.id));

    tick();
    firstCallMs = clock.nowMs();
    assert.equal((await call(plannerToken, "/tools/tracker/issues/1")).status, 200);
    assert.equal((await call(plannerToken, "/tools/tracker/issues/1/comments", "POST")).status, 200);
    assert.equal((await call(plannerToken, "/tools/tracker/admin/settings")).status, 403);
    assert.equal((await call(reporterToken, "/tools/tracker/issues/7")).status, 200);

    tick();
    researcherToken = await delegateReading();
    researcherTaskId = (await broker.admin.call<TaskStory>("GET", `/v1/audit/tasks/${plannerTask.id}`))
      .delegated[0] as string;
    assert.equal((await call(researcherToken, "/tools/tracker/issues/2")).status, 200);

    tick();
    const joined = await joinAsAdmin();
    const joinedCall = await callTool(broker.issuer, {
      target: "/tools/tracker/issues/3",
      token: joined.token,
      proofKeys: joined.keys,
      proofAlg: "Ed25519",
    });
    assert.equal(joinedCall.status, 200, joinedCall.text);

    tick();
    breakglass = await broker.admin.call<Breakglass>("POST", "/v1/breakglass", {
      agent: "planner",
      actions: ["tracker:purge"],
      reason: "search index corrupted; purge it",
      duration_s: 600,
    });
    await alice.client.call("POST", `/v1/approvals/${breakglass.approval_id}/approve`);
    breakglass = await broker.admin.call<Breakglass>("GET", `/v1/breakglass/${breakglass.id}`);
    breakglassToken = await held(await requestTaskToken(as, planner, breakglass.task_id as string));
    assert.equal((await call(breakglassToken, "/tools/tracker/purge/index", "POST")).status, 200);

    tick();
    await record("lease.created", plannerTask.id, {
      lease_id: "lease-planner-1",
      system: "billing-db",
      template: "reader",
      role: `writ_${plannerTask.id}`,
      task_id: plannerTask.id,
      valid_until: plannerTask.deadline_s * 1000,
    });
    tick();
    checkoutMs = await record("account.checked_out", plannerTask.id, {
      account: "legacy-etl",
      system: "billing-db",
      role: "legacy_etl",
      holder: { kind: "task", task_id: plannerTask.id, agent: planner.clientId },
      expires_at: clock.nowMs() + 900_000,
    });
    tick();
    checkinMs = await record("account.checked_in", plannerTask.id, {
      account: "legacy-etl",
      holder: { kind: "task", task_id: plannerTask.id, agent: planner.clientId },
    });
    tick();
    const aliceHolder = {
      kind: "human",
      human_id: alice.id.slice(alice.id.lastIndexOf("/") + 1),
      spiffe_id: alice.id,
    };
    humanCheckoutMs = await record("account.checked_out", null, {
      account: "legacy-etl",
      system: "billing-db",
      role: "legacy_etl",
      holder: aliceHolder,
      expires_at: clock.nowMs() + 900_000,
    });
  });

  after(async () => {
    await broker?.close();
    await upstream?.close();
  });

  describe("who", () => {
    let answer: WhoAnswer;
    let identities: WhoIdentity[];
    /** Returns the identity's entry for the chain that starts at its own root task. */
    const find = (actor: string) =>
      identities.find(
        (identity) => identity.actor === actor && identity.on_behalf_of.root_task_id !== breakglass.task_id,
      );

    before(async () => {
      answer = await broker.admin.call<WhoAnswer>("GET", "/v1/audit/who?tool=tracker");
      identities = answer.kind === "tool" ? answer.identities : [];
    });

    test("names every acting identity", () => {
      const actors = [...new Set(identities.map((identity) => identity.actor))].sort();
      assert.deepEqual(actors, [adminId, planner.clientId, reporter.clientId, researcher.clientId].sort());
      assert.equal(identities.length, 5);
    });

    test("planner counts allowed and denied", () => {
      const found = find(planner.clientId);
      assert.equal(found?.allowed, 2);
      assert.equal(found?.denied, 1);
      assert.deepEqual(found?.task_ids, [plannerTask.id]);
    });

    test("break-glass task is its own chain", () => {
      const found = identities.find((identity) => identity.on_behalf_of.root_task_id === breakglass.task_id);
      assert.equal(found?.actor, planner.clientId);
      assert.equal(found?.allowed, 1);
      assert.equal(found?.on_behalf_of.initiator, adminId);
    });

    test("planner acted on its own authority", () => {
      assert.deepEqual(find(planner.clientId)?.on_behalf_of, {
        initiator: adminId,
        root_task_id: plannerTask.id,
        sub: planner.clientId,
        actors: [],
      });
    });

    test("researcher acted for the planner", () => {
      const found = find(researcher.clientId);
      assert.equal(found?.on_behalf_of.sub, planner.clientId);
      assert.deepEqual(found?.on_behalf_of.actors, [researcher.clientId, planner.clientId]);
      assert.equal(found?.on_behalf_of.initiator, adminId);
      assert.equal(found?.on_behalf_of.root_task_id, plannerTask.id);
      assert.deepEqual(found?.task_ids, [researcherTaskId]);
    });

    test("joined person acted in the planner's task", () => {
      const found = find(adminId);
      assert.equal(found?.on_behalf_of.sub, planner.clientId);
      assert.deepEqual(found?.on_behalf_of.actors, [adminId]);
      assert.deepEqual(found?.task_ids, [plannerTask.id]);
      assert.equal(found?.allowed, 1);
    });

    test("action narrows the answer", async () => {
      const narrowed = await broker.admin.call<WhoAnswer>("GET", "/v1/audit/who?tool=tracker&action=comment");
      assert.equal(narrowed.kind, "tool");
      if (narrowed.kind !== "tool") return;
      assert.deepEqual(
        narrowed.identities.map((identity) => [identity.actor, identity.allowed]),
        [[planner.clientId, 1]],
      );
    });

    test("resource URI names the break-glass call", async () => {
      const resource = encodeURIComponent(`${broker.issuer}/tools/tracker/purge/**`);
      const narrowed = await broker.admin.call<WhoAnswer>("GET", `/v1/audit/who?resource=${resource}`);
      assert.ok(narrowed.kind === "tool");
      assert.equal(narrowed.identities.length, 1);
      assert.equal(narrowed.identities[0]?.actor, planner.clientId);
      assert.equal(narrowed.identities[0]?.on_behalf_of.initiator, adminId);
      assert.deepEqual(narrowed.identities[0]?.task_ids, [breakglass.task_id]);
    });

    test("path pattern matches one segment", async () => {
      const narrowed = await broker.admin.call<WhoAnswer>(
        "GET",
        `/v1/audit/who?tool=tracker&resource=${encodeURIComponent("/issues/*")}`,
      );
      assert.ok(narrowed.kind === "tool");
      const actors = narrowed.identities.map((identity) => identity.actor).sort();
      assert.deepEqual(actors, [adminId, planner.clientId, reporter.clientId, researcher.clientId].sort());
      assert.equal(narrowed.identities.find((identity) => identity.actor === planner.clientId)?.allowed, 1);
    });

    test("window before the calls is empty", async () => {
      const until = new Date(firstCallMs - 1).toISOString();
      const empty = await broker.admin.call<WhoAnswer>("GET", `/v1/audit/who?tool=tracker&until=${until}`);
      assert.ok(empty.kind === "tool");
      assert.deepEqual(empty.identities, []);
    });

    test("account holder at an instant", async () => {
      const at = new Date(checkoutMs).toISOString();
      const holders = await broker.admin.call<WhoAnswer>("GET", `/v1/audit/who?account=legacy-etl&at=${at}`);
      assert.ok(holders.kind === "account");
      assert.equal(holders.holders.length, 1);
      const holding = holders.holders[0];
      assert.equal(holding?.identity, planner.clientId);
      assert.equal(holding?.holder.kind, "task");
      assert.equal(holding?.on_behalf_of?.initiator, adminId);
      assert.equal(holding?.ended_by, "checked_in");
      assert.equal(holding?.ended_ms, checkinMs);
    });

    test("account free between checkouts", async () => {
      const at = new Date(checkinMs).toISOString();
      const holders = await broker.admin.call<WhoAnswer>("GET", `/v1/audit/who?account=legacy-etl&at=${at}`);
      assert.ok(holders.kind === "account");
      assert.deepEqual(holders.holders, []);
    });

    test("account held by a person later", async () => {
      const at = new Date(humanCheckoutMs).toISOString();
      const holders = await broker.admin.call<WhoAnswer>("GET", `/v1/audit/who?account=legacy-etl&at=${at}`);
      assert.ok(holders.kind === "account");
      assert.equal(holders.holders[0]?.identity, alice.id);
      assert.equal(holders.holders[0]?.on_behalf_of, null);
    });

    test("account without a time rejected", async () => {
      await assert.rejects(broker.admin.call("GET", "/v1/audit/who?account=legacy-etl"), /--at/);
    });

    test("no tool, resource or account rejected", async () => {
      await assert.rejects(broker.admin.call("GET", "/v1/audit/who"), /--tool/);
    });

    test("invalid time rejected", async () => {
      await assert.rejects(
        broker.admin.call("GET", "/v1/audit/who?tool=tracker&since=yesterday"),
        /RFC 3339/,
      );
    });
  });

  describe("task story", () => {
    let story: TaskStory;
    const kinds = () => story.events.map((event) => event.kind);

    before(async () => {
      story = await broker.admin.call<TaskStory>("GET", `/v1/audit/tasks/${plannerTask.id}`);
    });

    test("starts with the task and its initiator", () => {
      assert.equal(story.events[0]?.kind, "task.started");
      assert.equal(story.events[0]?.actor, adminId);
      assert.equal(story.task.initiator, adminId);
    });

    test("lists the delegated task", () => {
      assert.deepEqual(story.delegated, [researcherTaskId]);
    });

    test("contains calls, delegation, join and lease", () => {
      for (const kind of [
        "token.issued",
        "tool_call.allowed",
        "tool_call.denied",
        "task.delegated",
        "task.joined",
        "lease.created",
      ]) {
        assert.ok(kinds().includes(kind), `${kind} missing from ${kinds().join(", ")}`);
      }
    });

    test("contains the delegate's call", () => {
      assert.ok(
        story.events.some(
          (event) => event.kind === "tool_call.allowed" && event.actor === researcher.clientId,
        ),
      );
    });
  });

  describe("blast radius of an agent", () => {
    let radius: BlastRadius;

    before(async () => {
      radius = await broker.admin.call<BlastRadius>("GET", "/v1/audit/blast-radius?agent=planner");
    });

    test("could reach its tasks' actions", () => {
      const grants = radius.could_reach.map((grant) => `${grant.tool}:${grant.action}`).sort();
      assert.deepEqual(grants, ["tracker:comment", "tracker:purge", "tracker:read"]);
      assert.ok(radius.could_reach.every((grant) => grant.live));
    });

    test("did reach with counts per actor", () => {
      const reached = radius.did_reach
        .map((reach) => `${reach.tool}:${reach.action}:${reach.actor}:${reach.calls}`)
        .sort();
      assert.deepEqual(
        reached,
        [
          `tracker:comment:${planner.clientId}:1`,
          `tracker:purge:${planner.clientId}:1`,
          `tracker:read:${adminId}:1`,
          `tracker:read:${planner.clientId}:1`,
          `tracker:read:${researcher.clientId}:1`,
        ].sort(),
      );
    });

    test("lists its tasks and tokens", () => {
      assert.deepEqual(
        radius.tasks.map((task) => task.id).sort(),
        [plannerTask.id, breakglass.task_id].sort(),
      );
      const jtis = radius.tokens.map((token) => token.jti);
      assert.ok(jtis.includes(jtiOf(plannerToken.token)));
      assert.ok(jtis.includes(jtiOf(breakglassToken.token)));
      assert.ok(!jtis.includes(jtiOf(reporterToken.token)));
    });

    test("lists the delegated task and its token", () => {
      assert.equal(radius.delegated.length, 1);
      assert.equal(radius.delegated[0]?.id, researcherTaskId);
      assert.equal(radius.delegated[0]?.agent_name, "researcher");
      assert.deepEqual(
        radius.delegated[0]?.tokens.map((token) => token.jti),
        [jtiOf(researcherToken.token)],
      );
    });

    test("lists the database lease", () => {
      assert.equal(radius.leases.length, 1);
      assert.equal(radius.leases[0]?.lease_id, "lease-planner-1");
      assert.equal(radius.leases[0]?.state, "active");
      assert.equal(radius.leases[0]?.source, "events");
    });

    test("lists the account checkout", () => {
      assert.equal(radius.account_checkouts.length, 1);
      assert.equal(radius.account_checkouts[0]?.account, "legacy-etl");
      assert.equal(radius.account_checkouts[0]?.ended_by, "checked_in");
    });

    test("lists the break-glass window and its use", () => {
      assert.equal(radius.breakglass.length, 1);
      assert.equal(radius.breakglass[0]?.id, breakglass.id);
      assert.equal(radius.breakglass[0]?.status, "active");
      assert.equal(radius.breakglass[0]?.uses, 1);
    });

    test("names the injected credential", () => {
      assert.deepEqual(radius.injected_credentials, [
        { tool: "tracker", injections: ["header:Authorization"], secrets: ["tracker-token"], calls: 5 },
      ]);
    });

    test("ends with the agent revoke command", () => {
      assert.equal(radius.revoke.command, "writ revoke --agent planner");
    });

    test("unknown agent not found", async () => {
      await assert.rejects(broker.admin.call("GET", "/v1/audit/blast-radius?agent=nobody"), /not found/);
    });
  });

  describe("blast radius of a token", () => {
    test("delegate token reaches only its call", async () => {
      const jti = jtiOf(researcherToken.token);
      const radius = await broker.admin.call<BlastRadius>("GET", `/v1/audit/blast-radius?token=${jti}`);
      assert.deepEqual(
        radius.could_reach.map((grant) => `${grant.tool}:${grant.action}`),
        ["tracker:read"],
      );
      assert.deepEqual(
        radius.did_reach.map((reach) => [reach.actor, reach.calls]),
        [[researcher.clientId, 1]],
      );
      assert.deepEqual(radius.delegated, []);
      assert.equal(radius.revoke.command, `writ revoke --token ${jti}`);
    });

    test("parent token includes its delegation", async () => {
      const jti = jtiOf(plannerToken.token);
      const radius = await broker.admin.call<BlastRadius>("GET", `/v1/audit/blast-radius?token=${jti}`);
      assert.deepEqual(
        radius.delegated.map((task) => task.id),
        [researcherTaskId],
      );
      const actors = radius.did_reach.map((reach) => reach.actor).sort();
      assert.deepEqual(actors, [planner.clientId, planner.clientId, researcher.clientId].sort());
      assert.equal(radius.leases.length, 1);
    });
  });

  describe("event filters", () => {
    const events = async (query: string) =>
      (await broker.admin.call<EventPage>("GET", `/v1/audit/events?limit=1000&${query}`)).events;

    test("agent keeps only its events", async () => {
      const found = await events("agent=reporter");
      assert.ok(found.length > 0);
      assert.ok(
        found.every(
          (event) => event.task_id === reporterTask.id || JSON.stringify(event).includes(reporter.clientId),
        ),
      );
      assert.ok(!found.some((event) => event.actor === planner.clientId));
    });

    test("decision deny keeps the denial", async () => {
      const found = await events("decision=deny");
      assert.deepEqual(
        found.map((event) => [event.kind, event.actor]),
        [["tool_call.denied", planner.clientId]],
      );
    });

    test("breakglass keeps the window's events", async () => {
      const found = await events("breakglass=true");
      const kinds = found.map((event) => event.kind);
      assert.ok(kinds.includes("breakglass.requested"));
      assert.ok(kinds.includes("tool_call.allowed"));
      assert.ok(
        found.every(
          (event) => event.kind.startsWith("breakglass.") || event.data.breakglass_id === breakglass.id,
        ),
      );
    });

    test("human keeps the person's acts", async () => {
      const found = await events(`human=${encodeURIComponent("Alice")}`);
      assert.ok(found.length > 0);
      assert.ok(found.some((event) => event.actor === alice.id));
      assert.ok(found.some((event) => event.kind === "account.checked_out"));
    });

    test("tool and task combine", async () => {
      const found = await events(`tool=tracker&task=${researcherTaskId}`);
      assert.deepEqual([...new Set(found.map((event) => event.kind))].sort(), [
        "token.issued",
        "tool_call.allowed",
      ]);
    });

    test("window keeps only its events", async () => {
      const since = new Date(checkoutMs).toISOString();
      const until = new Date(checkinMs).toISOString();
      const found = await events(`since=${since}&until=${until}`);
      assert.deepEqual(
        found.map((event: AuditRecord) => event.kind),
        ["account.checked_out", "account.checked_in"],
      );
    });

    test("page continues after its last event", async () => {
      const first = await broker.admin.call<EventPage>("GET", "/v1/audit/events?tool=tracker&limit=2");
      assert.equal(first.events.length, 2);
      assert.equal(first.next_after, first.events[1]?.seq);
      const next = await broker.admin.call<EventPage>(
        "GET",
        `/v1/audit/events?tool=tracker&limit=2&after=${first.next_after}`,
      );
      assert.ok((next.events[0]?.seq ?? 0) > (first.next_after ?? 0));
    });

    test("unknown filter rejected", async () => {
      await assert.rejects(
        broker.admin.call("GET", "/v1/audit/events?agnet=planner"),
        /unknown query parameter/,
      );
    });

    test("invalid decision rejected", async () => {
      await assert.rejects(broker.admin.call("GET", "/v1/audit/events?decision=maybe"), /allow or deny/);
    });
  });

  describe("through the CLI", () => {
    const writ = async (args: string[]) => {
      const { stdout } = await execFileAsync(
        process.execPath,
        ["--import", "tsx", cliSource, "--url", broker.issuer, "--admin-key", broker.adminKeyFile, ...args],
        { timeout: 60_000 },
      );
      return stdout;
    };

    test("who prints CSV", async () => {
      const csv = await writ(["audit", "who", "--tool", "tracker", "--action", "comment", "--csv"]);
      const lines = csv.split("\r\n");
      assert.equal(lines[0], "ACTOR,SUB,ACTORS,INITIATOR,TASKS,ALLOWED,DENIED,HELD,FIRST,LAST");
      assert.match(
        lines[1] ?? "",
        new RegExp(`^${planner.clientId},${planner.clientId},,${adminId},${plannerTask.id},1,0,0,`),
      );
      assert.equal(lines.length, 3);
    });

    test("blast radius table ends with the command", async () => {
      const printed = await writ(["audit", "blast-radius", "--agent", "planner"]);
      const last = printed.trimEnd().split("\n").at(-1);
      assert.equal(last, "cut off only this agent: writ revoke --agent planner");
      assert.match(printed, /injected_credential +tracker/);
    });

    test("printed revoke cuts off only that agent", async () => {
      const radius = JSON.parse(
        await writ(["--json", "audit", "blast-radius", "--agent", "planner"]),
      ) as BlastRadius;
      assert.deepEqual(radius.revoke.args, ["revoke", "--agent", "planner"]);
      await writ(radius.revoke.args);

      const revoked = await call(plannerToken, "/tools/tracker/issues/1");
      assert.equal(revoked.status, 401);
      const other = await call(reporterToken, "/tools/tracker/issues/8");
      assert.equal(other.status, 200, other.text);
      const upstreamSaw = upstream.seen.map((request) => request.url);
      assert.ok(upstreamSaw.includes("/issues/8"));
      assert.ok(
        upstream.seen.every((request) => request.headers.authorization === `Bearer ${upstreamBearer}`),
      );
    });
  });
});

async function startTaskFor(
  broker: TestBroker,
  agent: string,
  actions: string[],
  intent: string,
): Promise<Task> {
  return broker.admin.call<Task>("POST", "/v1/tasks", {
    agent,
    actions,
    intent,
    environment: "prod",
    ttl_seconds: 600,
  });
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
