// Attempts to make a per-task PostgreSQL role do more than its template states, or outlive its task,
// against a real server with password authentication over TCP. Each test asserts the behaviour
// that writ promises, so a failing test is a reproduced weakness.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as oauth from "oauth4webapi";
import { ApiError } from "../../src/cli/admin-client.js";
import { fetchSystemCredential } from "../../src/client/index.js";
import type { Lease } from "../../src/leases/leases.js";
import type { Task } from "../../src/tasks/tasks.js";
import { registerAgent, startTask, type TestAgent } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  adminRole,
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
  agent = await registerAgent(broker, "break-bot");
});

after(async () => {
  await broker?.close();
  await prepared?.cluster.stop();
});

/** Returns the API error of a failed admin call, or undefined when the call succeeded. */
async function apiErrorOf(call: Promise<unknown>): Promise<ApiError | undefined> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  return undefined;
}

async function fetchCredential(task: Task) {
  return fetchSystemCredential(
    {
      issuer: broker.issuer,
      clientId: agent.clientId,
      privateKey: agent.privateKey,
      allowInsecureHttp: true,
    },
    { taskId: task.id, system: "billing", dpopKeys: await oauth.generateKeyPair("ES256") },
  );
}

test("template rejects a shared account role", async () => {
  // legacy_etl is held WITH ADMIN OPTION as the documented setup requires for `writ account add`.
  await broker.admin.call("POST", "/v1/accounts", {
    name: "etl",
    kind: "postgres",
    system: "billing",
    role: "legacy_etl",
  });
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems/billing/templates", {
      name: "etl-member",
      member_of: ["legacy_etl"],
    }),
  );
  if (error !== undefined) return;

  // The template was accepted: every task role now acts as the shared role without a checkout.
  const task = await startTask(broker, agent.name, ["billing:etl-member"]);
  const credential = await fetchCredential(task);
  const session = await prepared.connectAs(credential.role, credential.password);
  try {
    await session.query("SET ROLE legacy_etl");
    const rows = await session.query<{ who: string }>("SELECT current_user AS who");
    assert.fail(
      `a task role joined the shared account's role and ran as "${String(rows.rows[0]?.who)}" without a checkout`,
    );
  } finally {
    await session.end();
    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  }
});

test("template rejects a CREATEROLE group", async () => {
  await prepared.superuser("CREATE ROLE ops_admin NOLOGIN CREATEROLE");
  await prepared.superuser(`GRANT ops_admin TO ${adminRole} WITH ADMIN OPTION`);
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems/billing/templates", { name: "ops", member_of: ["ops_admin"] }),
  );
  if (error !== undefined) return;

  // Accepted: the task role creates a login role of its own that outlives the task.
  const task = await startTask(broker, agent.name, ["billing:ops"]);
  const credential = await fetchCredential(task);
  const session = await prepared.connectAs(credential.role, credential.password);
  try {
    await session.query("SET ROLE ops_admin");
    await session.query("CREATE ROLE break_persist LOGIN PASSWORD 'persist-pass-1'");
  } finally {
    await session.end();
  }
  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  assert.equal(await roleExists(prepared, credential.role), false);
  const survivor = await prepared.connectAs("break_persist", "persist-pass-1");
  await survivor.end();
  assert.fail("a task created the login role break_persist, which still logs in after the task ended");
});

test("template rejects a pg_read_server_files member", async () => {
  await prepared.superuser("CREATE ROLE file_loader NOLOGIN");
  await prepared.superuser("GRANT pg_read_server_files TO file_loader");
  await prepared.superuser(`GRANT file_loader TO ${adminRole} WITH ADMIN OPTION`);
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems/billing/templates", {
      name: "loader",
      member_of: ["file_loader"],
    }),
  );
  if (error !== undefined) return;

  const task = await startTask(broker, agent.name, ["billing:loader"]);
  const credential = await fetchCredential(task);
  const session = await prepared.connectAs(credential.role, credential.password);
  try {
    await session.query("CREATE TEMP TABLE loot (line text)");
    await session.query(`COPY loot FROM '${join(prepared.cluster.dataDir, "PG_VERSION")}'`);
    const rows = await session.query<{ line: string }>("SELECT line FROM loot");
    assert.fail(
      `a task role read a server file through a transitive membership: ${String(rows.rows[0]?.line)}`,
    );
  } finally {
    await session.end();
    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  }
});

test("cleanup survives a large object elsewhere", async () => {
  const task = await startTask(broker, agent.name, ["billing:reader"]);
  const credential = await fetchCredential(task);
  // CONNECT on every database goes to PUBLIC by default, and creating a large object needs no privilege.
  const session = await prepared.connectAs(credential.role, credential.password, "postgres");
  await session.query("SELECT lo_create(0)");
  await session.end();

  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);

  const { leases } = await broker.admin.call<{ leases: Lease[] }>("GET", `/v1/leases?task=${task.id}`);
  assert.equal(
    leases[0]?.state,
    "cleaned",
    `lease stays ${String(leases[0]?.state)}: ${String(leases[0]?.last_error)}`,
  );
  assert.equal(await roleExists(prepared, credential.role), false);
});

// Known limit: PostgreSQL lets a role set its own defaults, so the timeouts are a backstop only.
test(
  "task role cannot lift its backstop timeouts",
  {
    todo: "a role may ALTER ROLE CURRENT_USER SET its own timeouts; documented as advisory",
  },
  async () => {
    const task = await startTask(broker, agent.name, ["billing:reader"]);
    const credential = await fetchCredential(task);
    const session = await prepared.connectAs(credential.role, credential.password);
    let changed = true;
    try {
      await session.query("ALTER ROLE CURRENT_USER SET idle_session_timeout = 0");
      await session.query("ALTER ROLE CURRENT_USER SET statement_timeout = 0");
    } catch {
      changed = false;
    } finally {
      await session.end();
    }
    const [role] = await prepared.superuser<{ rolconfig: string[] }>(
      "SELECT rolconfig FROM pg_roles WHERE rolname = $1",
      [credential.role],
    );
    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
    assert.equal(changed, false, `the task role rewrote its own defaults: ${String(role?.rolconfig)}`);
  },
);

// Known limit: the successor needs CREATE on the schema for REASSIGN OWNED of a function.
test(
  "kept function does not block cleanup",
  {
    todo: "REASSIGN OWNED of a function needs CREATE on its schema for the successor; documented",
  },
  async () => {
    // The setup of the documentation: scratch_owner receives kept objects and has no privileges.
    await broker.admin.call("POST", "/v1/systems/billing/templates", {
      name: "scratch",
      grants: ["USAGE, CREATE ON SCHEMA scratch"],
      successor: "scratch_owner",
    });
    const task = await startTask(broker, agent.name, ["billing:scratch"]);
    const credential = await fetchCredential(task);
    const session = await prepared.connectAs(credential.role, credential.password);
    await session.query("CREATE FUNCTION scratch.answer() RETURNS integer LANGUAGE sql AS 'SELECT 42'");
    await session.end();

    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);

    const { leases } = await broker.admin.call<{ leases: Lease[] }>("GET", `/v1/leases?task=${task.id}`);
    assert.equal(
      leases[0]?.state,
      "cleaned",
      `lease stays ${String(leases[0]?.state)}: ${String(leases[0]?.last_error)}`,
    );
  },
);

// Uses the scratch template that the test above adds.
// Known limit: a kept SECURITY DEFINER function runs with the successor's privileges.
test(
  "kept objects do not run as the successor",
  {
    todo: "kept SECURITY DEFINER functions run as the successor; documented",
  },
  async () => {
    // REASSIGN OWNED of a function needs the successor to hold CREATE on the function's schema.
    await prepared.superuser("GRANT USAGE, CREATE ON SCHEMA scratch TO scratch_owner");

    // Task one keeps a table, which passes to scratch_owner at cleanup when task one's role is dropped.
    const first = await startTask(broker, agent.name, ["billing:scratch"]);
    const firstCredential = await fetchCredential(first);
    const firstSession = await prepared.connectAs(firstCredential.role, firstCredential.password);
    await firstSession.query("CREATE TABLE scratch.report (line text)");
    await firstSession.query("INSERT INTO scratch.report VALUES ('kept by task one')");
    await firstSession.end();
    await broker.admin.call("POST", `/v1/tasks/${first.id}/end`);

    // Task two plants a SECURITY DEFINER function, and REASSIGN OWNED makes scratch_owner its owner.
    const second = await startTask(broker, agent.name, ["billing:scratch"]);
    const secondCredential = await fetchCredential(second);
    const secondSession = await prepared.connectAs(secondCredential.role, secondCredential.password);
    await secondSession.query(
      `CREATE FUNCTION scratch.run(sql text) RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER
       AS $$ BEGIN RETURN QUERY EXECUTE sql; END $$`,
    );
    await secondSession.end();
    await broker.admin.call("POST", `/v1/tasks/${second.id}/end`);

    // Task three reads task one's kept table through the function, acting as scratch_owner.
    const third = await startTask(broker, agent.name, ["billing:scratch"]);
    const thirdCredential = await fetchCredential(third);
    const thirdSession = await prepared.connectAs(thirdCredential.role, thirdCredential.password);
    let leaked: string | undefined;
    try {
      const direct = await thirdSession.query("SELECT line FROM scratch.report").then(
        () => "allowed",
        (error: { code?: string }) => String(error.code),
      );
      assert.equal(direct, "42501", "task three reads the kept table directly");
      const rows = await thirdSession
        .query<{ run: string }>("SELECT scratch.run('SELECT line FROM scratch.report')")
        .catch((error: Error) => ({ rows: [{ run: `call failed: ${error.message}` }] }));
      leaked = rows.rows[0]?.run;
    } finally {
      await thirdSession.end();
      await broker.admin.call("POST", `/v1/tasks/${third.id}/end`);
    }
    const owners = await prepared.superuser(
      `SELECT 'table' AS kind, tableowner AS owner FROM pg_tables WHERE schemaname = 'scratch'
     UNION ALL SELECT 'function', pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'run'`,
    );
    assert.equal(
      leaked,
      undefined,
      `a task read another task's kept table as scratch_owner: "${String(leaked)}" ${JSON.stringify(owners)}`,
    );
  },
);
