// Tampering with a real broker's audit log. A broker records events, signs checkpoints (into its store
// and into a checkpoint file sink), stops, and each case edits a fresh copy of its store directly in
// the database, the way someone with file or SQL access would. The verdict of verifyEvidence and of
// `writ audit verify` must name the first bad event and its fault.
//
// Needs `npm run build` first: the CLI cases run dist/cli/main.js.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import SqliteDatabase from "better-sqlite3";
import pg from "pg";
import type { JSONWebKeySet } from "jose";
import { auditJwks, readAuditKey } from "../../src/audit/audit-key.js";
import { hashRecord, type AuditRecord } from "../../src/audit/chain.js";
import { readStoredCheckpoints } from "../../src/audit/checkpointer.js";
import { verifyEvidence, type CheckpointSource } from "../../src/audit/checkpoint-verify.js";
import { fromAuditRow, readAuditEvents } from "../../src/audit/read.js";
import { readCheckpointFile } from "../../src/audit/sinks/file.js";
import type { ChainVerdict } from "../../src/audit/verify.js";
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

/** The checkpoint file sink of each test broker, named relative to its data directory. */
const checkpointFileName = "checkpoints.jsonl";

/**
 * Adds agents, tools and tasks through the admin API, each of which appends audit events. It signs a
 * checkpoint between the agents and the tools, and stopping the broker signs the final head.
 */
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
  await broker.server.broker.context.checkpointer.checkpoint();
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

/** Verifies a store's chain and its stored checkpoints, plus `external` checkpoints when given. */
async function verifyLocation(
  location: StoreLocation,
  jwks: JSONWebKeySet,
  external: CheckpointSource[] = [],
): Promise<ChainVerdict> {
  const store = await Store.open(location);
  try {
    const stored = { source: "store", checkpoints: await readStoredCheckpoints(store) };
    return await verifyEvidence(await readAuditEvents(store), [stored, ...external], jwks);
  } finally {
    await store.close();
  }
}

/** Runs `writ --json audit verify --db FILE ARGS` and returns its exit code and JSON output. */
async function verifyWithCli(
  file: string,
  ...args: string[]
): Promise<{ code: number; verdict: ChainVerdict }> {
  try {
    const { stdout } = await execFileAsync(process.execPath, [
      cliPath,
      "--json",
      "audit",
      "verify",
      "--db",
      file,
      ...args,
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
  let jwks: JSONWebKeySet;
  let jwksFile: string;
  let checkpointFile: string;
  let copies = 0;

  before(async () => {
    assert.ok(existsSync(cliPath), `${cliPath} is missing: run npm run build first`);
    workDir = await mkdtemp(join(tmpdir(), "writ-tamper-"));
    checkpointFile = join(workDir, checkpointFileName);
    broker = await startTestBroker({ config: { audit_checkpoint_file: checkpointFile } });
    await recordEvents(broker);
    await broker.server.close();
    jwks = auditJwks(await readAuditKey(join(broker.dataDir, "audit-key.jwk")));
    jwksFile = join(workDir, "audit-jwks.json");
    await writeFile(jwksFile, JSON.stringify(jwks));

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
    const written = await readCheckpointFile(checkpointFile);
    assert.deepEqual(
      written.map((checkpoint) => checkpoint.seq).at(-1),
      original.at(-1)?.seq,
      "the checkpoint file does not end with the final head",
    );
  });

  after(async () => {
    await broker?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  async function verifySqlite(file: string, external: CheckpointSource[] = []): Promise<ChainVerdict> {
    return verifyLocation({ kind: "sqlite", file }, jwks, external);
  }

  async function checkpointSources(): Promise<CheckpointSource[]> {
    return [{ source: "checkpoint file", checkpoints: await readCheckpointFile(checkpointFile) }];
  }

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
    assert.deepEqual(faultOf(await verifySqlite(file)), { ok: true });
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile);
    assert.equal(cli.code, 0);
    assert.equal(cli.verdict.events, original.length);
  });

  test("edited data is edited", async () => {
    const file = await tamperedCopy((db) => {
      const data = JSON.stringify({ ...eventAt(targetSeq).data, owner: "someone-else" });
      db.prepare("update audit_events set data = ? where seq = ?").run(data, targetSeq);
    });
    const expected = { ok: false, seq: targetSeq, fault: "edited" };
    assert.deepEqual(faultOf(await verifySqlite(file)), expected);
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile);
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
    assert.deepEqual(faultOf(await verifySqlite(file)), expected);
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), expected);
  });

  test("deleted event is missing", async () => {
    const file = await tamperedCopy((db) => {
      db.prepare("delete from audit_events where seq = ?").run(targetSeq);
    });
    const expected = { ok: false, seq: targetSeq, fault: "missing" };
    assert.deepEqual(faultOf(await verifySqlite(file)), expected);
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile);
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
    const verdict = await verifySqlite(file);
    assert.equal(verdict.ok ? "ok" : verdict.fault, "reordered");
    assert.ok(
      !verdict.ok && [first, second].includes(verdict.seq),
      `verdict names ${JSON.stringify(verdict)}`,
    );
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), faultOf(verdict));
  });

  test("untouched copy verifies its checkpoints", async () => {
    const file = await tamperedCopy(() => {});
    const verdict = await verifySqlite(file, await checkpointSources());
    assert.deepEqual(faultOf(verdict), { ok: true });
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile, "--checkpoints", checkpointFile);
    assert.equal(cli.code, 0);
    assert.ok((cli.verdict as { checkpoints?: number }).checkpoints! >= 4, JSON.stringify(cli.verdict));
  });

  test("truncated tail is truncated", async () => {
    // The tail goes together with the checkpoints in the store that name it and with the head row,
    // which leaves a shorter chain that the store alone cannot fault. The checkpoint file, kept
    // outside the store, still names the final head.
    const kept = original.length - 3;
    const file = await tamperedCopy((db) => {
      const newHead = eventAt(kept);
      db.transaction(() => {
        db.prepare("delete from audit_events where seq > ?").run(kept);
        db.prepare("delete from audit_checkpoints where seq > ?").run(kept);
        db.prepare("update audit_head set seq = ?, hash = ? where id = 1").run(newHead.seq, newHead.hash);
      })();
    });
    assert.deepEqual(faultOf(await verifySqlite(file)), { ok: true });

    const expected = { ok: false, seq: kept + 1, fault: "truncated" };
    assert.deepEqual(faultOf(await verifySqlite(file, await checkpointSources())), expected);
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile, "--checkpoints", checkpointFile);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), expected);
  });

  test("corrupt checkpoint signature is bad_signature", async () => {
    const stored = new SqliteDatabase(baseFile, { readonly: true });
    const checkpoint = stored
      .prepare("select seq, jws from audit_checkpoints order by seq limit 1")
      .get() as {
      seq: number;
      jws: string;
    };
    stored.close();
    // Changing the signature's first character keeps it valid base64url but makes it another value.
    const [header, payload, signature] = checkpoint.jws.split(".") as [string, string, string];
    const flipped = `${signature.startsWith("A") ? "B" : "A"}${signature.slice(1)}`;
    const file = await tamperedCopy((db) => {
      db.prepare("update audit_checkpoints set jws = ? where seq = ?").run(
        `${header}.${payload}.${flipped}`,
        checkpoint.seq,
      );
    });
    const expected = { ok: false, seq: checkpoint.seq, fault: "bad_signature" };
    assert.deepEqual(faultOf(await verifySqlite(file)), expected);
    const cli = await verifyWithCli(file, "--audit-jwks", jwksFile);
    assert.equal(cli.code, 1);
    assert.deepEqual(faultOf(cli.verdict), expected);
  });

  test("checkpoint moved to another seq is bad_signature", async () => {
    // Renumbering a checkpoint row to the new head's seq, after truncating, does not help: the seq the
    // row states no longer matches the one its signature covers.
    const file = await tamperedCopy((db) => {
      const row = db.prepare("select seq from audit_checkpoints order by seq limit 1").get() as {
        seq: number;
      };
      db.prepare("update audit_checkpoints set seq = ? where seq = ?").run(row.seq + 1, row.seq);
    });
    const verdict = await verifySqlite(file);
    assert.equal(verdict.ok ? "ok" : verdict.fault, "bad_signature");
  });

  test("checkpoints without a JWKS are an error", async () => {
    const file = await tamperedCopy(() => {});
    await assert.rejects(
      execFileAsync(process.execPath, [cliPath, "audit", "verify", "--db", file]),
      (error: { code?: number; stderr?: string }) => {
        assert.equal(error.code, 1);
        assert.match(error.stderr ?? "", /no audit JWKS/);
        return true;
      },
    );
  });
});

describe("audit tamper on postgres", () => {
  let cluster: PostgresCluster;
  let broker: TestBroker;
  let original: AuditRecord[];
  let jwks: JSONWebKeySet;
  let workDir: string;
  let checkpointFile: string;
  let copies = 0;
  const sourceDatabase = "tamper_source";

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), "writ-tamper-pg-"));
    checkpointFile = join(workDir, checkpointFileName);
    cluster = await startPostgres();
    const url = await cluster.createDatabase(sourceDatabase);
    broker = await startTestBroker({ postgresUrl: url, config: { audit_checkpoint_file: checkpointFile } });
    await recordEvents(broker);
    await broker.server.close();
    jwks = auditJwks(await readAuditKey(join(broker.dataDir, "audit-key.jwk")));
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
    await rm(workDir, { recursive: true, force: true });
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
    assert.deepEqual(faultOf(await verifyLocation(location, jwks)), { ok: true });
  });

  test("edited data is edited", async () => {
    const event = original.find((candidate) => candidate.seq === targetSeq);
    const location = await tamperedCopy(async (client) => {
      const data = JSON.stringify({ ...event?.data, owner: "someone-else" });
      await client.query("update audit_events set data = $1 where seq = $2", [data, targetSeq]);
    });
    assert.deepEqual(faultOf(await verifyLocation(location, jwks)), {
      ok: false,
      seq: targetSeq,
      fault: "edited",
    });
  });

  test("deleted event is missing", async () => {
    const location = await tamperedCopy(async (client) => {
      await client.query("delete from audit_events where seq = $1", [targetSeq]);
    });
    assert.deepEqual(faultOf(await verifyLocation(location, jwks)), {
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
    const verdict = await verifyLocation(location, jwks);
    assert.equal(verdict.ok ? "ok" : verdict.fault, "reordered");
    assert.ok(
      !verdict.ok && [first, second].includes(verdict.seq),
      `verdict names ${JSON.stringify(verdict)}`,
    );
  });

  test("truncated tail is truncated", async () => {
    const kept = original.length - 3;
    const newHead = original.find((candidate) => candidate.seq === kept);
    const location = await tamperedCopy(async (client) => {
      await client.query("begin");
      await client.query("delete from audit_events where seq > $1", [kept]);
      await client.query("delete from audit_checkpoints where seq > $1", [kept]);
      await client.query("update audit_head set seq = $1, hash = $2 where id = 1", [kept, newHead?.hash]);
      await client.query("commit");
    });
    assert.deepEqual(faultOf(await verifyLocation(location, jwks)), { ok: true });
    const external = [{ source: "checkpoint file", checkpoints: await readCheckpointFile(checkpointFile) }];
    assert.deepEqual(faultOf(await verifyLocation(location, jwks, external)), {
      ok: false,
      seq: kept + 1,
      fault: "truncated",
    });
  });
});
