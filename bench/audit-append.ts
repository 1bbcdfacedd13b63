/**
 * `audit_append`: audit events per second through AuditLog (hash chain, SQLite with WAL and
 * synchronous=FULL, group commit through the write queue), against plain inserts of the same rows
 * into a table of the same shape in the same run, through the same write queue and durability.
 * WRIT_BENCH_AUDIT_EVENTS events (default 50,000) are written by WRIT_BENCH_AUDIT_APPENDERS
 * concurrent appenders (default 256), each awaiting its own write before the next. The two runs
 * alternate WRIT_BENCH_AUDIT_ROUNDS times (default 3) on fresh stores, and the best round of each
 * counts. Both insert each group commit's rows in multi-row statements just before the commit, so
 * the ratio is the cost of the chain (sequence, canonical JSON, SHA-256, head row) alone.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { AuditLog, type AuditInput } from "../src/audit/log.js";
import { genesisHash, hashRecord } from "../src/audit/chain.js";
import { systemClock } from "../src/clock.js";
import { silentLogger } from "../src/log/logger.js";
import type { Transaction } from "kysely";
import type { Database } from "../src/store/schema.js";
import { Store } from "../src/store/store.js";
import { WriteQueue } from "../src/store/write-queue.js";
import type { Metric, MetricResult } from "./lib/metric.js";
import { positiveIntegerSetting } from "./lib/settings.js";
import { roundSignificant } from "./lib/stats.js";

/** Returns a gateway decision event of typical size, as the tool route records one. */
function decisionEvent(index: number): AuditInput {
  return {
    kind: "tool_call.allowed",
    actor: "spiffe://example.org/agent/bench-bot",
    task_id: "0b9c5a54-1f7e-4d0b-9a55-6c1f3f0e2b71",
    jti: randomUUID(),
    data: {
      decision_id: randomUUID(),
      decision: "allow",
      reason: "permitted by policy",
      initiator: "spiffe://example.org/human/4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
      sub: "spiffe://example.org/agent/bench-bot",
      actors: [],
      tool: "github",
      action: "read",
      method: "GET",
      path: `/repos/example/writ/issues/${index}`,
      policies: ["writ.base.allow-granted-actions"],
      errors: [],
      risk_score: 0.1,
      jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
      via: null,
      breakglass_id: null,
      approval_id: null,
    },
  };
}

/** Runs `count` writes from `appenders` concurrent loops and returns the seconds it took. */
async function timedWrites(
  count: number,
  appenders: number,
  write: (index: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const loop = async (): Promise<void> => {
    while (next < count) {
      const index = next++;
      await write(index);
    }
  };
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: appenders }, loop));
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function withStore<T>(
  folder: string,
  name: string,
  work: (store: Store, queue: WriteQueue) => Promise<T>,
): Promise<T> {
  const store = await Store.open({ kind: "sqlite", file: join(folder, `${name}.db`) });
  try {
    return await work(store, new WriteQueue(store));
  } finally {
    await store.close();
  }
}

/** Appends `events` through AuditLog. */
function auditRun(folder: string, round: number, events: AuditInput[], appenders: number): Promise<number> {
  return withStore(folder, `audit-${round}`, async (store, queue) => {
    const audit = new AuditLog(store, queue, systemClock, silentLogger());
    const seconds = await timedWrites(events.length, appenders, (index) =>
      audit.append(events[index] as AuditInput),
    );
    const head = await store.db.selectFrom("audit_head").select("seq").executeTakeFirst();
    if (head?.seq !== events.length)
      throw new Error(`audit head is at ${String(head?.seq)}, not ${events.length}`);
    return seconds;
  });
}

/**
 * Inserts the same events as finished rows into `audit_events`, with sequence numbers and hashes
 * computed before the clock starts, so that only the insert and its commit are timed.
 */
function plainRun(folder: string, round: number, events: AuditInput[], appenders: number): Promise<number> {
  const rows = events.map((event, index) => {
    const unhashed = {
      seq: index + 1,
      time: Date.now(),
      kind: event.kind,
      actor: event.actor,
      task_id: event.task_id ?? null,
      jti: event.jti ?? null,
      data: event.data ?? {},
      prev_hash: genesisHash,
      chain_version: 1,
    };
    return { ...unhashed, data: JSON.stringify(unhashed.data), hash: hashRecord(unhashed) };
  });
  return withStore(folder, `plain-${round}`, (_store, queue) => {
    // The same batching as the audit log: the rows of one group commit go in as multi-row
    // statements of at most 500 rows, just before the commit.
    const pending = new WeakMap<Transaction<Database>, (typeof rows)[number][]>();
    return timedWrites(rows.length, appenders, (index) =>
      queue.write(async (trx) => {
        let batch = pending.get(trx);
        if (batch === undefined) {
          const created: (typeof rows)[number][] = [];
          batch = created;
          pending.set(trx, created);
          queue.beforeCommit(trx, async () => {
            for (let start = 0; start < created.length; start += 500)
              await trx
                .insertInto("audit_events")
                .values(created.slice(start, start + 500))
                .execute();
          });
        }
        batch.push(rows[index]!);
      }),
    );
  });
}

export const auditAppend: Metric = {
  name: "audit_append",
  summary: "audit appends per second with the hash chain and synchronous=FULL, against plain inserts",
  async run(): Promise<MetricResult> {
    const count = positiveIntegerSetting("WRIT_BENCH_AUDIT_EVENTS", 50_000);
    const appenders = positiveIntegerSetting("WRIT_BENCH_AUDIT_APPENDERS", 256);
    const rounds = positiveIntegerSetting("WRIT_BENCH_AUDIT_ROUNDS", 3);
    const folder = await mkdtemp(join(tmpdir(), "writ-bench-audit-"));
    try {
      const events = Array.from({ length: count }, (_, index) => decisionEvent(index));
      let auditSeconds = Number.POSITIVE_INFINITY;
      let plainSeconds = Number.POSITIVE_INFINITY;
      for (let round = 0; round < rounds; round++) {
        plainSeconds = Math.min(plainSeconds, await plainRun(folder, round, events, appenders));
        auditSeconds = Math.min(auditSeconds, await auditRun(folder, round, events, appenders));
      }
      const auditRate = roundSignificant(count / auditSeconds);
      const plainRate = roundSignificant(count / plainSeconds);
      return {
        name: "audit_append",
        value: auditRate,
        unit: "events/s",
        baseline: { name: "plain inserts of the same rows", value: plainRate, unit: "rows/s" },
        ratio: roundSignificant(auditRate / plainRate),
        target: "ratio >= 0.5 and > 20,000 events/s",
        notes:
          `${count} events, ${appenders} concurrent appenders, best of ${rounds} rounds; SQLite WAL, ` +
          "synchronous=FULL, group commit; both insert each commit's rows in multi-row statements",
        details: {
          events: count,
          appenders,
          rounds,
          audit_seconds: auditSeconds,
          plain_seconds: plainSeconds,
        },
      };
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  },
};
