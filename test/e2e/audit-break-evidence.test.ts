// Attacks on the audit evidence of a real broker: forged exports, truncation that leaves the head
// row, an export resumed with --append, and text in the log that drives a terminal. Each case states
// the expected verdict.
//
// Needs `npm run build` first: the CLI cases run dist/cli/main.js.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import SqliteDatabase from "better-sqlite3";
import type { JSONWebKeySet } from "jose";
import { auditJwks, readAuditKey } from "../../src/audit/audit-key.js";
import { hashRecord, type AuditRecord } from "../../src/audit/chain.js";
import type { Checkpoint } from "../../src/audit/checkpoint.js";
import { exportLines } from "../../src/audit/export/export-lines.js";
import { formatExportEvent, formatExportHeader } from "../../src/audit/export-file.js";
import { fromAuditRow } from "../../src/audit/read.js";
import { readCheckpointFile } from "../../src/audit/sinks/file.js";
import { storeFileName } from "../../src/broker/broker.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import type { AuditEventsTable } from "../../src/store/schema.js";
import { Store } from "../../src/store/store.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";

const execFileAsync = promisify(execFile);
const cliPath = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/** Bidirectional overrides and isolates that reorder what a terminal shows. */
const bidiControls = /[\u202a-\u202e\u2066-\u2069]/;
const spoofedIntent = "triage \u202eexe.tnemyap\u202c issues \u2066x\u2069";

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function writ(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [cliPath, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== "number") throw error;
    return { code: failed.code, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

describe("audit evidence attacks", () => {
  let broker: TestBroker;
  let workDir: string;
  let dataDir: string;
  let baseFile: string;
  let checkpointFile: string;
  let sinkSnapshot: string;
  let jwks: JSONWebKeySet;
  let jwksFile: string;
  let original: AuditRecord[];
  let checkpoints: Checkpoint[];
  let spoofedTaskId: string;

  before(async () => {
    assert.ok(existsSync(cliPath), `${cliPath} is missing: run npm run build first`);
    workDir = await mkdtemp(join(tmpdir(), "writ-audit-break-"));
    checkpointFile = join(workDir, "checkpoints.jsonl");
    broker = await startTestBroker({ config: { audit_checkpoint_file: checkpointFile } });
    for (const name of ["alpha", "bravo", "charlie"]) {
      const key = await generateIdentityKey("Ed25519");
      await broker.admin.call("POST", "/v1/agents", {
        name,
        owner: "team-audit",
        environment: "prod",
        public_jwk: key.publicJwk,
      });
    }
    await broker.server.broker.context.checkpointer.checkpoint();
    await broker.admin.call("POST", "/v1/tools", {
      name: "github",
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /repos/**" }],
    });
    const task = await broker.admin.call<{ id: string }>("POST", "/v1/tasks", {
      agent: "alpha",
      actions: ["github:read"],
      intent: spoofedIntent,
      environment: "prod",
      ttl_seconds: 600,
    });
    spoofedTaskId = task.id;
    await broker.server.close();

    dataDir = join(workDir, "data");
    await cp(broker.dataDir, dataDir, { recursive: true });
    jwks = auditJwks(await readAuditKey(join(dataDir, "audit-key.jwk")));
    jwksFile = join(workDir, "audit-jwks.json");
    await writeFile(jwksFile, JSON.stringify(jwks));

    const storeFile = join(dataDir, storeFileName);
    baseFile = join(workDir, "base.db");
    await copyFile(storeFile, baseFile);
    if (existsSync(`${storeFile}-wal`)) await copyFile(`${storeFile}-wal`, `${baseFile}-wal`);
    const base = new SqliteDatabase(baseFile);
    try {
      base.pragma("wal_checkpoint(TRUNCATE)");
      const rows = base.prepare("select * from audit_events order by seq").all() as AuditEventsTable[];
      original = rows.map(fromAuditRow);
    } finally {
      base.close();
    }
    // Local CLI runs on the copied data directory sign more checkpoints into the same sink file, so
    // the cases read a snapshot of it taken now.
    sinkSnapshot = join(workDir, "checkpoints-snapshot.jsonl");
    await copyFile(checkpointFile, sinkSnapshot);
    checkpoints = await readCheckpointFile(sinkSnapshot);
    assert.ok(checkpoints.length >= 2, "expected a checkpoint mid-way and one at shutdown");
    assert.equal(checkpoints.at(-1)?.seq, original.at(-1)?.seq);
  });

  after(async () => {
    await broker?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  /** Builds events chained after `start`, each rehashed, as anyone without the audit key can. */
  function forgeChain(start: { seq: number; hash: string }, count: number): AuditRecord[] {
    const events: AuditRecord[] = [];
    let previous = start;
    for (let index = 1; index <= count; index++) {
      const unhashed = {
        seq: previous.seq + 1,
        time: (original.at(-1)?.time ?? 0) + index,
        kind: "agent.created",
        actor: "writ",
        task_id: null,
        jti: null,
        data: { agent: `spiffe://example.org/agent/forged-${index}`, owner: "nobody" },
        prev_hash: previous.hash,
        chain_version: 1,
      };
      const event = { ...unhashed, hash: hashRecord(unhashed) };
      events.push(event);
      previous = { seq: event.seq, hash: event.hash };
    }
    return events;
  }

  test("export past every checkpoint verifies", async () => {
    const head = checkpoints.at(-1) as Checkpoint;
    // The header names the checkpointed head with a hash that contradicts the checkpoint, and the
    // events are invented. Every checkpoint lies before the export's first event, so each is
    // checked for its signature only.
    const after = { seq: head.seq, hash: "ab".repeat(32) };
    const file = join(workDir, "forged.jsonl");
    const lines = [
      formatExportHeader({ audit_jwks: jwks, checkpoints, after }),
      ...forgeChain(after, 3).map(formatExportEvent),
    ];
    await writeFile(file, lines.join(""));

    const result = await writ(
      "--json",
      "audit",
      "verify",
      "--file",
      file,
      "--audit-jwks",
      jwksFile,
      "--checkpoints",
      sinkSnapshot,
    );
    const verdict = JSON.parse(result.stdout) as { ok: boolean; checkpoints: number };
    assert.equal(verdict.ok, false, `forged export verified: ${result.stdout}`);
    assert.equal(result.code, 1);
  });

  test("after hash checked against checkpoint", async () => {
    const middle = checkpoints[0] as Checkpoint;
    const file = join(workDir, "after-mismatch.jsonl");
    const after = { seq: middle.seq, hash: "cd".repeat(32) };
    await writeFile(
      file,
      [
        formatExportHeader({ audit_jwks: jwks, checkpoints: [middle], after }),
        ...forgeChain(after, 1).map(formatExportEvent),
      ].join(""),
    );
    const result = await writ("--json", "audit", "verify", "--file", file, "--audit-jwks", jwksFile);
    const verdict = JSON.parse(result.stdout) as { ok: boolean; seq?: number; fault?: string };
    assert.equal(verdict.ok, false, `export verified: ${result.stdout}`);
    assert.equal(verdict.seq, middle.seq);
  });

  test("tail cut keeping head row", async () => {
    const keep = (checkpoints[0] as Checkpoint).seq;
    const file = join(workDir, "tail-cut.db");
    await copyFile(baseFile, file);
    const db = new SqliteDatabase(file);
    try {
      db.prepare("delete from audit_events where seq > ?").run(keep);
      db.prepare("delete from audit_checkpoints where seq > ?").run(keep);
      const head = db.prepare("select seq from audit_head where id = 1").get() as { seq: number };
      assert.equal(head.seq, original.at(-1)?.seq, "audit_head still names the old head");
    } finally {
      db.close();
    }
    const result = await writ("--json", "audit", "verify", "--db", file, "--audit-jwks", jwksFile);
    const verdict = JSON.parse(result.stdout) as { ok: boolean; seq?: number; fault?: string };
    assert.deepEqual(
      { ok: verdict.ok, seq: verdict.seq, fault: verdict.fault },
      { ok: false, seq: keep + 1, fault: "truncated" },
    );
  });

  test("rehashed edit names edited event", async () => {
    const target = 2;
    const cover = checkpoints.find((checkpoint) => checkpoint.seq >= target) as Checkpoint;
    assert.ok(cover.seq > target, "the first checkpoint must lie after the edited event");
    const file = join(workDir, "rehashed.db");
    await copyFile(baseFile, file);
    const db = new SqliteDatabase(file);
    try {
      const update = db.prepare("update audit_events set data = ?, prev_hash = ?, hash = ? where seq = ?");
      let previous = original[target - 2]?.hash as string;
      db.transaction(() => {
        for (const event of original.slice(target - 1)) {
          const { hash: _old, ...rest } = event;
          const data = event.seq === target ? { ...event.data, owner: "someone-else" } : event.data;
          const rewritten = { ...rest, data, prev_hash: previous };
          previous = hashRecord(rewritten);
          update.run(JSON.stringify(data), rewritten.prev_hash, previous, event.seq);
        }
        db.prepare("update audit_head set hash = ? where id = 1").run(previous);
      })();
    } finally {
      db.close();
    }
    const result = await writ("--json", "audit", "verify", "--db", file, "--audit-jwks", jwksFile);
    const verdict = JSON.parse(result.stdout) as { ok: boolean; seq?: number; fault?: string };
    assert.equal(verdict.ok, false);
    assert.equal(verdict.fault, "edited");
    // The chain was rehashed, so only the covering checkpoint shows the edit; the reason names the
    // range in which the rewrite began.
    assert.equal(verdict.seq, cover.seq);
    assert.match(String((verdict as { reason?: string }).reason), new RegExp(`from 1 to ${cover.seq}`));
    assert.ok(target <= cover.seq);
  });

  test("jsonl export resumed with append", async () => {
    const file = join(workDir, "resumed.jsonl");
    const middle = (checkpoints[0] as Checkpoint).seq;
    const first = await writ("--data", dataDir, "audit", "export", "--out", file);
    assert.equal(first.code, 0, first.stderr);
    // A follower that stopped after `middle` resumes as docs/audit.md shows, into the same file.
    const kept =
      (await readFile(file, "utf8"))
        .split("\n")
        .slice(0, middle + 1)
        .join("\n") + "\n";
    await writeFile(file, kept);
    const resumed = await writ(
      "--data",
      dataDir,
      "audit",
      "export",
      "--since-seq",
      String(middle),
      "--out",
      file,
      "--append",
    );
    assert.equal(resumed.code, 0, resumed.stderr);
    const result = await writ("--json", "audit", "verify", "--file", file, "--audit-jwks", jwksFile);
    assert.equal(result.code, 0, `verify failed: ${result.stdout}${result.stderr}`);
  });

  test("export without audit key file", async () => {
    const bare = join(workDir, "no-key");
    await cp(dataDir, bare, { recursive: true });
    await rm(join(bare, "audit-key.jwk"));
    const result = await writ("--data", bare, "audit", "export", "--format", "ocsf");
    assert.equal(result.code, 0, result.stderr);
  });

  test("task story strips bidi overrides", async () => {
    const keyArgs = ["--data", dataDir, "--admin-key", broker.adminKeyFile];
    const story = await writ(...keyArgs, "audit", "task", spoofedTaskId);
    assert.equal(story.code, 0, story.stderr);
    assert.doesNotMatch(story.stdout, bidiControls, "writ audit task");
    const events = await writ(...keyArgs, "audit", "events", "--task", spoofedTaskId);
    assert.equal(events.code, 0, events.stderr);
    assert.doesNotMatch(events.stdout, bidiControls, "writ audit events");
  });

  test("edited prev_hash names that event", async () => {
    const target = 5;
    const file = join(workDir, "prev-hash.db");
    await copyFile(baseFile, file);
    const db = new SqliteDatabase(file);
    try {
      db.prepare("update audit_events set prev_hash = ? where seq = ?").run("ef".repeat(32), target);
    } finally {
      db.close();
    }
    const result = await writ("--json", "audit", "verify", "--db", file, "--audit-jwks", jwksFile);
    const verdict = JSON.parse(result.stdout) as { ok: boolean; seq?: number; fault?: string };
    assert.deepEqual({ seq: verdict.seq, fault: verdict.fault }, { seq: target, fault: "edited" });
  });

  test("untouched export verifies", async () => {
    const store = await Store.open({ kind: "sqlite", file: baseFile, readonly: true });
    const file = join(workDir, "untouched.jsonl");
    try {
      let text = "";
      for await (const line of exportLines(store, {
        format: "jsonl",
        afterSeq: 0,
        follow: false,
        auditJwks: jwks,
      }))
        text += line;
      await writeFile(file, text);
    } finally {
      await store.close();
    }
    const result = await writ(
      "--json",
      "audit",
      "verify",
      "--file",
      file,
      "--audit-jwks",
      jwksFile,
      "--checkpoints",
      sinkSnapshot,
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });
});
