// A task ends while its PostgreSQL server is stopped: the cleanup stays pending, is retried with
// backoff, raises an alert after repeated failures, shows in `writ leases list`, and finishes once
// the server is back. The broker's clock is a ManualClock, so the backoff is crossed by moving it.
//
// Needs `npm run build` first: `writ leases list` runs dist/cli/main.js as an operator would.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import { decodeJwt } from "jose";
import { ApiError } from "../../src/cli/admin-client.js";
import { ManualClock } from "../../src/clock.js";
import { listLeases, type Lease } from "../../src/leases/leases.js";
import { cleanupAlertAfterAttempts } from "../../src/leases/worker.js";
import type { Task } from "../../src/tasks/tasks.js";
import { registerAgent, startTask } from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { requireBuiltCli, runWritJson } from "../support/writ-process.js";
import {
  prepareCluster,
  roleExists,
  type PreparedCluster,
  registerBillingSystem,
} from "./systems-support.js";

/** Interval between two looks at the lease while the broker's timer retries, in milliseconds. */
const pollMs = 50;

let prepared: PreparedCluster;
let broker: TestBroker;
let clock: ManualClock;
let alertServer: Server;
const alerts: string[] = [];

before(async () => {
  requireBuiltCli();
  alertServer = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
    request.on("end", () => {
      alerts.push(JSON.stringify(decodeJwt(body)));
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => alertServer.listen(0, "127.0.0.1", resolve));
  const address = alertServer.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;

  prepared = await prepareCluster();
  clock = new ManualClock();
  broker = await startTestBroker({ clock, config: { alert_webhooks: [`http://127.0.0.1:${port}/alerts`] } });
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
  await new Promise((resolve) => alertServer?.close(resolve));
});

/**
 * Moves the broker's clock to the real time. The CLI and the admin client sign their assertions with
 * the real time, so the broker's clock must not lag behind it when they call.
 */
function catchUpClock(): void {
  clock.advanceSeconds(Math.max(0, Date.now() - clock.nowMs()) / 1000);
}

/** Reads the task's one lease through `writ leases list`, as an operator would. */
async function leaseOf(taskId: string): Promise<Lease> {
  catchUpClock();
  const { leases } = await runWritJson<{ leases: Lease[] }>([
    "--data",
    broker.dataDir,
    "--admin-key",
    broker.adminKeyFile,
    "leases",
    "list",
    "--task",
    taskId,
  ]);
  assert.equal(leases.length, 1);
  return leases[0] as Lease;
}

/**
 * Waits until the broker's timer has moved the lease past `predicate`. It reads the store directly,
 * because the clock has moved ahead of the real time that API clients sign with.
 */
async function waitForLease(taskId: string, predicate: (lease: Lease) => boolean): Promise<Lease> {
  for (;;) {
    const [lease] = await listLeases(broker.server.broker.context, { task_id: taskId });
    if (lease !== undefined && predicate(lease)) return lease;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

test("cleanup missed during an outage finishes later", async () => {
  catchUpClock();
  const task = await startTask(broker, "billing-bot", ["billing:reader"]);
  const role = `writ_${task.id}`;
  assert.ok(await roleExists(prepared, role));

  await prepared.cluster.stopServer();
  await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);

  // A task cannot start while its system is down; it is ended at once rather than left without a role.
  catchUpClock();
  const startError = await startTask(broker, "billing-bot", ["billing:reader"]).then(
    () => undefined,
    (error: unknown) => error as ApiError,
  );
  assert.ok(startError instanceof ApiError);
  assert.equal(startError.code, "temporarily_unavailable");
  const { tasks } = await broker.admin.call<{ tasks: Task[] }>("GET", "/v1/tasks?status=revoked");
  assert.equal(tasks.length, 1);
  assert.match(tasks[0]?.end_reason ?? "", /credential creation failed on system billing/);

  const pending = await leaseOf(task.id);
  assert.equal(pending.state, "cleanup_pending");
  assert.equal(pending.attempts, 1);
  assert.match(pending.last_error ?? "", /ECONNREFUSED|connect/);

  // Each failure doubles the delay; moving the clock past it lets the timer try again.
  for (let attempts = 2; attempts <= cleanupAlertAfterAttempts; attempts++) {
    clock.advanceSeconds(60);
    await waitForLease(task.id, (lease) => lease.attempts >= attempts);
  }
  // The lease of the task that never started fails alongside, and its alert may come first.
  const failingAlert = (entry: string): boolean =>
    entry.includes("lease.cleanup_failing") && entry.includes(task.id);
  while (!alerts.some(failingAlert)) {
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  assert.equal(alerts.filter(failingAlert).length, 1);
  const failures = await broker.server.broker.context.store.db
    .selectFrom("audit_events")
    .select("data")
    .where("kind", "=", "lease.cleanup_failed")
    .where("task_id", "=", task.id)
    .orderBy("seq")
    .execute();
  assert.deepEqual(
    failures.map((event) => (JSON.parse(event.data) as { attempt: number }).attempt),
    [1, 2, 3, 4, 5],
  );

  await prepared.cluster.startServer();
  clock.advanceSeconds(600);
  const cleaned = await waitForLease(task.id, (lease) => lease.state === "cleaned");
  assert.equal(cleaned.last_error, null);
  assert.equal(await roleExists(prepared, role), false);
  const neverStarted = tasks[0] as Task;
  await waitForLease(neverStarted.id, (lease) => lease.state === "cleaned");
  assert.equal(await roleExists(prepared, `writ_${neverStarted.id}`), false);
});
