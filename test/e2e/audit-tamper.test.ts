// Tampering with a real broker's audit log. A broker records events, stops, and each case edits a
// fresh copy of its store directly in the database, the way someone with file or SQL access would.
// The verdict of verifyChain and of `writ audit verify` must name the first bad event and its fault.
//
// Needs `npm run build` first: the CLI cases run dist/cli/main.js.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import SqliteDatabase from "better-sqlite3";
import pg from "pg";
import { hashRecord, type AuditRecord } from "../../src/audit/chain.js";
import { fromAuditRow, readAuditEvents } from "../../src/audit/read.js";
import { verifyChain, type ChainVerdict } from "../../src/audit/verify.js";
import { storeFileName } from "../../src/broker/broker.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import type { AuditEventsTable } from "../../src/store/schema.js";
import { Store, type StoreLocation } from "../../src/store/store.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { startPostgres, type PostgresCluster } from "../support/postgres.js";

const execFileAsync = promisify(execFile);
const cliPath = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/** The event each case tampers with: far enough from both ends that it has neighbours. */
const targetSeq = 5;

/** Returns the fields of a verdict that name the fault, without its prose `reason`. */
function faultOf(verdict: ChainVerdict): { ok: boolean; seq?: number; fault?: string } {
  return verdict.ok ? { ok: true } : { ok: false, seq: verdict.seq, fault: verdict.fault };
}

/** Adds agents, tools and tasks through the admin API, each of which appends audit events. */
async function recordEvents(broker: TestBroker): Promise<void> {
  for (const name of ["alpha", "bravo", "charlie"]) {
    const key = await generateIdentityKey("Ed25519");
    await broker.admin.call("POST", "/v1/agents", {
      name,
      owner: "team-audit",
      environment: "prod",
      public_jwk: key.publicJwk,
    });
  }
  for (const name of ["github", "tracker"]) {
    await broker.admin.call("POST", "/v1/tools", {
      name,
      kind: "http",
      environment: "prod",
      actions: [{ name: "read", spec: "GET /repos/**" }],
    });
  }
  for (const agent of ["alpha", "bravo", "charlie"]) {
    await broker.admin.call("POST", "/v1/tasks", {
      agent,
      actions: ["github:read", "tracker:read"],
      intent: "triage the open issues",
      environment: "prod",
      ttl_seconds: 600,
    });
  }
}

async function verifyLocation(location: StoreLocation): Promise<ChainVerdict> {
  const store = await Store.open(location);
  try {
    return verifyChain(await readAuditEvents(store));
  } finally {
    await store.close();
  }
}

/** Runs `writ --json audit verify --db FILE` and returns its exit code and JSON output. */
async function verifyWithCli(file: string): Promise<{ code: number; verdict: ChainVerdict }> {
  try {
    const { stdout } = await execFileAsync(process.execPath, [
      cliPath,
      "--json",
      "audit",
      "verify",
      "--db",
      file,
    ]);
    return { code: 0, verdict: JSON.parse(stdout) as ChainVerdict };
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== "number") throw error;
    assert.equal(failed.stderr, "", `writ audit verify wrote to stderr: ${failed.stderr}`);
    return { code: failed.code, verdict: JSON.parse(failed.stdout ?? "") as ChainVerdict };
  }
}

describe("audit tamper on sqlite", () => {
  let broker: TestBroker;
  let workDir: string;
  let baseFile: string;
  let original: AuditRecord[];
  let copies = 0;

  before(async () => {
    assert.ok(existsSync(cliPath), `${cliPath} is missing: run npm run build first`);
    workDir = await mkdtemp(join(tmpdir(), "writ-tamper-"));
    broker = await startTestBroker();
    await recordEvents(broker);
    await broker.server.close();

    // Closing the last connection normally folds the WAL into the file. A leftover WAL is copied
    // along and checkpointed into the copy, so that every case starts from one self-contained file.
    const storeFile = join(broker.dataDir, storeFileName);
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
    assert.ok(original.length >= targetSeq + 3, `only ${original.length} audit events were recorded`);
  });

  after(async () => {
    await broker?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  /** Copies the base store to a new file and applies `tamper` to the copy with better-sqlite3. */
  async function tamperedCopy(tamper: (db: SqliteDatabase.Database) => void): Promise<string> {
    copies++;
    const file = join(workDir, `copy-${copies}.db`);
    await copyFile(baseFile, file);
    const db = new SqliteDatabase(file);
    try {
      tamper(db);
    } finally {
      db.close();
    }
    return file;
  }

  function eventAt(seq: number): AuditRecord {
    const event = original.find((candidate) => candidate.seq === seq);
    assert.ok(event !== undefined, `event ${seq} not recorded`);
    return event;
  }

  test("untouched copy verifies", async () => {
    const file = await tamperedCopy(() => {});
    assert.deepEqual(faultOf(await verifyLocation({ kind: "sqlite", file })), { ok: true });
    const cli = await verifyWithCli(file);
    assert.equal(cli.code, 0);
    assert.equal(cli.verdict.events, original.length);
  });

  test("edited data is edited", async () => {
    const file = await tamperedCopy((db) => {
      const data = JSON.stringify({ ...eventAt(targetSeq).data, owner: "someone-else" });
      db.prepare("update audit_events set data = ? where seq = ?").run(data, targetSeq);
    });
    const expected = { ok: false, seq: targetSeq, fault: "edited" };
    assert.deepEqual(faultOf(await verifyLocation({ kind: "sqlite", file })), expected);
    const cli = await verifyWithCli(file);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), expected);
  });

  test("rehashed edit names that event", async () => {
    const file = await tamperedCopy((db) => {
      const { hash: _old, ...event } = eventAt(targetSeq);
      const edited = { ...event, data: { ...event.data, owner: "someone-else" } };
      db.prepare("update audit_events set data = ?, hash = ? where seq = ?").run(
        JSON.stringify(edited.data),
        hashRecord(edited),
        targetSeq,
      );
    });
    // The event now matches its own hash, but the next event still names the old one.
    const expected = { ok: false, seq: targetSeq, fault: "edited" };
    assert.deepEqual(faultOf(await verifyLocation({ kind: "sqlite", file })), expected);
    const cli = await verifyWithCli(file);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), expected);
  });

  test("deleted event is missing", async () => {
    const file = await tamperedCopy((db) => {
      db.prepare("delete from audit_events where seq = ?").run(targetSeq);
    });
    const expected = { ok: false, seq: targetSeq, fault: "missing" };
    assert.deepEqual(faultOf(await verifyLocation({ kind: "sqlite", file })), expected);
    const cli = await verifyWithCli(file);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), expected);
  });

  test("swapped events are reordered", async () => {
    const [first, second] = [targetSeq, targetSeq + 1];
    const file = await tamperedCopy((db) => {
      // seq is the primary key, so the swap goes through a free number.
      const renumber = db.prepare("update audit_events set seq = ? where seq = ?");
      db.transaction(() => {
        renumber.run(-1, first);
        renumber.run(first, second);
        renumber.run(second, -1);
      })();
    });
    const verdict = await verifyLocation({ kind: "sqlite", file });
    assert.equal(verdict.ok ? "ok" : verdict.fault, "reordered");
    assert.ok(
      !verdict.ok && [first, second].includes(verdict.seq),
      `verdict names ${JSON.stringify(verdict)}`,
    );
    const cli = await verifyWithCli(file);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), faultOf(verdict));
  });

  test("truncated tail still verifies", async () => {
    // NOTE: dropping the newest events, and moving the head back to match, leaves a shorter chain
    // that is valid from the first event on. Only a signed checkpoint of the head, kept outside the
    // store, can show that later events existed; until writ signs checkpoints this goes undetected.
    const kept = original.length - 3;
    const file = await tamperedCopy((db) => {
      const newHead = eventAt(kept);
      db.transaction(() => {
        db.prepare("delete from audit_events where seq > ?").run(kept);
        db.prepare("update audit_head set seq = ?, hash = ? where id = 1").run(newHead.seq, newHead.hash);
      })();
    });
    assert.deepEqual(faultOf(await verifyLocation({ kind: "sqlite", file })), { ok: true });
    const cli = await verifyWithCli(file);
    assert.equal(cli.code, 0);
    assert.equal(cli.verdict.events, kept);
  });
});

describe("audit tamper on postgres", () => {
  let cluster: PostgresCluster;
  let broker: TestBroker;
  let original: AuditRecord[];
  let copies = 0;
  const sourceDatabase = "tamper_source";

  before(async () => {
    cluster = await startPostgres();
    const url = await cluster.createDatabase(sourceDatabase);
    broker = await startTestBroker({ postgresUrl: url });
    await recordEvents(broker);
    await broker.server.close();
    const store = await Store.open({ kind: "postgres", url });
    try {
      original = await readAuditEvents(store);
    } finally {
      await store.close();
    }
    assert.ok(original.length >= targetSeq + 3, `only ${original.length} audit events were recorded`);
  });

  after(async () => {
    await broker?.close();
    await cluster?.stop();
  });

  /** Copies the source database with CREATE DATABASE … TEMPLATE and applies `tamper` to the copy. */
  async function tamperedCopy(tamper: (client: pg.Client) => Promise<void>): Promise<StoreLocation> {
    copies++;
    const name = `tamper_copy_${copies}`;
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    try {
      await admin.query(`create database ${name} template ${sourceDatabase}`);
    } finally {
      await admin.end();
    }
    const url = new URL(cluster.url);
    url.pathname = `/${name}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      await tamper(client);
    } finally {
      await client.end();
    }
    return { kind: "postgres", url: url.toString() };
  }

  test("untouched copy verifies", async () => {
    const location = await tamperedCopy(async () => {});
    assert.deepEqual(faultOf(await verifyLocation(location)), { ok: true });
  });

  test("edited data is edited", async () => {
    const event = original.find((candidate) => candidate.seq === targetSeq);
    const location = await tamperedCopy(async (client) => {
      const data = JSON.stringify({ ...event?.data, owner: "someone-else" });
      await client.query("update audit_events set data = $1 where seq = $2", [data, targetSeq]);
    });
    assert.deepEqual(faultOf(await verifyLocation(location)), { ok: false, seq: targetSeq, fault: "edited" });
  });

  test("deleted event is missing", async () => {
    const location = await tamperedCopy(async (client) => {
      await client.query("delete from audit_events where seq = $1", [targetSeq]);
    });
    assert.deepEqual(faultOf(await verifyLocation(location)), {
      ok: false,
      seq: targetSeq,
      fault: "missing",
    });
  });

  test("swapped events are reordered", async () => {
    const [first, second] = [targetSeq, targetSeq + 1];
    const location = await tamperedCopy(async (client) => {
      // PostgreSQL checks a non-deferrable primary key row by row, so the swap goes through a free number.
      await client.query("begin");
      await client.query("update audit_events set seq = -1 where seq = $1", [first]);
      await client.query("update audit_events set seq = $1 where seq = $2", [first, second]);
      await client.query("update audit_events set seq = $1 where seq = -1", [second]);
      await client.query("commit");
    });
    const verdict = await verifyLocation(location);
    assert.equal(verdict.ok ? "ok" : verdict.fault, "reordered");
    assert.ok(
      !verdict.ok && [first, second].includes(verdict.seq),
      `verdict names ${JSON.stringify(verdict)}`,
    );
  });
});
