// The evidence a running broker leaves. The cases check the fields of a gateway decision event, the
// audit JWKS, and signed checkpoints in the store and in every kind of sink: a file, syslog over UDP
// and over a unix stream socket, and a webhook. Then the checkpoint at shutdown, and
// `writ audit verify` on the data directory and on export files.
//
// Needs `npm run build` first: the CLI cases run dist/cli/main.js.

import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { execFile } from "node:child_process";
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import type { AddressInfo } from "node:net";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { calculateJwkThumbprint, decodeProtectedHeader, exportJWK, type JSONWebKeySet } from "jose";
import type * as oauth from "oauth4webapi";
import { auditJwks, loadAuditKey } from "../../src/audit/audit-key.js";
import type { AuditRecord } from "../../src/audit/chain.js";
import { checkpointType, verifyCheckpoint, type Checkpoint } from "../../src/audit/checkpoint.js";
import type { EvidenceVerdict } from "../../src/audit/checkpoint-verify.js";
import { readStoredCheckpoints } from "../../src/audit/checkpointer.js";
import { formatExportEvent, formatExportHeader, readExportFile } from "../../src/audit/export-file.js";
import { readAuditEvents } from "../../src/audit/read.js";
import { readCheckpointFile } from "../../src/audit/sinks/file.js";
import { parseSyslogTarget, syslogSink } from "../../src/audit/sinks/syslog.js";
import { Store } from "../../src/store/store.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  discover,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
} from "../support/agent-client.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";
import { cliPath, requireBuiltCli } from "../support/writ-process.js";

const execFileAsync = promisify(execFile);
const upstreamBearer = "upstream-bearer-evidence";

/** Runs `writ --json ARGS` and returns its exit code and parsed standard output. */
async function writJson<T>(...args: string[]): Promise<{ code: number; output: T }> {
  try {
    const { stdout } = await execFileAsync(process.execPath, [cliPath, "--json", ...args]);
    return { code: 0, output: JSON.parse(stdout) as T };
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string };
    if (typeof failed.code !== "number") throw error;
    return { code: failed.code, output: JSON.parse(failed.stdout ?? "") as T };
  }
}

/** Starts a UDP syslog receiver on loopback that keeps each datagram. */
async function startUdpReceiver(): Promise<{ port: number; messages: string[]; close(): void }> {
  const socket = createSocket("udp4");
  const messages: string[] = [];
  socket.on("message", (message) => messages.push(message.toString("utf8")));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return { port: socket.address().port, messages, close: () => socket.close() };
}

/** Starts a loopback HTTP receiver that keeps each request's content type and body. */
async function startWebhookReceiver(): Promise<{
  url: string;
  posts: { type: string | undefined; body: string }[];
  close(): Promise<void>;
}> {
  const posts: { type: string | undefined; body: string }[] = [];
  const server = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      posts.push({ type: request.headers["content-type"], body: Buffer.concat(chunks).toString("utf8") });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/checkpoints`,
    posts,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe("audit evidence", () => {
  let workDir: string;
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let udp: Awaited<ReturnType<typeof startUdpReceiver>>;
  let webhook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let checkpointFile: string;
  let as: oauth.AuthorizationServer;
  let token: AgentToken;
  let taskId: string;
  let agentId: string;
  let jwks: JSONWebKeySet;

  before(async () => {
    requireBuiltCli();
    workDir = await mkdtemp(join(tmpdir(), "writ-evidence-"));
    checkpointFile = join(workDir, "checkpoints.jsonl");
    upstream = await startRecordingUpstream({
      bearer: upstreamBearer,
      basic: { user: "unused", password: "unused-password" },
      query: { name: "unused", value: "unused-value" },
    });
    udp = await startUdpReceiver();
    webhook = await startWebhookReceiver();
    broker = await startTestBroker({
      config: {
        audit_checkpoint_file: checkpointFile,
        audit_checkpoint_syslog: `udp://127.0.0.1:${udp.port}`,
        audit_checkpoint_webhooks: [webhook.url],
      },
    });
    as = await discover(broker.issuer);
    await broker.admin.call("POST", "/v1/secrets/api-token", { value: upstreamBearer });
    await broker.admin.call("POST", "/v1/tools", {
      name: "api",
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /repos/**" }],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:api-token}"] },
    });
    const agent = await registerAgent(broker, "evidence-bot");
    agentId = agent.clientId;
    taskId = (await startTask(broker, agent.name, ["api:read"])).id;
    token = await requestTaskToken(as, agent, taskId);
    jwks = (await (await fetch(`${broker.issuer}/v1/audit/jwks`)).json()) as JSONWebKeySet;
  });

  after(async () => {
    await broker?.close();
    await upstream?.close();
    udp?.close();
    await webhook?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  test("decision event has every field", async () => {
    const response = await callTool(broker.issuer, {
      target: "/tools/api/repos/writ/issues/./7",
      token: token.accessToken,
      proofKeys: token.dpopKeys,
    });
    assert.equal(response.status, 200, response.text);
    const { events } = await broker.admin.call<{ events: AuditRecord[] }>(
      "GET",
      `/v1/audit?task=${encodeURIComponent(taskId)}`,
    );
    const event = events.find((candidate) => candidate.kind === "tool_call.allowed");
    assert.ok(event !== undefined, "no tool_call.allowed event");
    assert.equal(event.actor, agentId);
    assert.equal(event.task_id, taskId);
    assert.equal(typeof event.jti, "string");
    assert.equal(event.chain_version, 1);
    assert.match(event.prev_hash, /^[0-9a-f]{64}$/);
    const data = event.data;
    assert.equal(
      data.initiator,
      (await broker.admin.call<{ initiator: string }>("GET", `/v1/tasks/${taskId}`)).initiator,
    );
    assert.equal(data.sub, agentId);
    assert.deepEqual(data.actors, []);
    assert.equal(data.tool, "api");
    assert.equal(data.action, "read");
    assert.equal(data.path, "/repos/writ/issues/7");
    assert.equal(data.decision, "allow");
    assert.ok(
      Array.isArray(data.policies) && data.policies.length > 0,
      `policies: ${JSON.stringify(data.policies)}`,
    );
    assert.equal(typeof data.risk_score, "number");
    assert.ok("breakglass_id" in data, "breakglass_id missing");
    assert.equal(data.jkt, await calculateJwkThumbprint(await exportJWK(token.dpopKeys.publicKey)));
  });

  test("audit jwks is public and matches the CLI", async () => {
    assert.equal(jwks.keys.length, 1);
    const [key] = jwks.keys;
    assert.equal(key?.d, undefined);
    assert.match(String(key?.kid), /^audit-/);
    const printed = await writJson<JSONWebKeySet>("--data", broker.dataDir, "audit", "jwks");
    assert.equal(printed.code, 0);
    assert.deepEqual(printed.output, jwks);
    const remote = await writJson<JSONWebKeySet>("--url", broker.issuer, "audit", "jwks");
    assert.deepEqual(remote.output, jwks);
  });

  test("checkpoint is signed and stored", async () => {
    const checkpoint = await broker.server.broker.context.checkpointer.checkpoint();
    assert.ok(checkpoint !== undefined, "no checkpoint was signed");
    assert.equal(decodeProtectedHeader(checkpoint.jws).typ, checkpointType);
    const signed = await verifyCheckpoint(checkpoint, jwks);
    const head = await broker.server.broker.context.store.db
      .selectFrom("audit_head")
      .selectAll()
      .executeTakeFirstOrThrow();
    assert.deepEqual({ seq: signed.seq, hash: signed.hash }, { seq: head.seq, hash: head.hash });
    const stored = await readStoredCheckpoints(broker.server.broker.context.store);
    assert.deepEqual(stored.at(-1), checkpoint);
  });

  test("unchanged head is not signed again", async () => {
    await broker.server.broker.context.queue.drain();
    await broker.server.broker.context.checkpointer.checkpoint();
    assert.equal(await broker.server.broker.context.checkpointer.checkpoint(), undefined);
  });

  test("sinks receive the checkpoint", async () => {
    const stored = await readStoredCheckpoints(broker.server.broker.context.store);
    const latest = stored.at(-1) as Checkpoint;
    assert.deepEqual((await readCheckpointFile(checkpointFile)).at(-1), latest);
    assert.ok(
      webhook.posts.some((post) => post.type === "application/jwt" && post.body === latest.jws),
      "the webhook did not receive the checkpoint's JWS",
    );
    // UDP gives no receipt, so the datagram may arrive after the send resolved; wait for it.
    for (let attempt = 0; attempt < 100 && !udp.messages.some((m) => m.includes(latest.jws)); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const message = udp.messages.find((candidate) => candidate.includes(latest.jws));
    assert.ok(message !== undefined, "the syslog receiver did not receive the checkpoint");
    assert.match(message, /^<110>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ writ \d+ checkpoint - \{/);
    const document = JSON.parse(message.slice(message.indexOf("{"))) as Checkpoint & { type: string };
    assert.equal(document.type, "writ-checkpoint");
    assert.equal(document.seq, latest.seq);
  });

  test("unix syslog sink sends an octet-counted frame", async () => {
    const path = join(workDir, "syslog.sock");
    const frames: Buffer[] = [];
    const server = createNetServer((socket) => socket.on("data", (chunk: Buffer) => frames.push(chunk)));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const sink = syslogSink(parseSyslogTarget(`unix:${path}`));
    const latest = (await readStoredCheckpoints(broker.server.broker.context.store)).at(-1) as Checkpoint;
    await sink.write(latest);
    await sink.close();
    for (let attempt = 0; attempt < 100 && frames.length === 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => server.close(resolve));
    const frame = Buffer.concat(frames).toString("utf8");
    const space = frame.indexOf(" ");
    const length = Number(frame.slice(0, space));
    assert.equal(Buffer.byteLength(frame.slice(space + 1)), length);
    assert.ok(frame.includes(latest.jws));
  });

  test("checkpoint file tolerates a cut last line", async () => {
    const latest = (await readStoredCheckpoints(broker.server.broker.context.store)).at(-1) as Checkpoint;
    const line = JSON.stringify({ type: "writ-checkpoint", ...latest });
    const cut = join(workDir, "cut.jsonl");
    await writeFile(cut, `${line}\n${line.slice(0, 20)}`);
    assert.deepEqual(await readCheckpointFile(cut), [latest]);
    const damaged = join(workDir, "damaged.jsonl");
    await writeFile(damaged, `${line.slice(0, 20)}\n${line}\n`);
    await assert.rejects(readCheckpointFile(damaged), /line 1 is not a writ checkpoint/);
  });

  test("invalid syslog target is rejected", () => {
    assert.throws(() => parseSyslogTarget("tcp://127.0.0.1:514"), /udp:\/\/HOST:PORT or unix:/);
    assert.throws(() => parseSyslogTarget("unix:relative/path"), /udp:\/\/HOST:PORT or unix:/);
  });

  test("audit key file is private", async () => {
    const file = join(workDir, "loose-key.jwk");
    await loadAuditKey(file, "ES256");
    await chmod(file, 0o644);
    await assert.rejects(loadAuditKey(file, "ES256"), /readable by others/);
  });

  describe("after shutdown", () => {
    let events: AuditRecord[];
    let stored: Checkpoint[];
    let exportFile: string;

    before(async () => {
      await broker.server.close();
      const store = await Store.open({
        kind: "sqlite",
        file: join(broker.dataDir, "writ.db"),
        readonly: true,
      });
      try {
        events = await readAuditEvents(store);
        stored = await readStoredCheckpoints(store);
      } finally {
        await store.close();
      }
      exportFile = join(workDir, "export.jsonl");
      await writeFile(
        exportFile,
        formatExportHeader({ audit_jwks: jwks, checkpoints: stored }) +
          events.map(formatExportEvent).join(""),
      );
    });

    test("shutdown signs the final head", () => {
      assert.equal(stored.at(-1)?.seq, events.at(-1)?.seq);
    });

    test("data directory verifies", async () => {
      const { code, output } = await writJson<EvidenceVerdict>("--data", broker.dataDir, "audit", "verify");
      assert.equal(code, 0, JSON.stringify(output));
      assert.equal(output.events, events.length);
      // The stored checkpoints and the checkpoint file's copies of them.
      assert.equal(output.checkpoints, stored.length + (await readCheckpointFile(checkpointFile)).length);
    });

    test("export reads back", async () => {
      const exported = await readExportFile(exportFile);
      assert.equal(exported.header.type, "writ-audit-export");
      assert.equal(exported.header.version, 1);
      assert.deepEqual(exported.events, events);
    });

    test("export verifies with embedded jwks", async () => {
      const { code, output } = await writJson<EvidenceVerdict>("audit", "verify", "--file", exportFile);
      assert.equal(code, 0, JSON.stringify(output));
      assert.equal(output.events, events.length);
      assert.equal(output.checkpoints, stored.length);
    });

    test("export with edited event is edited", async () => {
      const target = events[2] as AuditRecord;
      const file = join(workDir, "edited.jsonl");
      const edited = events.map((event) =>
        event.seq === target.seq ? { ...event, actor: "spiffe://example.org/agent/someone-else" } : event,
      );
      await writeFile(
        file,
        formatExportHeader({ audit_jwks: jwks, checkpoints: stored }) +
          edited.map(formatExportEvent).join(""),
      );
      const { code, output } = await writJson<EvidenceVerdict>("audit", "verify", "--file", file);
      assert.equal(code, 1);
      assert.deepEqual(output.ok ? {} : { seq: output.seq, fault: output.fault }, {
        seq: target.seq,
        fault: "edited",
      });
    });

    test("truncated export is truncated", async () => {
      const kept = events.length - 2;
      const file = join(workDir, "truncated.jsonl");
      await writeFile(
        file,
        formatExportHeader({ audit_jwks: jwks, checkpoints: stored }) +
          events.slice(0, kept).map(formatExportEvent).join(""),
      );
      const { code, output } = await writJson<EvidenceVerdict>("audit", "verify", "--file", file);
      assert.equal(code, 1);
      assert.deepEqual(output.ok ? {} : { seq: output.seq, fault: output.fault }, {
        seq: (events[kept - 1]?.seq ?? 0) + 1,
        fault: "truncated",
      });
    });

    test("export with another jwks is bad_signature", async () => {
      const other = auditJwks(await loadAuditKey(join(workDir, "other-key.jwk"), "Ed25519"));
      const jwksFile = join(workDir, "other-jwks.json");
      await writeFile(jwksFile, JSON.stringify(other));
      const { code, output } = await writJson<EvidenceVerdict>(
        "audit",
        "verify",
        "--file",
        exportFile,
        "--audit-jwks",
        jwksFile,
      );
      assert.equal(code, 1);
      assert.equal(output.ok ? "ok" : output.fault, "bad_signature");
      assert.equal(output.ok ? 0 : output.seq, stored[0]?.seq);
    });

    test("export of a later range verifies from its start", async () => {
      const from = 3;
      const previous = events[from - 1] as AuditRecord;
      const file = join(workDir, "range.jsonl");
      await writeFile(
        file,
        formatExportHeader({
          audit_jwks: jwks,
          checkpoints: stored,
          after: { seq: previous.seq, hash: previous.hash },
        }) + events.slice(from).map(formatExportEvent).join(""),
      );
      const { code, output } = await writJson<EvidenceVerdict>("audit", "verify", "--file", file);
      assert.equal(code, 0, JSON.stringify(output));
      assert.equal(output.events, events.length - from);
    });

    test("non-export file is an error", async () => {
      const file = join(workDir, "not-export.jsonl");
      await writeFile(file, `${JSON.stringify({ type: "something-else" })}\n`);
      await assert.rejects(
        execFileAsync(process.execPath, [cliPath, "audit", "verify", "--file", file]),
        (error: { stderr?: string }) => /not a "writ-audit-export" header/.test(error.stderr ?? ""),
      );
    });
  });
});

describe("audit checkpoint interval", () => {
  let broker: TestBroker;

  before(async () => {
    broker = await startTestBroker({ config: { audit_checkpoint_interval_seconds: 1 } });
  });

  after(async () => {
    await broker?.close();
  });

  test("timer signs the new head", async () => {
    await registerAgent(broker, "interval-bot");
    const { store, queue } = broker.server.broker.context;
    await queue.drain();
    const head = await store.db.selectFrom("audit_head").selectAll().executeTakeFirstOrThrow();
    // The timer runs every second; wait up to 30 s for it rather than assert how soon it runs.
    let latest: Checkpoint | undefined;
    for (let attempt = 0; attempt < 300; attempt++) {
      latest = (await readStoredCheckpoints(store)).at(-1);
      if (latest !== undefined && latest.seq >= head.seq) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(latest !== undefined, "the timer signed no checkpoint");
    assert.ok(latest.seq >= head.seq, `the latest checkpoint names event ${latest.seq}, not ${head.seq}`);
  });
});
