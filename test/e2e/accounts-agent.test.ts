// A legacy job checks a shared account out with its own identity. It is registered as an agent, and
// its task lists SYSTEM:account.NAME, so its task token lets it check the account out and return it
// through the API. The server is a real PostgreSQL with password logins over TCP.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as oauth from "oauth4webapi";
import {
  checkInSharedAccount,
  checkOutSharedAccount,
  fetchSystemCredential,
} from "../../src/client/index.js";
import { auditEvents, registerAgent, startTask, type TestAgent } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { prepareCluster, sqlState, type PreparedCluster, registerBillingSystem } from "./systems-support.js";

let prepared: PreparedCluster;
let broker: TestBroker;
let job: TestAgent;
let other: TestAgent;

before(async () => {
  prepared = await prepareCluster();
  broker = await startTestBroker();
  await registerBillingSystem(broker.admin, prepared);
  await broker.admin.call("POST", "/v1/systems/billing/templates", {
    name: "reader",
    member_of: ["billing_reader"],
  });
  await broker.admin.call("POST", "/v1/accounts", {
    name: "etl",
    kind: "postgres",
    system: "billing",
    role: "legacy_etl",
  });
  job = await registerAgent(broker, "legacy-etl-job");
  other = await registerAgent(broker, "report-bot");
});

after(async () => {
  await broker?.close();
  await prepared?.cluster.stop();
});

function credentialsOf(agent: TestAgent) {
  return {
    issuer: broker.issuer,
    clientId: agent.clientId,
    privateKey: agent.privateKey,
    allowInsecureHttp: true,
  };
}

async function checkout(agent: TestAgent, taskId: string) {
  return checkOutSharedAccount(credentialsOf(agent), {
    taskId,
    system: "billing",
    account: "etl",
    dpopKeys: await oauth.generateKeyPair("ES256"),
    durationS: 300,
  });
}

async function checkin(agent: TestAgent, taskId: string) {
  return checkInSharedAccount(credentialsOf(agent), {
    taskId,
    system: "billing",
    account: "etl",
    dpopKeys: await oauth.generateKeyPair("ES256"),
  });
}

test("task naming the account checks it out", async () => {
  const task = await startTask(broker, job.name, ["billing:account.etl"]);
  const held = await checkout(job, task.id);
  assert.equal(held.role, "legacy_etl");
  const session = await prepared.connectAs("legacy_etl", held.password);
  await session.end();
  // A task that names only an account gets no role of its own.
  const { leases } = await broker.admin.call<{ leases: unknown[] }>("GET", `/v1/leases?task=${task.id}`);
  assert.deepEqual(leases, []);

  const checkedOut = (await auditEvents(broker.admin, "account.checked_out")).at(-1);
  assert.equal(checkedOut?.actor, job.clientId);
  assert.deepEqual((checkedOut?.data.holder as { task_id: string }).task_id, task.id);

  const returned = await checkin(job, task.id);
  assert.equal(returned.rotated, true);
  assert.equal(await sqlState(prepared.connectAs("legacy_etl", held.password)), "28P01");
});

test("second holder is refused while the first holds it", async () => {
  const first = await startTask(broker, job.name, ["billing:account.etl"]);
  const second = await startTask(broker, job.name, ["billing:account.etl"]);
  await checkout(job, first.id);
  await assert.rejects(checkout(job, second.id), /conflict/);
  // Only the holding task may return it.
  await assert.rejects(checkin(job, second.id), /access_denied/);
  await checkin(job, first.id);
});

test("task without the account is refused", async () => {
  const task = await startTask(broker, other.name, ["billing:reader"]);
  await assert.rejects(checkout(other, task.id), /access_denied/);
  // The same task still fetches its own role's credential.
  const credential = await fetchSystemCredential(credentialsOf(other), {
    taskId: task.id,
    system: "billing",
    dpopKeys: await oauth.generateKeyPair("ES256"),
  });
  assert.notEqual(credential.role, "legacy_etl");
});

test("another agent cannot use the job's task", async () => {
  const task = await startTask(broker, job.name, ["billing:account.etl"]);
  await assert.rejects(checkout(other, task.id));
});

test("ended task cannot check out", async () => {
  const task = await startTask(broker, job.name, ["billing:account.etl"]);
  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
  await assert.rejects(checkout(job, task.id));
});

test("template name cannot pose as an account", async () => {
  await assert.rejects(
    broker.admin.call("POST", "/v1/systems/billing/templates", {
      name: "account.etl",
      member_of: ["billing_reader"],
    }),
    /stand for shared accounts/,
  );
});
