// Per-task PostgreSQL roles against a real server with password authentication over TCP. The tests
// cover the management role's privilege check, template checks, what a task role can and cannot do,
// how its credential reaches the agent, and that it disappears with its sessions when the task ends.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as oauth from "oauth4webapi";
import { fetchSystemCredential } from "../../src/client/index.js";
import type { Lease } from "../../src/leases/leases.js";
import type { Task } from "../../src/tasks/tasks.js";
import { ApiError } from "../../src/cli/admin-client.js";
import {
  auditEvents,
  discover,
  loopbackHttp,
  registerAgent,
  registerTool,
  requestTaskToken,
  startTask,
  type TestAgent,
} from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  adminRole,
  prepareCluster,
  roleExists,
  sqlState,
  weakRole,
  type PreparedCluster,
} from "./systems-support.js";

let prepared: PreparedCluster;
let broker: TestBroker;
let agent: TestAgent;

before(async () => {
  prepared = await prepareCluster();
  broker = await startTestBroker();
  await broker.admin.call("POST", "/v1/secrets/pg-admin", { value: prepared.adminPassword });
  await broker.admin.call("POST", "/v1/secrets/pg-weak", { value: prepared.weakPassword });
  await broker.admin.call("POST", "/v1/systems", {
    name: "billing",
    kind: "postgres",
    dsn: prepared.dsn(adminRole),
    password_secret: "pg-admin",
    environment: "prod",
  });
  await broker.admin.call("POST", "/v1/systems/billing/templates", {
    name: "reader",
    member_of: ["billing_reader"],
  });
  await broker.admin.call("POST", "/v1/systems/billing/templates", {
    name: "granted",
    grants: ["USAGE ON SCHEMA billing", "SELECT ON ALL TABLES IN SCHEMA billing"],
  });
  agent = await registerAgent(broker, "billing-bot");
});

after(async () => {
  await broker?.close();
  await prepared?.cluster.stop();
});

/** Returns the API error code of a failed admin call. */
async function apiErrorOf(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  assert.fail("expected the API call to fail");
}

/** Calls `url` with a DPoP-bound token and returns the HTTP status, including refusals. */
async function statusOf(accessToken: string, dpop: oauth.DPoPHandle, url: string): Promise<number> {
  try {
    const response = await oauth.protectedResourceRequest(
      accessToken,
      "GET",
      new URL(url),
      new Headers(),
      null,
      {
        DPoP: dpop,
        ...loopbackHttp,
      },
    );
    return response.status;
  } catch (error) {
    if (error instanceof oauth.WWWAuthenticateChallengeError) return error.status;
    throw error;
  }
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

test("system add refuses a role without pg_signal_backend", async () => {
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems", {
      name: "weak",
      kind: "postgres",
      dsn: prepared.dsn(weakRole),
      password_secret: "pg-weak",
      environment: "prod",
    }),
  );
  assert.equal(error.code, "invalid_request");
  assert.match(error.description, /missing: membership in pg_signal_backend/);
  assert.doesNotMatch(error.description, /CREATEROLE/);
});

test("system add refuses a superuser", async () => {
  await broker.admin.call("POST", "/v1/secrets/pg-super", { value: prepared.cluster.password });
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems", {
      name: "super",
      kind: "postgres",
      dsn: prepared.dsn("postgres"),
      password_secret: "pg-super",
      environment: "prod",
    }),
  );
  assert.equal(error.code, "invalid_request");
  assert.match(error.description, /SUPERUSER/);
});

test("system add refuses a password in the DSN", async () => {
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems", {
      name: "leaky",
      kind: "postgres",
      dsn: `postgres://${adminRole}:secret@127.0.0.1:${prepared.cluster.port}/app`,
      password_secret: "pg-admin",
      environment: "prod",
    }),
  );
  assert.equal(error.code, "invalid_request");
  assert.match(error.description, /must not contain a password/);
});

test("template add names a missing ADMIN OPTION", async () => {
  await prepared.superuser("CREATE ROLE payroll_reader NOLOGIN");
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems/billing/templates", {
      name: "payroll",
      member_of: ["payroll_reader"],
    }),
  );
  assert.equal(error.code, "invalid_request");
  assert.match(error.description, /ADMIN OPTION on role "payroll_reader"/);
});

test("template add names a missing grant option", async () => {
  const error = await apiErrorOf(
    broker.admin.call("POST", "/v1/systems/billing/templates", {
      name: "hr",
      grants: ["SELECT ON ALL TABLES IN SCHEMA hr"],
    }),
  );
  assert.equal(error.code, "invalid_request");
  assert.match(error.description, /the grant option for "SELECT ON ALL TABLES IN SCHEMA hr"/);
});

test("template add rejects SQL in a grant", async () => {
  for (const grant of [
    "SELECT ON billing.invoices TO PUBLIC",
    "SELECT ON billing.invoices; DROP ROLE writ_admin",
    "SELECT ON billing.invoices -- comment",
    "SELECT ON 'x'",
  ]) {
    const error = await apiErrorOf(
      broker.admin.call("POST", "/v1/systems/billing/templates", { name: "bad", grants: [grant] }),
    );
    assert.equal(error.code, "invalid_request", grant);
  }
  assert.ok(await roleExists(prepared, adminRole));
});

test("task role reads its template's tables only", async () => {
  const task = await startTask(broker, agent.name, ["billing:reader"]);
  const credential = await fetchCredential(task);
  assert.equal(credential.role, `writ_${task.id}`);
  assert.equal(credential.url, `postgres://writ_${task.id}@127.0.0.1:${prepared.cluster.port}/app`);

  const session = await prepared.connectAs(credential.role, credential.password);
  try {
    const rows = await session.query<{ amount: number }>("SELECT amount FROM billing.invoices ORDER BY id");
    assert.deepEqual(
      rows.rows.map((row) => row.amount),
      [100, 250],
    );
    assert.equal(await sqlState(session.query("SELECT * FROM hr.salaries")), "42501");
    assert.equal(await sqlState(session.query("CREATE TABLE billing.extra (id integer)")), "42501");
    assert.equal(await sqlState(session.query("CREATE TABLE public.extra (id integer)")), "42501");
    assert.equal(await sqlState(session.query("CREATE SCHEMA mine")), "42501");
    assert.equal(await sqlState(session.query("INSERT INTO billing.invoices VALUES (3, 1)")), "42501");
  } finally {
    await session.end();
  }
  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
});

test("task role carries deadline, limits and a SCRAM verifier", async () => {
  const task = await startTask(broker, agent.name, ["billing:granted"], 600);
  const credential = await fetchCredential(task);
  const [role] = await prepared.superuser<{
    rolvaliduntil: Date;
    rolconnlimit: number;
    rolpassword: string;
    rolconfig: string[];
    rolsuper: boolean;
    rolcreaterole: boolean;
  }>(
    `SELECT a.rolvaliduntil, a.rolconnlimit, a.rolpassword, r.rolconfig, a.rolsuper, a.rolcreaterole
       FROM pg_authid a JOIN pg_roles r ON r.oid = a.oid WHERE a.rolname = $1`,
    [credential.role],
  );
  assert.ok(role !== undefined);
  assert.equal(role.rolvaliduntil.getTime(), task.deadline_s * 1000);
  assert.equal(credential.valid_until, task.deadline_s * 1000);
  assert.equal(role.rolconnlimit, 5);
  assert.match(role.rolpassword, /^SCRAM-SHA-256\$4096:/);
  assert.equal(role.rolsuper, false);
  assert.equal(role.rolcreaterole, false);
  assert.ok(role.rolconfig.includes("statement_timeout=60000ms"), role.rolconfig.join(","));
  assert.ok(role.rolconfig.includes("idle_session_timeout=600000ms"), role.rolconfig.join(","));

  const session = await prepared.connectAs(credential.role, credential.password);
  const rows = await session.query("SELECT count(*)::int AS n FROM billing.invoices");
  assert.equal(rows.rows[0].n, 2);
  await session.end();
  assert.equal(await sqlState(prepared.connectAs(credential.role, "wrong-password")), "28P01");

  const log = await prepared.serverLog();
  assert.ok(log.includes(`CREATE ROLE "${credential.role}"`), "statements are logged");
  assert.ok(!log.includes(credential.password), "the password reached the server log");
  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
});

test("task end drops the role and its sessions", async () => {
  const task = await startTask(broker, agent.name, ["billing:reader"]);
  const credential = await fetchCredential(task);
  const session = await prepared.connectAs(credential.role, credential.password);
  const sessionErrors: string[] = [];
  session.on("error", (error: Error & { code?: string }) => sessionErrors.push(String(error.code)));
  await session.query("SELECT 1");

  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);

  assert.equal(await roleExists(prepared, credential.role), false);
  const sessions = await prepared.superuser("SELECT pid FROM pg_stat_activity WHERE usename = $1", [
    credential.role,
  ]);
  assert.equal(sessions.length, 0);
  await assert.rejects(session.query("SELECT 1"));
  assert.equal(sessionErrors[0], "57P01", "the server ends the session as an administrator command");
  await session.end().catch(() => {});
  assert.equal(await sqlState(prepared.connectAs(credential.role, credential.password)), "28P01");

  const { leases } = await broker.admin.call<{ leases: Lease[] }>("GET", `/v1/leases?task=${task.id}`);
  assert.equal(leases.length, 1);
  assert.equal(leases[0]?.state, "cleaned");
  const cleaned = await auditEvents(broker.admin, "lease.cleaned");
  assert.ok(cleaned.some((event) => event.task_id === task.id && event.data.role === credential.role));
});

test("revoking a task drops its role", async () => {
  const task = await startTask(broker, agent.name, ["billing:reader"]);
  assert.ok(await roleExists(prepared, `writ_${task.id}`));
  await broker.admin.call("POST", "/v1/revoke", { task: task.id });
  assert.equal(await roleExists(prepared, `writ_${task.id}`), false);
});

test("credential fetch is audited and not cached", async () => {
  const task = await startTask(broker, agent.name, ["billing:reader"]);
  const tool = await registerTool(broker, "tickets");
  const bothTask = await startTask(broker, agent.name, ["billing:reader", "tickets:read"]);
  const as = await discover(broker.issuer);
  const resource = `${broker.issuer}/v1/systems/billing`;
  const token = await requestTaskToken(as, agent, task.id, resource);
  const response = await oauth.protectedResourceRequest(
    token.accessToken,
    "GET",
    new URL(`${resource}/credentials`),
    new Headers(),
    null,
    { DPoP: token.dpop, ...loopbackHttp },
  );
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("cache-control"), "no-store");
  const body = (await response.json()) as { lease_id: string; role: string };

  const fetched = await auditEvents(broker.admin, "credential.fetched");
  const event = fetched.find((entry) => entry.task_id === task.id);
  assert.ok(event !== undefined);
  assert.equal(event.actor, agent.clientId);
  assert.equal(event.data.system, "billing");
  assert.equal(event.data.role, body.role);
  assert.equal(event.data.lease_id, body.lease_id);
  assert.equal(event.data.decision, "allow");
  assert.deepEqual(event.data.policies, ["writ.permit_task_actions"]);
  assert.ok(!JSON.stringify(fetched).includes("password"));

  // A token of the same task for another tool is refused.
  const other = await requestTaskToken(as, agent, bothTask.id, tool.resource_uri);
  assert.equal(await statusOf(other.accessToken, other.dpop, `${resource}/credentials`), 401);

  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  await broker.admin.call("POST", `/v1/tasks/${bothTask.id}/end`);
  assert.equal(await statusOf(token.accessToken, token.dpop, `${resource}/credentials`), 401);
});

test("quotes and SQL in names and intent stay data", async () => {
  const hostile = `x"; DROP ROLE ${adminRole}; --`;
  await prepared.superuser(`CREATE ROLE "${hostile.replaceAll('"', '""')}" NOLOGIN`);
  await prepared.superuser(`GRANT "${hostile.replaceAll('"', '""')}" TO ${adminRole} WITH ADMIN OPTION`);
  await broker.admin.call("POST", "/v1/systems/billing/templates", { name: "hostile", member_of: [hostile] });

  const task = await broker.admin.call<Task>("POST", "/v1/tasks", {
    agent: agent.name,
    actions: ["billing:hostile"],
    intent: `O'Brien's report'); DROP ROLE ${adminRole}; -- ${hostile}`,
    environment: "prod",
    ttl_seconds: 600,
  });
  const members = await prepared.superuser<{ rolname: string }>(
    `SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
       JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1`,
    [`writ_${task.id}`],
  );
  assert.deepEqual(
    members.map((row) => row.rolname),
    [hostile],
  );
  assert.ok(await roleExists(prepared, adminRole));
  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  assert.equal(await roleExists(prepared, `writ_${task.id}`), false);
  assert.ok(await roleExists(prepared, adminRole));
});

test("cleanup keeps or drops objects per template", async () => {
  for (const [name, successor] of [
    ["scratch-keep", "scratch_owner"],
    ["scratch-drop", undefined],
  ] as const) {
    await broker.admin.call("POST", "/v1/systems/billing/templates", {
      name,
      grants: ["USAGE, CREATE ON SCHEMA scratch"],
      ...(successor === undefined ? {} : { successor }),
    });
    const task = await startTask(broker, agent.name, [`billing:${name}`]);
    const credential = await fetchCredential(task);
    const session = await prepared.connectAs(credential.role, credential.password);
    const table = name.replace("-", "_");
    await session.query(`CREATE TABLE scratch.${table} (id integer)`);
    await session.end();

    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);

    assert.equal(await roleExists(prepared, credential.role), false);
    const owners = await prepared.superuser<{ tableowner: string }>(
      "SELECT tableowner FROM pg_tables WHERE schemaname = 'scratch' AND tablename = $1",
      [table],
    );
    assert.deepEqual(
      owners.map((row) => row.tableowner),
      successor === undefined ? [] : [successor],
      name,
    );
  }
});
