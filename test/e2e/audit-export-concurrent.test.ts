import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { exportLines } from "../../src/audit/export/export-lines.js";
import type { Store } from "../../src/store/store.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { startPostgres, type PostgresCluster } from "../support/postgres.js";
import { ocsfValidators } from "./audit-export-support.js";

/** Secrets written at once by parallel admin requests, each one `secret.created` event. */
const parallelWrites = 80;
/** How often the followers below read the store, shorter than the default to keep the test quick. */
const pollIntervalMs = 20;
/** Every exported event is also checked against its OCSF class schema, on each dialect. */
const validators = ocsfValidators();

/** Reads the newest sequence number straight from the store. */
async function headSeq(store: Store): Promise<number> {
  const row = await store.db
    .selectFrom("audit_events")
    .select((eb) => eb.fn.max("seq").as("seq"))
    .executeTakeFirst();
  return Number(row?.seq ?? 0);
}

/** A follower running in the background, as `writ audit export --follow` runs. */
interface Follower {
  /** The sequence numbers received so far, in order. */
  seqs: number[];
  /** Stops the follower as an interrupt does, and returns every sequence number it received. */
  stop(): Promise<number[]>;
}

function startFollower(store: Store, afterSeq: number): Follower {
  const abort = new AbortController();
  const seqs: number[] = [];
  const running = (async () => {
    for await (const line of exportLines(store, {
      format: "ocsf",
      afterSeq,
      follow: true,
      signal: abort.signal,
      pollIntervalMs,
      auditJwks: { keys: [] },
    })) {
      const event = JSON.parse(line) as { class_uid: number; metadata: { sequence: number } };
      const validate = validators.get(event.class_uid);
      assert.ok(validate?.(event), `event ${event.metadata.sequence}: ${JSON.stringify(validate?.errors)}`);
      seqs.push(event.metadata.sequence);
    }
  })();
  return {
    seqs,
    async stop() {
      abort.abort();
      await running;
      return seqs;
    },
  };
}

/** Waits until `condition` holds, failing with `what` when it does not within 30 s. */
async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    assert.ok(Date.now() - started < 30_000, `timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
}

/**
 * Runs a follower while many requests append at once, stops it part way, restarts it after the last
 * event it received, and checks that the two runs together hold every event once, in order.
 */
function followUnderLoad(brokerOf: () => TestBroker): void {
  test("restarted follower under parallel appends", async () => {
    const broker = brokerOf();
    const store = broker.server.broker.context.store;
    const startHead = await headSeq(store);
    const writes = Promise.all(
      Array.from({ length: parallelWrites }, (_, i) =>
        broker.admin.call("POST", `/v1/secrets/load-${i}`, { value: `value-${i}` }),
      ),
    );

    const first = startFollower(store, 0);
    await until(
      () => (first.seqs.at(-1) ?? 0) >= startHead + parallelWrites / 4,
      "the first follower read a quarter of the writes",
    );
    const firstSeqs = await first.stop();

    const second = startFollower(store, firstSeqs.at(-1) ?? 0);
    await writes;
    const head = await headSeq(store);
    await until(() => (second.seqs.at(-1) ?? 0) >= head, "the second follower reached the head");
    const secondSeqs = await second.stop();

    assert.deepEqual(
      [...firstSeqs, ...secondSeqs],
      Array.from({ length: head }, (_, i) => i + 1),
    );
  });
}

describe("audit export under load", () => {
  describe("on SQLite", () => {
    let broker: TestBroker;
    before(async () => {
      broker = await startTestBroker();
    });
    after(async () => {
      await broker.close();
    });
    followUnderLoad(() => broker);
  });

  describe("on PostgreSQL", () => {
    let cluster: PostgresCluster;
    let broker: TestBroker;
    before(async () => {
      cluster = await startPostgres();
      broker = await startTestBroker({ postgresUrl: await cluster.createDatabase("writ_export") });
    });
    after(async () => {
      await broker?.close();
      await cluster?.stop();
    });
    followUnderLoad(() => broker);
  });
});
