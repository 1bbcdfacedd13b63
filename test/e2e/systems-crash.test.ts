// The broker is killed with SIGKILL while a task has a role. PostgreSQL itself refuses new
// password logins with the role after the task's deadline (VALID UNTIL), even with no broker
// running, although it keeps sessions that are already open. The next broker start expires the task
// and drops the role, ending those sessions.
//
// Needs `npm run build` first: the broker runs as `writ server` from dist/cli/main.js.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as oauth from "oauth4webapi";
import type { AdminClient } from "../../src/cli/admin-client.js";
import { fetchSystemCredential } from "../../src/client/index.js";
import type { Lease } from "../../src/leases/leases.js";
import { registerAgent, startTask } from "../support/agent-client.js";
import {
  cliPath,
  connectAdmin,
  initBroker,
  requireBuiltCli,
  runWritJson,
  startBrokerProcess,
  type BrokerInstallation,
  type WritProcess,
} from "../support/writ-process.js";
import {
  adminRole,
  prepareCluster,
  roleExists,
  sqlState,
  weakRole,
  type PreparedCluster,
} from "./systems-support.js";

const execFileAsync = promisify(execFile);

/** The task's time to live: short, because PostgreSQL's own clock decides VALID UNTIL. */
const taskTtlSeconds = 5;
/** Interval between two looks at the role while the restarted broker cleans up, in milliseconds. */
const pollMs = 50;

let root: string;
let prepared: PreparedCluster;
let installation: BrokerInstallation;
let server: WritProcess | undefined;
let admin: AdminClient;

before(async () => {
  requireBuiltCli();
  root = await mkdtemp(join(tmpdir(), "writ-systems-crash-"));
  prepared = await prepareCluster();
  installation = await initBroker(root);
  server = await startBrokerProcess(installation);
  admin = await connectAdmin(installation);
  await admin.call("POST", "/v1/secrets/pg-admin", { value: prepared.adminPassword });
  await admin.call("POST", "/v1/systems", {
    name: "billing",
    kind: "postgres",
    dsn: prepared.dsn(adminRole),
    password_secret: "pg-admin",
    environment: "prod",
  });
  await admin.call("POST", "/v1/systems/billing/templates", {
    name: "reader",
    member_of: ["billing_reader"],
  });
});

after(async () => {
  await server?.stop();
  await prepared?.cluster.stop();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

test("writ system add names the missing privilege", async () => {
  await admin.call("POST", "/v1/secrets/pg-weak", { value: prepared.weakPassword });
  const refused = await execFileAsync(process.execPath, [
    cliPath,
    "--url",
    installation.issuer,
    "--admin-key",
    installation.adminKeyFile,
    "system",
    "add",
    "weak",
    "--kind",
    "postgres",
    "--dsn",
    prepared.dsn(weakRole),
    "--password-secret",
    "pg-weak",
  ]).then(
    () => assert.fail("writ system add accepted a role without pg_signal_backend"),
    (error: unknown) => error as { code: number; stderr: string },
  );
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /management role "writ_weak" on system "weak" is missing: membership in pg_signal_backend/,
  );
});

test("writ task creds returns the task's credential", async () => {
  const broker = { issuer: installation.issuer, admin };
  const agent = await registerAgent(broker, "report-bot");
  const task = await startTask(broker, agent.name, ["billing:reader"]);
  const credential = await fetchSystemCredential(
    {
      issuer: installation.issuer,
      clientId: agent.clientId,
      privateKey: agent.privateKey,
      allowInsecureHttp: true,
    },
    { taskId: task.id, system: "billing", dpopKeys: await oauth.generateKeyPair("ES256") },
  );

  // Run with the agent's own key file, as the agent's process would.
  const agentKeyFile = join(root, "agent-key.json");
  await writeFile(agentKeyFile, JSON.stringify({ ...agent.key.privateJwk, client_id: agent.clientId }), {
    mode: 0o600,
  });
  const viaCli = await runWritJson<{ role: string; password: string; url: string }>([
    "--url",
    installation.issuer,
    "task",
    "creds",
    task.id,
    "--system",
    "billing",
    "--agent-key",
    agentKeyFile,
  ]);
  assert.equal(viaCli.role, credential.role);
  assert.equal(viaCli.password, credential.password);
  assert.equal(viaCli.url, credential.url);

  await admin.call("POST", `/v1/tasks/${task.id}/end`);
});

test("killed broker finishes cleanup on restart", async () => {
  const broker = { issuer: installation.issuer, admin };
  const agent = await registerAgent(broker, "billing-bot");
  const task = await startTask(broker, agent.name, ["billing:reader"], taskTtlSeconds);
  const credential = await fetchSystemCredential(
    {
      issuer: installation.issuer,
      clientId: agent.clientId,
      privateKey: agent.privateKey,
      allowInsecureHttp: true,
    },
    { taskId: task.id, system: "billing", dpopKeys: await oauth.generateKeyPair("ES256") },
  );
  const session = await prepared.connectAs(credential.role, credential.password);
  await session.query("SELECT 1");

  const running = server as WritProcess;
  const exited = new Promise((resolve) => running.child.once("exit", resolve));
  running.child.kill("SIGKILL");
  await exited;
  server = undefined;

  // A real wait: the deadline is PostgreSQL's to enforce, on its own clock.
  const pastDeadlineMs = task.deadline_s * 1000 + 1000 - Date.now();
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, pastDeadlineMs)));

  assert.equal(await sqlState(prepared.connectAs(credential.role, credential.password)), "28P01");
  const stillOpen = await session.query<{ one: number }>("SELECT 1 AS one");
  assert.equal(stillOpen.rows[0]?.one, 1, "PostgreSQL keeps sessions opened before VALID UNTIL");
  assert.ok(
    await roleExists(prepared, credential.role),
    "nothing dropped the role while the broker was down",
  );

  server = await startBrokerProcess(installation);
  while (await roleExists(prepared, credential.role)) {
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  await assert.rejects(session.query("SELECT 1"));
  await session.end().catch(() => {});

  const restartedAdmin = await connectAdmin(installation);
  const { leases } = await restartedAdmin.call<{ leases: Lease[] }>("GET", `/v1/leases?task=${task.id}`);
  assert.equal(leases[0]?.state, "cleaned");
});
