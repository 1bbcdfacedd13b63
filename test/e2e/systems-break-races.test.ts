// Races between a task's start, which creates its PostgreSQL role, and the task's end, which drops
// it, against a real server. The superuser holds a lock on pg_auth_members so that the role's
// creating transaction stops at its first GRANT. This pins the race instead of timing it.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as oauth from "oauth4webapi";
import pg from "pg";
import { fetchSystemCredential } from "../../src/client/index.js";
import type { Lease } from "../../src/leases/leases.js";
import type { Task } from "../../src/tasks/tasks.js";
import { registerAgent, startTask, type TestAgent } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  prepareCluster,
  roleExists,
  type PreparedCluster,
  registerBillingSystem,
} from "./systems-support.js";

let prepared: PreparedCluster;
let broker: TestBroker;
let agent: TestAgent;

before(async () => {
  prepared = await prepareCluster();
  broker = await startTestBroker();
  await registerBillingSystem(broker.admin, prepared);
  await broker.admin.call("POST", "/v1/systems/billing/templates", {
    name: "reader",
    member_of: ["billing_reader"],
  });
  agent = await registerAgent(broker, "race-bot");
});

after(async () => {
  await broker?.close();
  await prepared?.cluster.stop();
});

/** Polls until `check` returns a value, without asserting on how long it took. */
async function waitFor<T>(check: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test("task ended while its role is created", async () => {
  const blocker = new pg.Client({ connectionString: prepared.superuserAppUrl });
  await blocker.connect();
  await blocker.query("BEGIN");
  // SHARE mode lets readers through but stops the INSERT that GRANT ... TO makes.
  await blocker.query("LOCK TABLE pg_catalog.pg_auth_members IN SHARE MODE");

  const starting = startTask(broker, agent.name, ["billing:reader"]).then(
    (task) => ({ task }),
    (error: unknown) => ({ error }),
  );
  const task = await waitFor(async () => {
    const { tasks } = await broker.admin.call<{ tasks: Task[] }>("GET", "/v1/tasks?status=active");
    return tasks.find((entry) => entry.agent_name === agent.name);
  });
  // The management session now waits for the lock with CREATE ROLE done but not committed.
  await waitFor(async () => {
    const rows = await prepared.superuser(
      "SELECT 1 FROM pg_stat_activity WHERE application_name = 'writ' AND wait_event_type = 'Lock'",
    );
    return rows.length > 0 ? true : undefined;
  });

  // The lease row is already active, so the agent can fetch the password before the role exists.
  const credential = await fetchSystemCredential(
    {
      issuer: broker.issuer,
      clientId: agent.clientId,
      privateKey: agent.privateKey,
      allowInsecureHttp: true,
    },
    { taskId: task.id, system: "billing", dpopKeys: await oauth.generateKeyPair("ES256") },
  );

  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  await blocker.query("COMMIT");
  await blocker.end();
  // The start may report that the task ended under it; what matters is that no login survives.
  const started = await starting;
  if ("error" in started) assert.match(String(started.error), /task ended while its database role/);

  const late = await prepared.connectAs(credential.role, credential.password).then(
    async (session) => {
      await session.end();
      return true;
    },
    () => false,
  );
  assert.equal(late, false, "the fetched password still logs in after the task ended");

  const { leases } = await broker.admin.call<{ leases: Lease[] }>("GET", `/v1/leases?task=${task.id}`);
  const role = `writ_${task.id}`;
  const [attributes] = await prepared.superuser<{ rolcanlogin: boolean }>(
    "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
    [role],
  );
  assert.equal(
    await roleExists(prepared, role),
    false,
    `role ${role} of the ended task exists (LOGIN ${String(attributes?.rolcanlogin)}) while its lease is ${String(leases[0]?.state)}`,
  );
});
