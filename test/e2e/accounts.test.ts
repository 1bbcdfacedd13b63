// Shared accounts against a real PostgreSQL server with password authentication over TCP. writ owns
// the shared role's password and gives it to one holder at a time. It rotates the password on
// check-in, on expiry and on a schedule, and ends the role's sessions, so a copied password stops
// working.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Account } from "../../src/accounts/accounts.js";
import type { Checkout } from "../../src/accounts/checkout.js";
import { ApiError } from "../../src/cli/admin-client.js";
import { auditEvents, registerAgent, registerTool, startTask } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { requireBuiltCli, runWritJson } from "../support/writ-process.js";
import {
  adminRole,
  prepareCluster,
  sqlState,
  type PreparedCluster,
  registerBillingSystem,
} from "./systems-support.js";

/** Interval between two looks at the store while the broker's timer works, in milliseconds. */
const pollMs = 50;

let prepared: PreparedCluster;
let broker: TestBroker;

before(async () => {
  requireBuiltCli();
  prepared = await prepareCluster();
  broker = await startTestBroker();
  await registerBillingSystem(broker.admin, prepared);
  await broker.admin.call("POST", "/v1/accounts", {
    name: "etl",
    kind: "postgres",
    system: "billing",
    role: "legacy_etl",
  });
});

after(async () => {
  await broker?.close();
  await prepared?.cluster.stop();
});

function checkout(name: string, body: Record<string, unknown>): Promise<Checkout> {
  return broker.admin.call<Checkout>("POST", `/v1/accounts/${name}/checkout`, body);
}

function checkin(name: string): Promise<{ rotated: boolean }> {
  return broker.admin.call("POST", `/v1/accounts/${name}/checkin`);
}

async function account(name: string): Promise<Account> {
  const { accounts } = await broker.admin.call<{ accounts: Account[] }>("GET", "/v1/accounts");
  const found = accounts.find((entry) => entry.name === name);
  assert.ok(found !== undefined);
  return found;
}

/** Waits until `predicate` holds for the account, while the broker's timer works on it. */
async function waitForAccount(name: string, predicate: (entry: Account) => boolean): Promise<Account> {
  for (;;) {
    const entry = await account(name);
    if (predicate(entry)) return entry;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

async function errorOf(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  assert.fail("expected the API call to fail");
}

test("account add replaces the shared password", async () => {
  assert.equal(await sqlState(prepared.connectAs("legacy_etl", "legacy-original")), "28P01");
  const created = await auditEvents(broker.admin, "account.created");
  assert.deepEqual(created[0]?.data, { account: "etl", system: "billing", role: "legacy_etl" });
});

test("account add needs ADMIN OPTION on the role", async () => {
  await prepared.superuser("CREATE ROLE other_job LOGIN");
  const error = await errorOf(
    broker.admin.call("POST", "/v1/accounts", {
      name: "other",
      kind: "postgres",
      system: "billing",
      role: "other_job",
    }),
  );
  assert.equal(error.code, "invalid_request");
  assert.match(error.description, /ADMIN OPTION on role "other_job"/);
});

test("second checkout is refused until checkin", async () => {
  const first = await runWritJson<Checkout>([
    "--data",
    broker.dataDir,
    "--admin-key",
    broker.adminKeyFile,
    "account",
    "checkout",
    "etl",
    "--human",
    "Test Admin",
    "--for",
    "15m",
  ]);
  assert.equal(first.holder.kind, "human");
  const session = await prepared.connectAs("legacy_etl", first.password);
  const rows = await session.query("SELECT count(*)::int AS n FROM billing.invoices");
  assert.equal(rows.rows[0].n, 2);
  const sessionErrors: string[] = [];
  session.on("error", (error: Error & { code?: string }) => sessionErrors.push(String(error.code)));

  const second = await errorOf(checkout("etl", { human: "Test Admin" }));
  assert.equal(second.code, "conflict");
  assert.equal(second.status, 409);

  const returned = await checkin("etl");
  assert.equal(returned.rotated, true);
  await assert.rejects(session.query("SELECT 1"));
  assert.equal(sessionErrors[0], "57P01");
  await session.end().catch(() => {});
  assert.equal(await sqlState(prepared.connectAs("legacy_etl", first.password)), "28P01");

  const next = await checkout("etl", { human: "Test Admin" });
  assert.notEqual(next.password, first.password);
  const fresh = await prepared.connectAs("legacy_etl", next.password);
  await fresh.end();
  await checkin("etl");

  const rotated = await auditEvents(broker.admin, "account.rotated");
  assert.deepEqual(
    rotated.map((event) => event.data),
    [
      { account: "etl", reason: "checkin" },
      { account: "etl", reason: "checkin" },
    ],
  );
  const checkedOut = await auditEvents(broker.admin, "account.checked_out");
  const holder = checkedOut[0]?.data.holder as { kind: string; spiffe_id: string; human_id: string };
  assert.equal(holder.kind, "human");
  assert.match(holder.spiffe_id, /^spiffe:\/\/example\.org\/human\//);
  assert.equal(typeof checkedOut[0]?.data.expires_at, "number");
});

test("waiting checkout gets the account at checkin", async () => {
  const first = await checkout("etl", { human: "Test Admin" });
  let settled = false;
  const waiting = checkout("etl", { human: "Test Admin", wait_s: 60 }).finally(() => {
    settled = true;
  });
  assert.equal((await errorOf(checkout("etl", { human: "Test Admin" }))).code, "conflict");
  assert.equal(settled, false, "the waiting checkout neither failed nor got the held account");
  await checkin("etl");
  const second = await waiting;
  assert.notEqual(second.checkout_id, first.checkout_id);
  assert.notEqual(second.password, first.password);
  await checkin("etl");
});

test("expired checkout is rotated", async () => {
  const held = await checkout("etl", { human: "Test Admin", duration_s: 900 });
  const before = await account("etl");
  // Moves the checkout's expiry into the past instead of waiting for it.
  await broker.server.broker.context.store.db
    .updateTable("account_checkouts")
    .set({ expires_at: Date.now() - 1 })
    .where("id", "=", held.checkout_id)
    .execute();
  await waitForAccount("etl", (entry) => entry.checkout_id === null && entry.rotated_at > before.rotated_at);
  assert.equal(await sqlState(prepared.connectAs("legacy_etl", held.password)), "28P01");
  const expired = await auditEvents(broker.admin, "account.expired");
  assert.equal(expired.length, 1);
  assert.equal((expired[0]?.data.holder as { kind: string }).kind, "human");
  const rotated = await auditEvents(broker.admin, "account.rotated");
  assert.equal(rotated.at(-1)?.data.reason, "expiry");
});

test("task checkout ends with its task", async () => {
  const agent = await registerAgent(broker, "etl-bot");
  await registerTool(broker, "warehouse");
  const task = await startTask(broker, agent.name, ["warehouse:read"]);
  const held = await checkout("etl", { task: task.id, duration_s: 900 });
  assert.deepEqual(held.holder, { kind: "task", task_id: task.id, agent: agent.clientId });
  assert.ok(held.expires_at <= task.deadline_s * 1000);

  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  await waitForAccount("etl", (entry) => entry.checkout_id === null && entry.rotation_due === null);
  assert.equal(await sqlState(prepared.connectAs("legacy_etl", held.password)), "28P01");
});

test("unused account rotates on schedule", async () => {
  await prepared.superuser(`CREATE ROLE "O'Brien" LOGIN`);
  await prepared.superuser(`GRANT "O'Brien" TO ${adminRole} WITH ADMIN OPTION`);
  await broker.admin.call("POST", "/v1/accounts", {
    name: "obrien",
    kind: "postgres",
    system: "billing",
    role: "O'Brien",
    rotate_every_s: 3600,
  });
  const held = await checkout("obrien", { human: "Test Admin" });
  const session = await prepared.connectAs("O'Brien", held.password);
  await session.end();
  await checkin("obrien");
  const before = await account("obrien");

  // Moves the last rotation an interval into the past instead of waiting an hour.
  await broker.server.broker.context.store.db
    .updateTable("accounts")
    .set({ rotated_at: Date.now() - 3601 * 1000 })
    .where("name", "=", "obrien")
    .execute();
  await waitForAccount("obrien", (entry) => entry.rotated_at > before.rotated_at);
  const rotated = await auditEvents(broker.admin, "account.rotated");
  assert.deepEqual(rotated.at(-1)?.data, { account: "obrien", reason: "schedule" });
});

test("checkin during an outage rotates later", async () => {
  const held = await checkout("etl", { human: "Test Admin" });
  await prepared.cluster.stopServer();
  try {
    const returned = await checkin("etl");
    assert.equal(returned.rotated, false);
    const blocked = await errorOf(checkout("etl", { human: "Test Admin" }));
    assert.equal(blocked.code, "conflict");
    assert.match(blocked.description, /rotation/);
    assert.equal((await account("etl")).rotation_due, "checkin");
  } finally {
    await prepared.cluster.startServer();
  }

  await waitForAccount("etl", (entry) => entry.rotation_due === null);
  assert.equal(await sqlState(prepared.connectAs("legacy_etl", held.password)), "28P01");
  const next = await checkout("etl", { human: "Test Admin" });
  const session = await prepared.connectAs("legacy_etl", next.password);
  await session.end();
  await checkin("etl");
});
