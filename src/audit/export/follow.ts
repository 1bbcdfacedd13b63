import { setTimeout as sleep } from "node:timers/promises";
import type { Store } from "../../store/store.js";
import type { AuditRecord } from "../chain.js";
import { readAuditEvents } from "../read.js";

/** Interval between two reads of the store while a follower is caught up. */
export const followPollIntervalMs = 500;

/** The maximum number of events one read of the store returns. */
const batchSize = 1000;

export interface FollowOptions {
  /** Start after this sequence number; 0 starts at the first event. */
  afterSeq: number;
  /** Keep reading new events once caught up, until `signal` aborts; otherwise stop at the head. */
  follow: boolean;
  signal?: AbortSignal;
  pollIntervalMs?: number;
}

/**
 * Reads audit events in sequence order, in batches, after `afterSeq`; in follow mode it then polls
 * for events committed later. No event is skipped: an event's sequence number is taken under the lock
 * of the chain's head, and its transaction holds that lock until it commits. Events therefore become
 * visible in sequence order, and a read after sequence number N never misses an event below a later
 * one. No event is repeated either, because each read starts after the last sequence number yielded.
 */
export async function* auditEventBatches(
  store: Store,
  options: FollowOptions,
): AsyncGenerator<AuditRecord[]> {
  let last = options.afterSeq;
  while (options.signal?.aborted !== true) {
    const batch = await readAuditEvents(store, { after: last, limit: batchSize });
    const newest = batch.at(-1);
    if (newest !== undefined) {
      last = newest.seq;
      yield batch;
      continue;
    }
    if (!options.follow) return;
    try {
      await sleep(options.pollIntervalMs ?? followPollIntervalMs, undefined, { signal: options.signal });
    } catch (error) {
      if ((error as Error).name === "AbortError") return;
      throw error;
    }
  }
}
