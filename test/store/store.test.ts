// One suite for the store, run against SQLite and against PostgreSQL, so that both dialects keep the
// same behaviour: migrations, row round trips, the replay cache, group commit, the audit chain and the
// revocation feed.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, afterEach, before, describe, test } from "node:test";
import { Migrator } from "kysely";
import { AuditLog } from "../../src/audit/log.js";
import { readAuditEvents } from "../../src/audit/read.js";
import { verifyChain } from "../../src/audit/verify.js";
import { ManualClock } from "../../src/clock.js";
import { StoreReplayCache } from "../../src/dpop/replay-cache.js";
import { silentLogger } from "../../src/log/logger.js";
import { RevocationFeed, type NewRevocation, type RevocationEvent } from "../../src/revocation/feed.js";
import { migrationProvider } from "../../src/store/migrations.js";
import type { Database } from "../../src/store/schema.js";
import { Store, type StoreLocation } from "../../src/store/store.js";
import { WriteQueue } from "../../src/store/write-queue.js";
import type { AppenderResult } from "../support/audit-appender.js";
import { startPostgres, type PostgresCluster } from "../support/postgres.js";

const execFileAsync = promisify(execFile);
const appenderScript = fileURLToPath(new URL("../support/audit-appender.ts", import.meta.url));

/** A database server for the suite: `create` returns the location of a new, empty database. */
interface Backend {
  kind: StoreLocation["kind"];
  start(): Promise<void>;
  stop(): Promise<void>;
  create(): Promise<StoreLocation>;
}

/** 2025-12-04T21:00:00Z: epoch milliseconds above 2^32, so a 32-bit column would not hold them. */
const startMs = 1_764_882_000_000;
const startS = startMs / 1000;

type TableName = keyof Database;

/** Returns one typical row per table, ordered so that parents come before the rows that reference them. */
function typicalRows(clock: ManualClock): { table: TableName; row: Record<string, unknown> }[] {
  const nowMs = clock.nowMs();
  const nowS = Math.floor(nowMs / 1000);
  const jwk = JSON.stringify({
    kty: "OKP",
    crv: "Ed25519",
    x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
  });
  return [
    {
      table: "humans",
      row: {
        id: "h_01",
        spiffe_id: "spiffe://example.org/human/h_01",
        display_name: "Ada Admin",
        email: "ada@example.org",
        roles: JSON.stringify(["admin"]),
        public_jwk: jwk,
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        status: "active",
        created_at: nowMs,
      },
    },
    {
      table: "agents",
      row: {
        name: "billing-bot",
        spiffe_id: "spiffe://example.org/agent/billing-bot",
        owner: "team-billing",
        environment: "prod",
        status: "active",
        attestation: "key",
        public_jwk: jwk,
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        created_at: nowMs,
        updated_at: nowMs + 1,
      },
    },
    {
      table: "federated_bindings",
      row: {
        id: "b_01",
        agent_name: "billing-bot",
        spec: JSON.stringify({ kind: "github", audience: "writ" }),
        created_at: nowMs,
      },
    },
    {
      table: "tools",
      row: {
        name: "github",
        kind: "http",
        environment: "prod",
        resource_uri: "http://127.0.0.1:7400/tools/github",
        actions: JSON.stringify([{ name: "read", spec: "GET /repos/**", risk: "low" }]),
        config: "{}",
        created_at: nowMs,
      },
    },
    {
      table: "tasks",
      row: {
        id: "t_01",
        agent_name: "billing-bot",
        initiator: "spiffe://example.org/human/h_01",
        intent: "reconcile invoices",
        tools: JSON.stringify(["github"]),
        actions: JSON.stringify(["github:read"]),
        environment: "prod",
        deadline_s: nowS + 3600,
        status: "completed",
        parent_task_id: null,
        created_at: nowMs,
        ended_at: nowMs + 60_000,
        end_reason: "done",
        subject: "spiffe://example.org/agent/planner",
        actor_chain: JSON.stringify(["spiffe://example.org/agent/planner"]),
        depth: 1,
        breakglass_id: null,
      },
    },
    {
      table: "tokens",
      row: {
        jti: "jti-01",
        task_id: "t_01",
        subject: "spiffe://example.org/agent/billing-bot",
        client_id: "spiffe://example.org/agent/billing-bot",
        audience: "http://127.0.0.1:7400/tools/github",
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        issued_at_s: nowS,
        expires_at_s: nowS + 600,
        revoked_at: nowMs + 30_000,
      },
    },
    {
      table: "replay_jtis",
      row: { scope: "dpop", jti: "proof-01", expires_at_s: nowS + 60 },
    },
    {
      table: "revocations",
      row: {
        seq: 1,
        created_at: nowMs,
        reason: "task ended",
        task_ids: JSON.stringify(["t_01"]),
        agent_ids: "[]",
        jtis: JSON.stringify(["jti-01"]),
        expires_at_s: nowS + 600,
      },
    },
    {
      table: "signing_keys",
      row: {
        kid: "k_01",
        alg: "Ed25519",
        public_jwk: jwk,
        private_jwk: jwk,
        created_at: nowMs,
        retired_at: null,
      },
    },
    {
      table: "audit_events",
      row: {
        seq: 1,
        time: nowMs,
        kind: "token.issued",
        actor: "spiffe://example.org/agent/billing-bot",
        task_id: "t_01",
        jti: "jti-01",
        data: JSON.stringify({ aud: "http://127.0.0.1:7400/tools/github" }),
        prev_hash: "0".repeat(64),
        hash: "a".repeat(64),
        chain_version: 1,
      },
    },
    {
      table: "audit_head",
      row: { id: 1, seq: 1, hash: "a".repeat(64) },
    },
    {
      table: "secrets",
      row: {
        name: "github-token",
        wrapped_key: "d3JhcHBlZA",
        ciphertext: "Y2lwaGVydGV4dA",
        created_at: nowMs,
        updated_at: nowMs + 1,
      },
    },
    {
      table: "policies",
      row: {
        id: "p_01",
        text: "permit(principal, action, resource);",
        created_by: "spiffe://example.org/human/h_01",
        created_at: nowMs,
        updated_at: nowMs,
      },
    },
    {
      table: "gateways",
      row: {
        name: "edge-1",
        spiffe_id: "spiffe://example.org/gateway/edge-1",
        public_jwk: jwk,
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        tls_cert_sha256: "b".repeat(64),
        public_url: "https://127.0.0.1:7443",
        status: "active",
        created_at: nowMs,
      },
    },
    {
      table: "approvals",
      row: {
        id: "ap_01",
        kind: "step_up",
        requester: "spiffe://example.org/agent/billing-bot",
        task_id: "t_01",
        digest: "c".repeat(64),
        rule: JSON.stringify({ role: "approver", count: 1 }),
        subject: JSON.stringify({ action: "github:merge" }),
        status: "pending",
        created_at: nowMs,
        expires_at: nowMs + 900_000,
        decided_at: null,
        used_at: null,
      },
    },
    {
      table: "approval_votes",
      row: {
        approval_id: "ap_01",
        approver: "spiffe://example.org/human/h_02",
        decision: "approve",
        created_at: nowMs,
      },
    },
    {
      table: "breakglass",
      row: {
        id: "bg_01",
        requester: "spiffe://example.org/human/h_01",
        target: "spiffe://example.org/agent/billing-bot",
        actions: JSON.stringify(["github:merge"]),
        reason: "production outage",
        duration_s: 1800,
        status: "active",
        approval_id: "ap_01",
        task_id: "t_01",
        created_at: nowMs,
        activated_at: nowMs + 1000,
        ends_at_s: nowS + 1800,
        ended_at: null,
        note: null,
      },
    },
    {
      table: "alert_deliveries",
      row: {
        id: "al_01",
        event: JSON.stringify({ kind: "breakglass.activated" }),
        url: "https://alerts.example.org/hook",
        attempts: 1,
        status: "pending",
        next_attempt_at: nowMs + 1000,
        created_at: nowMs,
      },
    },
    {
      table: "alert_signing_keys",
      row: {
        kid: "alert-01",
        alg: "Ed25519",
        public_jwk: jwk,
        private_jwk: jwk,
        created_at: nowMs,
      },
    },
    {
      table: "systems",
      row: {
        name: "billing",
        kind: "postgres",
        dsn: "postgres://writ_admin@db.internal:5432/app",
        password_secret: "pg-billing-admin",
        environment: "prod",
        created_at: nowMs,
      },
    },
    {
      table: "system_templates",
      row: {
        system: "billing",
        name: "reader",
        member_of: JSON.stringify(["billing_reader"]),
        grants: JSON.stringify(["SELECT ON ALL TABLES IN SCHEMA billing"]),
        database: "app",
        successor: null,
        connection_limit: 5,
        created_at: nowMs,
      },
    },
    {
      table: "leases",
      row: {
        id: "lease-01",
        system: "billing",
        template: "reader",
        role: "writ_t_01",
        task_id: "t_01",
        state: "cleanup_pending",
        valid_until: nowMs + 600_000,
        attempts: 2,
        last_error: "connect ECONNREFUSED 10.0.0.5:5432",
        next_attempt_at: nowMs + 4000,
        wrapped_key: "a.b.c",
        ciphertext: "d.e.f",
        created_at: nowMs,
        cleaned_at: null,
      },
    },
    {
      table: "accounts",
      row: {
        name: "etl",
        kind: "postgres",
        system: "billing",
        role: "legacy_etl",
        rotate_every_s: 86_400,
        checkout_id: "checkout-01",
        rotation_due: null,
        rotation_claimed_until: null,
        rotated_at: nowMs,
        wrapped_key: "a.b.c",
        ciphertext: "d.e.f",
        created_at: nowMs,
      },
    },
    {
      table: "account_checkouts",
      row: {
        id: "checkout-01",
        account: "etl",
        holder_kind: "human",
        holder_id: "h_01",
        holder: JSON.stringify({
          kind: "human",
          human_id: "h_01",
          spiffe_id: "spiffe://example.org/human/h_01",
        }),
        checked_out_at: nowMs,
        expires_at: nowMs + 900_000,
        checked_in_at: null,
      },
    },
    {
      table: "audit_checkpoints",
      row: { seq: 1, hash: "a".repeat(64), time: nowMs, jws: "a.b.c" },
    },
  ];
}

function revocation(reason: string, expiresAtS: number): NewRevocation {
  return {
    reason,
    task_ids: [`task-${reason}`],
    agent_ids: [],
    jtis: [`jti-${reason}`],
    expires_at_s: expiresAtS,
  };
}

/** Defines the store tests for one backend; every test gets its own empty database. */
function storeSuite(name: string, backend: Backend): void {
  describe(name, () => {
    const opened: Store[] = [];
    const clock = new ManualClock(startMs);
    const log = silentLogger();

    async function open(location: StoreLocation): Promise<Store> {
      const store = await Store.open(location);
      opened.push(store);
      return store;
    }

    async function openFresh(): Promise<Store> {
      return open(await backend.create());
    }

    before(() => backend.start());
    after(() => backend.stop());
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((store) => store.close()));
    });

    test("migrations create every table", async () => {
      const store = await openFresh();
      const tables = (await store.db.introspection.getTables()).map((table) => table.name);
      for (const { table } of typicalRows(clock)) {
        assert.ok(tables.includes(table), `table ${table} missing; found ${tables.join(", ")}`);
      }
    });

    test("migrations are idempotent on reopen", async () => {
      const location = await backend.create();
      const first = await open(location);
      await first.db
        .insertInto("replay_jtis")
        .values({ scope: "dpop", jti: "kept", expires_at_s: startS })
        .execute();
      await first.close();
      opened.splice(opened.indexOf(first), 1);

      const second = await open(location);
      const rerun = await new Migrator({
        db: second.db,
        provider: migrationProvider(second.dialect),
      }).migrateToLatest();
      assert.equal(rerun.error, undefined);
      assert.deepEqual(rerun.results, []);
      const kept = await second.db.selectFrom("replay_jtis").select("jti").execute();
      assert.deepEqual(kept, [{ jti: "kept" }]);
    });

    test("every table has a typical row", async () => {
      const store = await openFresh();
      const covered = new Set<string>(typicalRows(clock).map((entry) => entry.table));
      const tables = (await store.db.introspection.getTables()).map((table) => table.name);
      assert.deepEqual(
        tables.filter((table) => !covered.has(table)),
        [],
      );
    });

    test("typical rows round trip", async () => {
      const store = await openFresh();
      for (const { table, row } of typicalRows(clock)) {
        // revocations.seq is generated, so it is left to the database and expected back as 1.
        const { seq: _generated, ...withoutSeq } = row;
        const values = table === "revocations" ? withoutSeq : row;
        await store.db
          .insertInto(table)
          .values(values as never)
          .execute();
        const rows = await store.db.selectFrom(table).selectAll().execute();
        assert.deepEqual(rows, [row], `table ${table}`);
      }
    });

    test("replay cache remembers once", async () => {
      const store = await openFresh();
      const cache = new StoreReplayCache(store, new WriteQueue(store), clock);
      const first = await cache.remember("dpop", "jti-once", startS + 60);
      const second = await cache.remember("dpop", "jti-once", startS + 60);
      const otherScope = await cache.remember("client_assertion", "jti-once", startS + 60);
      assert.equal(first, true);
      assert.equal(second, false);
      assert.equal(otherScope, true);
    });

    test("replay cache in one batch", async () => {
      const store = await openFresh();
      const cache = new StoreReplayCache(store, new WriteQueue(store), clock);
      const results = await Promise.all(
        Array.from({ length: 50 }, () => cache.remember("dpop", "jti-batch", startS + 60)),
      );
      assert.equal(results.filter(Boolean).length, 1);
    });

    test("replay cache across transactions", async () => {
      // One queue per call puts every insert in its own transaction, as separate processes would.
      const store = await openFresh();
      const results = await Promise.all(
        Array.from({ length: 50 }, () =>
          new StoreReplayCache(store, new WriteQueue(store), clock).remember("dpop", "jti-race", startS + 60),
        ),
      );
      assert.equal(results.filter(Boolean).length, 1);
    });

    test("write queue commits concurrent writes", async () => {
      const store = await openFresh();
      const queue = new WriteQueue(store);
      const jtis = Array.from({ length: 100 }, (_, index) => `jti-${index}`);
      const results = await Promise.all(
        jtis.map((jti) =>
          queue.write(async (trx) => {
            await trx
              .insertInto("replay_jtis")
              .values({ scope: "dpop", jti, expires_at_s: startS })
              .execute();
            return jti;
          }),
        ),
      );
      assert.deepEqual(results, jtis);
      const stored = await store.db.selectFrom("replay_jtis").select("jti").orderBy("jti").execute();
      assert.deepEqual(
        stored.map((row) => row.jti),
        [...jtis].sort(),
      );
    });

    test("write queue isolates failing write", async () => {
      const store = await openFresh();
      const queue = new WriteQueue(store);
      await store.db
        .insertInto("replay_jtis")
        .values({ scope: "dpop", jti: "taken", expires_at_s: startS })
        .execute();

      // Queued in one turn of the event loop, so all eleven start in the same batch.
      const jtis = ["a", "b", "c", "d", "e", "taken", "f", "g", "h", "i", "j"];
      const outcomes = await Promise.allSettled(
        jtis.map((jti) =>
          queue.write((trx) =>
            trx.insertInto("replay_jtis").values({ scope: "dpop", jti, expires_at_s: startS }).execute(),
          ),
        ),
      );
      const failed = jtis.filter((_, index) => outcomes[index]?.status === "rejected");
      assert.deepEqual(failed, ["taken"]);
      const stored = await store.db.selectFrom("replay_jtis").select("jti").orderBy("jti").execute();
      assert.deepEqual(
        stored.map((row) => row.jti),
        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "taken"],
      );
    });

    test("audit append without gaps", async () => {
      const store = await openFresh();
      const audit = new AuditLog(store, new WriteQueue(store), clock, log);
      const appended = await Promise.all(
        Array.from({ length: 200 }, (_, index) =>
          audit.append({ kind: "test.appended", actor: "writ", data: { index } }),
        ),
      );
      const expectedSeqs = Array.from({ length: 200 }, (_, index) => index + 1);
      assert.deepEqual(
        appended.map((record) => record.seq).sort((a, b) => a - b),
        expectedSeqs,
      );
      const events = await readAuditEvents(store);
      assert.deepEqual(
        events.map((event) => event.seq),
        expectedSeqs,
      );
      assert.deepEqual(verifyChain(events), {
        ok: true,
        events: 200,
        head: { seq: 200, hash: events.at(-1)?.hash },
      });
    });

    test("revocation feed orders by seq", async () => {
      const store = await openFresh();
      const feed = new RevocationFeed(store, new WriteQueue(store), clock, log);
      await feed.start();
      const emitted: number[] = [];
      feed.subscribe((event) => emitted.push(event.seq));

      const expired = await feed.publish(revocation("expired", startS - 1));
      const first = await feed.publish(revocation("first", startS + 600));
      const second = await feed.publish(revocation("second", startS + 600));
      assert.deepEqual([expired, first, second], [1, 2, 3]);
      assert.deepEqual(emitted, [1, 2, 3]);

      const all = await feed.since(0);
      assert.deepEqual(
        all?.map((event) => event.reason),
        ["expired", "first", "second"],
      );
      const later = await feed.since(first);
      assert.deepEqual(
        later?.map((event) => event.seq),
        [second],
      );
      assert.equal(await feed.since(99), undefined);

      const snapshot = await feed.snapshot();
      assert.deepEqual(
        snapshot.map((event) => event.seq),
        [first, second],
      );
      assert.deepEqual(snapshot[0], {
        seq: first,
        created_at: startMs,
        reason: "first",
        task_ids: ["task-first"],
        agent_ids: [],
        jtis: ["jti-first"],
        expires_at_s: startS + 600,
      } satisfies RevocationEvent);
    });

    test("revocation feed concurrent publish", async () => {
      const store = await openFresh();
      const feed = new RevocationFeed(store, new WriteQueue(store), clock, log);
      await feed.start();
      const emitted: number[] = [];
      feed.subscribe((event) => emitted.push(event.seq));

      const seqs = await Promise.all(
        Array.from({ length: 20 }, (_, index) => feed.publish(revocation(`r${index}`, startS + 600))),
      );
      const expected = Array.from({ length: 20 }, (_, index) => index + 1);
      assert.deepEqual(
        [...seqs].sort((a, b) => a - b),
        expected,
      );
      assert.deepEqual(emitted, expected);
      const all = await feed.since(0);
      assert.deepEqual(
        all?.map((event) => event.seq),
        expected,
      );
    });

    // better-sqlite3 runs every statement synchronously, so two SQLite stores in one process never
    // interleave their transactions: each runs from BEGIN to COMMIT before the other starts. A
    // transaction kept open across an await would make the other connection block the only thread
    // for the whole busy timeout. Concurrent SQLite writers therefore need separate processes.
    const inProcessOnly =
      backend.kind === "sqlite" ? "SQLite writers interleave only across processes" : false;

    test("two stores share one chain", { skip: inProcessOnly }, async () => {
      const location = await backend.create();
      const stores = [await open(location), await open(location)];
      const logs = stores.map((store) => new AuditLog(store, new WriteQueue(store), clock, log));
      // Alternating the two logs interleaves their transactions, as two broker processes would.
      await Promise.all(
        Array.from({ length: 200 }, (_, index) =>
          logs[index % 2]?.append({ kind: "test.appended", actor: `broker-${index % 2}`, data: { index } }),
        ),
      );
      const events = await readAuditEvents(stores[0] as Store);
      assert.deepEqual(
        events.map((event) => event.seq),
        Array.from({ length: 200 }, (_, index) => index + 1),
      );
      assert.equal(verifyChain(events).ok, true);
    });

    test("two stores append first event", { skip: inProcessOnly }, async () => {
      // The head row does not exist before the first event, so FOR UPDATE has no row to lock there.
      const location = await backend.create();
      const stores = [await open(location), await open(location)];
      const outcomes = await Promise.allSettled(
        stores.map((store, index) =>
          new AuditLog(store, new WriteQueue(store), clock, log).append({
            kind: "test.appended",
            actor: `broker-${index}`,
          }),
        ),
      );
      assert.deepEqual(
        outcomes.map((outcome) => outcome.status),
        ["fulfilled", "fulfilled"],
      );
      const events = await readAuditEvents(stores[0] as Store);
      assert.equal(verifyChain(events).ok, true);
    });

    test("two processes share one chain", async () => {
      const location = await backend.create();
      // The store is migrated here, so that the two processes do not race to create the tables.
      const store = await open(location);
      const perProcess = 150;
      const results = await Promise.all(
        ["broker-a", "broker-b"].map((actor) => runAppender(location, perProcess, actor)),
      );
      for (const result of results) {
        assert.deepEqual(result, { appended: perProcess, failed: 0, errors: [] });
      }
      const events = await readAuditEvents(store);
      assert.deepEqual(
        events.map((event) => event.seq),
        Array.from({ length: 2 * perProcess }, (_, index) => index + 1),
      );
      assert.equal(verifyChain(events).ok, true);
    });

    // SQLite assigns AUTOINCREMENT keys under its single write lock, so its revocations commit in
    // sequence order; PostgreSQL draws them from a sequence before commit, in any order.
    test("two stores share revocation order", { skip: inProcessOnly }, async () => {
      const location = await backend.create();
      const [storeA, storeB] = [await open(location), await open(location)];
      const feedA = new RevocationFeed(storeA, new WriteQueue(storeA), clock, log);
      const feedB = new RevocationFeed(storeB, new WriteQueue(storeB), clock, log);
      await feedA.start();
      await feedB.start();
      const seenByB: number[] = [];
      feedB.subscribe((event) => seenByB.push(event.seq));

      // Broker A inserts a revocation and keeps its transaction open while broker B publishes one.
      let release: () => void = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      let markInserted: () => void = () => {};
      const inserted = new Promise<void>((resolve) => (markInserted = resolve));
      const slow = storeA.transaction(async (trx) => {
        const seq = await feedA.insertWithin(trx, revocation("slow", startS + 600));
        markInserted();
        await held;
        return seq;
      });
      await inserted;
      const fast = feedB.publish(revocation("fast", startS + 600));
      await new Promise((resolve) => setTimeout(resolve, 200));
      release();
      const seqs = [await slow, await fast];
      await feedB.poll();

      assert.deepEqual(
        seenByB,
        [...seqs].sort((a, b) => a - b),
      );
    });
  });
}

/** Runs test/support/audit-appender.ts in a child process and returns its result line. */
async function runAppender(location: StoreLocation, count: number, actor: string): Promise<AppenderResult> {
  const { stdout } = await execFileAsync(
    process.execPath,
    ["--import", "tsx", appenderScript, JSON.stringify(location), String(count), actor],
    { encoding: "utf8" },
  );
  return JSON.parse(stdout) as AppenderResult;
}

let sqliteRoot = "";
let sqliteCount = 0;
storeSuite("sqlite store", {
  kind: "sqlite",
  async start() {
    sqliteRoot = await mkdtemp(join(tmpdir(), "writ-store-"));
  },
  async stop() {
    await rm(sqliteRoot, { recursive: true, force: true });
  },
  async create() {
    sqliteCount++;
    return { kind: "sqlite", file: join(sqliteRoot, `store-${sqliteCount}.db`) };
  },
});

let cluster: PostgresCluster | undefined;
let postgresCount = 0;
storeSuite("postgres store", {
  kind: "postgres",
  async start() {
    cluster = await startPostgres();
  },
  async stop() {
    await cluster?.stop();
  },
  async create() {
    if (cluster === undefined) throw new Error("the PostgreSQL cluster did not start");
    postgresCount++;
    return { kind: "postgres", url: await cluster.createDatabase(`store_${postgresCount}`) };
  },
});
