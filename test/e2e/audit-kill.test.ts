// A `writ server` process killed with SIGKILL in the middle of a load of 1,000 gateway requests to a
// loopback upstream that records what it receives. The gateway forwards a request only after its
// `tool_call.allowed` audit event has committed, so after a restart every request the upstream saw
// must have its event, and the chain must verify.
//
// Needs `npm run build` first: the server and the CLI run dist/cli/main.js as a user would.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { EvidenceVerdict } from "../../src/audit/checkpoint-verify.js";
import type { AdminClient } from "../../src/cli/admin-client.js";
import { discover, registerAgent, requestTaskToken, startTask } from "../support/agent-client.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";
import {
  connectAdmin,
  initBroker,
  requireBuiltCli,
  runWritJson,
  startBrokerProcess,
  type BrokerInstallation,
  type WritProcess,
} from "../support/writ-process.js";

/** Requests in the load, how many are kept in flight, and how many the upstream receives before the kill. */
const gatewayRequests = 1000;
const concurrentCalls = 50;
const killAfterForwarded = 400;

const upstreamBearer = "upstream-bearer-audit-kill";

let root: string;
let installation: BrokerInstallation;
let upstream: RecordingUpstream;
let server: WritProcess | undefined;

before(async () => {
  requireBuiltCli();
  root = await mkdtemp(join(tmpdir(), "writ-audit-kill-"));
  installation = await initBroker(root);
  upstream = await startRecordingUpstream({
    bearer: upstreamBearer,
    basic: { user: "unused", password: "unused-password" },
    query: { name: "unused", value: "unused-value" },
  });
});

after(async () => {
  await server?.stop();
  await upstream?.close();
  await rm(root, { recursive: true, force: true });
});

/** Sends SIGKILL to the server and resolves once it has exited. */
async function kill(process: WritProcess): Promise<void> {
  if (process.child.exitCode !== null || process.child.signalCode !== null) return;
  const exited = new Promise((resolve) => process.child.once("exit", resolve));
  process.child.kill("SIGKILL");
  await exited;
}

/** Reads every audit event through the API, a page at a time. */
async function allAuditEvents(admin: AdminClient): Promise<AuditRecord[]> {
  const events: AuditRecord[] = [];
  for (;;) {
    const after = events.at(-1)?.seq ?? 0;
    const page = await admin.call<{ events: AuditRecord[] }>("GET", `/v1/audit?after=${after}&limit=1000`);
    events.push(...page.events);
    if (page.events.length < 1000) return events;
  }
}

test("killed server keeps forwarded calls", async (t) => {
  server = await startBrokerProcess(installation);
  const { issuer } = installation;
  const admin = await connectAdmin(installation);
  await admin.call("POST", "/v1/secrets/api-token", { value: upstreamBearer });
  await admin.call("POST", "/v1/tools", {
    name: "api",
    kind: "http",
    environment: "prod",
    actions: [{ name: "read", spec: "GET /repos/**" }],
    config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:api-token}"] },
  });
  const agent = await registerAgent({ issuer, admin }, "kill-bot");
  const task = await startTask({ issuer, admin }, agent.name, ["api:read"], 3600);
  const token = await requestTaskToken(await discover(issuer), agent, task.id);

  // Each request names its own path, so that the upstream's record and the audit events match one to
  // one. A worker stops at its first failed call, which the kill causes for all of them.
  const running = server;
  const outcomes: string[] = [];
  let next = 0;
  let killing: Promise<void> | undefined;
  const worker = async (): Promise<void> => {
    while (next < gatewayRequests) {
      const index = next++;
      const sentBeforeKill = killing === undefined;
      try {
        const response = await callTool(issuer, {
          target: `/tools/api/repos/load/${index}`,
          token: token.accessToken,
          proofKeys: token.dpopKeys,
        });
        outcomes.push(response.status === 200 ? "forwarded" : `status ${response.status}: ${response.text}`);
      } catch {
        outcomes.push(sentBeforeKill ? "interrupted" : "failed");
        return;
      }
      if (upstream.seen.length >= killAfterForwarded) killing ??= kill(running);
    }
  };
  await Promise.all(Array.from({ length: concurrentCalls }, worker));
  await killing;

  const interrupted = outcomes.filter((outcome) => outcome === "interrupted").length;
  t.diagnostic(
    `${upstream.seen.length} requests reached the upstream, ${outcomes.length} calls made, ${interrupted} in flight at the kill`,
  );
  assert.deepEqual(
    outcomes.filter((outcome) => outcome.startsWith("status")),
    [],
  );
  assert.ok(killing !== undefined, "the load finished before the server was killed");
  assert.ok(interrupted > 0, "every call finished before the kill, so it did not interrupt any");

  server = await startBrokerProcess(installation);
  const events = await allAuditEvents(await connectAdmin(installation));
  const audited = new Set(
    events
      .filter((event) => event.kind === "tool_call.allowed" && event.task_id === task.id)
      .map((event) => (event.data as { path?: unknown }).path),
  );
  const seenPaths = upstream.seen.map((request) => request.url);
  assert.ok(seenPaths.length >= killAfterForwarded, `only ${seenPaths.length} requests reached the upstream`);
  assert.deepEqual(
    seenPaths.filter((path) => !audited.has(path)),
    [],
  );

  const verdict = await runWritJson<EvidenceVerdict>([
    "--data",
    installation.dataDir,
    "--admin-key",
    installation.adminKeyFile,
    "audit",
    "verify",
  ]);
  assert.equal(verdict.ok, true, `audit verify returned ${JSON.stringify(verdict)}`);
  assert.ok(verdict.events >= events.length, `audit verify saw ${verdict.events} of ${events.length} events`);
});
