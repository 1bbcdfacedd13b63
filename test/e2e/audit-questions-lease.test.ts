import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { BlastRadius } from "../../src/audit/questions/blast-radius.js";
import type { WhoAnswer } from "../../src/audit/questions/who.js";
import type { Clock } from "../../src/clock.js";
import type { Task } from "../../src/tasks/tasks.js";
import {
  auditEvents,
  discover,
  registerAgent,
  requestTaskToken,
  type TestAgent,
} from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { callTool } from "../support/gateway-client.js";
import { adminRole, prepareCluster, roleExists, type PreparedCluster } from "./systems-support.js";

/**
 * The real time plus an offset that the test moves forward, so that a checkout and its check-in get
 * different timestamps while the broker's tokens and proofs keep working with the real time.
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
 * Dynamic database roles and a shared account on a real PostgreSQL server: two agents each get a
 * task role, one of them checks out and returns the shared account, and revoking the agent that
 * `blast-radius` names (through the API the printed command calls) drops its role while the other
 * agent's role stays.
 */
describe("audit questions on real leases", () => {
  const clock = new SteppedClock();
  let prepared: PreparedCluster;
  let broker: TestBroker;
  let loader: TestAgent;
  let loaderTask: Task;
  let otherTask: Task;
  let checkout: AuditRecord;
  let checkin: AuditRecord;

  const startTask = (agent: string) =>
    broker.admin.call<Task>("POST", "/v1/tasks", {
      agent,
      actions: ["billing-db:reader"],
      intent: "load the nightly invoices",
      environment: "prod",
      ttl_seconds: 600,
    });

  before(async () => {
    prepared = await prepareCluster();
    broker = await startTestBroker({ clock });
    await broker.admin.call("POST", "/v1/secrets/billing-admin", { value: prepared.adminPassword });
    await broker.admin.call("POST", "/v1/systems", {
      name: "billing-db",
      kind: "postgres",
      dsn: prepared.dsn(adminRole),
      password_secret: "billing-admin",
      environment: "prod",
    });
    await broker.admin.call("POST", "/v1/systems/billing-db/templates", {
      name: "reader",
      member_of: ["billing_reader"],
      grants: [],
    });
    await broker.admin.call("POST", "/v1/accounts", {
      name: "legacy-etl",
      kind: "postgres",
      system: "billing-db",
      role: "legacy_etl",
    });
    loader = await registerAgent(broker, "loader");
    await registerAgent(broker, "archiver");
    loaderTask = await startTask("loader");
    otherTask = await startTask("archiver");

    // The loader fetches its own role's password once, as an agent reaching the database would.
    const token = await requestTaskToken(
      await discover(broker.issuer),
      loader,
      loaderTask.id,
      `${broker.issuer}/v1/systems/billing-db`,
    );
    const fetched = await callTool(broker.issuer, {
      target: "/v1/systems/billing-db/credentials",
      token: token.accessToken,
      proofKeys: token.dpopKeys,
    });
    assert.equal(fetched.status, 200, fetched.text);

    clock.advanceSeconds(1);
    await broker.admin.call("POST", "/v1/accounts/legacy-etl/checkout", {
      task: loaderTask.id,
      duration_s: 900,
    });
    clock.advanceSeconds(1);
    await broker.admin.call("POST", "/v1/accounts/legacy-etl/checkin");
    checkout = (await auditEvents(broker.admin, "account.checked_out"))[0] as AuditRecord;
    checkin = (await auditEvents(broker.admin, "account.checked_in"))[0] as AuditRecord;
  });

  after(async () => {
    await broker?.close();
    await prepared?.cluster.stop();
  });

  test("task roles exist", async () => {
    assert.ok(await roleExists(prepared, `writ_${loaderTask.id}`));
    assert.ok(await roleExists(prepared, `writ_${otherTask.id}`));
  });

  test("who names the checkout holder", async () => {
    const at = new Date(checkout.time).toISOString();
    const answer = await broker.admin.call<WhoAnswer>("GET", `/v1/audit/who?account=legacy-etl&at=${at}`);
    assert.ok(answer.kind === "account");
    assert.equal(answer.holders.length, 1);
    assert.equal(answer.holders[0]?.identity, loader.clientId);
    assert.equal(answer.holders[0]?.holder.kind, "task");
    assert.equal(answer.holders[0]?.ended_ms, checkin.time);
  });

  test("blast radius lists the table lease", async () => {
    const radius = await broker.admin.call<BlastRadius>("GET", "/v1/audit/blast-radius?agent=loader");
    assert.equal(radius.leases.length, 1);
    assert.equal(radius.leases[0]?.source, "table");
    assert.equal(radius.leases[0]?.state, "active");
    assert.equal(radius.leases[0]?.role, `writ_${loaderTask.id}`);
    assert.equal(radius.leases[0]?.system, "billing-db");
    assert.equal(radius.leases[0]?.credential_fetches, 1);
    assert.equal(radius.account_checkouts.length, 1);
    assert.deepEqual(
      radius.could_reach.map((grant) => `${grant.tool}:${grant.action}`),
      ["billing-db:reader"],
    );
  });

  test("agent revoke drops only its role", async () => {
    const radius = await broker.admin.call<BlastRadius>("GET", "/v1/audit/blast-radius?agent=loader");
    assert.deepEqual(radius.revoke.args, ["revoke", "--agent", "loader"]);
    await broker.admin.call("POST", "/v1/revoke", { agent: "loader" });

    assert.equal(await roleExists(prepared, `writ_${loaderTask.id}`), false);
    assert.ok(await roleExists(prepared, `writ_${otherTask.id}`));
    const revoked = await broker.admin.call<BlastRadius>("GET", "/v1/audit/blast-radius?agent=loader");
    assert.equal(revoked.leases[0]?.state, "cleaned");
    const other = await broker.admin.call<BlastRadius>("GET", "/v1/audit/blast-radius?agent=archiver");
    assert.equal(other.leases[0]?.state, "active");
  });
});
