import type { Transaction } from "kysely";
import type { Database } from "./schema.js";
import type { Store } from "./store.js";

type Work<T> = (trx: Transaction<Database>) => Promise<T>;

interface Pending {
  work: Work<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** The largest number of writes committed in one transaction. */
const maxBatchSize = 512;

/**
 * Group commit: writes queued during one turn of the event loop are committed in one transaction, so
 * that many concurrent requests share one durable sync. Each write resolves only after its
 * transaction committed. When a batch fails, its writes are retried one by one so that one bad write
 * fails alone and the others still commit.
 */
export class WriteQueue {
  private pending: Pending[] = [];
  private scheduled = false;
  private running: Promise<void> = Promise.resolve();
  /** Work to run at the end of each open transaction, after its last write and before its commit. */
  private readonly finishers = new WeakMap<Transaction<Database>, Array<() => Promise<void>>>();

  constructor(private readonly store: Store) {}

  /** Queues `work` and resolves with its result once the transaction that ran it has committed. */
  write<T>(work: Work<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.running = this.running.then(() => this.flush());
        });
      }
    });
  }

  /**
   * Runs `finish` in `trx` after the last write of its batch and before the commit, so that state
   * several writes of one batch change, such as the audit chain's head, is written once. Returns false,
   * and registers nothing, when `trx` is not a transaction of this queue.
   */
  beforeCommit(trx: Transaction<Database>, finish: () => Promise<void>): boolean {
    const list = this.finishers.get(trx);
    if (list === undefined) return false;
    list.push(finish);
    return true;
  }

  /** Resolves once every write queued so far has been committed or has failed. */
  async drain(): Promise<void> {
    while (this.pending.length > 0 || this.scheduled) {
      await new Promise((resolve) => setImmediate(resolve));
      await this.running;
    }
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, maxBatchSize);
      await this.commit(batch);
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    const results: unknown[] = [];
    try {
      await this.store.transaction(async (trx) => {
        results.length = 0;
        const finish: Array<() => Promise<void>> = [];
        this.finishers.set(trx, finish);
        for (const entry of batch) results.push(await entry.work(trx));
        for (const step of finish) await step();
      });
    } catch (error) {
      if (batch.length === 1) {
        batch[0]?.reject(error);
        return;
      }
      for (const entry of batch) await this.commit([entry]);
      return;
    }
    batch.forEach((entry, index) => entry.resolve(results[index]));
  }
}
