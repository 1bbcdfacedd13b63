// Leases and shared accounts with the broker's own store on PostgreSQL rather than SQLite, so that
// their queries (claims by conditional update, the join that finds orphaned leases) run on both
// dialects. The store and the managed system are two databases of one throwaway cluster.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Checkout } from "../../src/accounts/checkout.js";
import type { Lease } from "../../src/leases/leases.js";
import { runSystemUpkeep } from "../../src/leases/upkeep.js";
import { registerAgent, startTask } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  prepareCluster,
  roleExists,
  sqlState,
  type PreparedCluster,
  registerBillingSystem,
} from "./systems-support.js";

let prepared: PreparedCluster;
let broker: TestBroker;

before(async () => {
  prepared = await prepareCluster();
  broker = await startTestBroker({ postgresUrl: await prepared.cluster.createDatabase("writ_store") });
  await registerBillingSystem(broker.admin, prepared);
  await broker.admin.call("POST", "/v1/systems/billing/templates", {
    name: "reader",
    member_of: ["billing_reader"],
  });
  await registerAgent(broker, "billing-bot");
});

after(async () => {
  await broker?.close();
  await prepared?.cluster.stop();
});

test("lease lifecycle on a PostgreSQL store", async () => {
  const task = await startTask(broker, "billing-bot", ["billing:reader"]);
  const role = `writ_${task.id}`;
  assert.ok(await roleExists(prepared, role));

  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  assert.equal(await roleExists(prepared, role), false);
  const { leases } = await broker.admin.call<{ leases: Lease[] }>("GET", `/v1/leases?task=${task.id}`);
  assert.equal(leases[0]?.state, "cleaned");
});

test("orphaned lease is found and cleaned", async () => {
  const task = await startTask(broker, "billing-bot", ["billing:reader"]);
  const role = `writ_${task.id}`;
  const context = broker.server.broker.context;
  // A task that ended without its lease being marked, as a crash between the two could leave it.
  await context.store.db.updateTable("tasks").set({ status: "revoked" }).where("id", "=", task.id).execute();

  // A pass of the broker's timer that began before the update above can miss the lease. The second
  // call therefore waits for a pass that began after it.
  await runSystemUpkeep(context);
  await runSystemUpkeep(context);

  assert.equal(await roleExists(prepared, role), false);
  const { leases } = await broker.admin.call<{ leases: Lease[] }>("GET", `/v1/leases?task=${task.id}`);
  assert.equal(leases[0]?.state, "cleaned");
});

test("account checkout on a PostgreSQL store", async () => {
  await broker.admin.call("POST", "/v1/accounts", {
    name: "etl",
    kind: "postgres",
    system: "billing",
    role: "legacy_etl",
  });
  const held = await broker.admin.call<Checkout>("POST", "/v1/accounts/etl/checkout", {
    human: "Test Admin",
  });
  await assert.rejects(
    broker.admin.call("POST", "/v1/accounts/etl/checkout", { human: "Test Admin" }),
    /checked out/,
  );
  await broker.admin.call("POST", "/v1/accounts/etl/checkin");
  assert.equal(await sqlState(prepared.connectAs("legacy_etl", held.password)), "28P01");
});
