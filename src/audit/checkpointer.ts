import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { logFields } from "../log/fields.js";
import type { Store } from "../store/store.js";
import type { WriteQueue } from "../store/write-queue.js";
import type { AuditKey } from "./audit-key.js";
import { signCheckpoint, type Checkpoint } from "./checkpoint.js";
import type { CheckpointSink } from "./sinks/sink.js";

export interface CheckpointerOptions {
  store: Store;
  queue: WriteQueue;
  key: AuditKey;
  issuer: string;
  clock: Clock;
  log: Logger;
  sinks: CheckpointSink[];
}

/**
 * Signs the audit chain's head at an interval and on demand, stores each checkpoint in
 * `audit_checkpoints`, and copies it to every sink. A head already signed is not signed again, so an
 * idle log adds no checkpoints. One checkpoint is made at a time.
 */
export class AuditCheckpointer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<Checkpoint | undefined> | undefined;
  private lastSeq: number | undefined;

  constructor(private readonly options: CheckpointerOptions) {}

  /** Starts signing every `intervalMs` milliseconds. */
  start(intervalMs: number): void {
    this.timer ??= setInterval(() => {
      this.checkpoint().catch((error: unknown) =>
        this.options.log.error({ err: error }, "audit checkpoint failed; retrying at the next interval"),
      );
    }, intervalMs);
    this.timer.unref();
  }

  /** Stops the timer, signs the final head once every queued write has committed, and closes the sinks. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    try {
      await this.options.queue.drain();
      // A checkpoint the timer started may have read an older head, so the final one starts after it.
      await this.running?.catch(() => undefined);
      await this.checkpoint();
    } catch (error) {
      this.options.log.error({ err: error }, "final audit checkpoint failed");
    }
    await Promise.all(this.options.sinks.map((sink) => sink.close()));
  }

  /**
   * Signs the current head unless it is already signed, stores the checkpoint, then delivers it to the
   * sinks. Resolves with the new checkpoint, or undefined when there was nothing new to sign. A sink
   * that fails is logged and does not fail the checkpoint, because the stored one still counts.
   */
  checkpoint(): Promise<Checkpoint | undefined> {
    this.running ??= this.signHead().finally(() => (this.running = undefined));
    return this.running;
  }

  private async signHead(): Promise<Checkpoint | undefined> {
    const { store, queue, key, issuer, clock, log, sinks } = this.options;
    this.lastSeq ??= await latestCheckpointSeq(store);
    const head = await store.db
      .selectFrom("audit_head")
      .select(["seq", "hash"])
      .where("id", "=", 1)
      .executeTakeFirst();
    if (head === undefined || head.seq === 0 || head.seq <= this.lastSeq) return undefined;

    const checkpoint = await signCheckpoint(key, issuer, head, clock.nowMs());
    await queue.write((trx) =>
      trx
        .insertInto("audit_checkpoints")
        .values(checkpoint)
        .onConflict((conflict) => conflict.column("seq").doNothing())
        .execute(),
    );
    this.lastSeq = checkpoint.seq;
    log.info({ [logFields.auditSeq]: checkpoint.seq }, "audit checkpoint signed");

    await Promise.all(
      sinks.map((sink) =>
        sink
          .write(checkpoint)
          .catch((error: unknown) =>
            log.error(
              { err: error, [logFields.auditSeq]: checkpoint.seq, sink: sink.name },
              "audit checkpoint delivery failed; the next checkpoint covers it",
            ),
          ),
      ),
    );
    return checkpoint;
  }
}

async function latestCheckpointSeq(store: Store): Promise<number> {
  const row = await store.db
    .selectFrom("audit_checkpoints")
    .select((eb) => eb.fn.max("seq").as("seq"))
    .executeTakeFirst();
  return Number(row?.seq ?? 0);
}

/** Reads every stored checkpoint in sequence order. */
export async function readStoredCheckpoints(store: Store): Promise<Checkpoint[]> {
  const rows = await store.db.selectFrom("audit_checkpoints").selectAll().orderBy("seq").execute();
  return rows.map((row) => ({ seq: Number(row.seq), hash: row.hash, time: Number(row.time), jws: row.jws }));
}
