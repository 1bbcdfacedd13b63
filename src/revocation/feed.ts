import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { epochSeconds, type Clock } from "../clock.js";
import type { RevocationsTable } from "../store/schema.js";
import type { Store } from "../store/store.js";
import type { WriteQueue } from "../store/write-queue.js";
import { sql, type Transaction } from "kysely";
import type { Database } from "../store/schema.js";

/** One revocation as the feed sends it: everything it revoked, by id. */
export interface RevocationEvent {
  seq: number;
  /** Milliseconds since the Unix epoch. */
  created_at: number;
  reason: string;
  task_ids: string[];
  agent_ids: string[];
  jtis: string[];
  /** After this time (epoch seconds) no token named by the event can still be valid. */
  expires_at_s: number;
}

export type NewRevocation = Omit<RevocationEvent, "seq" | "created_at">;

/** How long a revocation is kept after its tokens expired, so that resuming followers still see it. */
const retentionAfterExpirySeconds = 24 * 3600;

/**
 * The revocation feed. Revocations are rows in the store, so every broker process over the same
 * database publishes the same sequence; each process polls for rows written by its peers and emits
 * them, in order, to its followers.
 */
export class RevocationFeed {
  private readonly emitter = new EventEmitter();
  private lastSeq = 0;

  constructor(
    private readonly store: Store,
    private readonly queue: WriteQueue,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.emitter.setMaxListeners(0);
  }

  /** Reads the newest sequence number, so that only later revocations are emitted as new. */
  async start(): Promise<void> {
    const row = await this.store.db
      .selectFrom("revocations")
      .select((eb) => eb.fn.max("seq").as("max"))
      .executeTakeFirst();
    this.lastSeq = Number(row?.max ?? 0);
  }

  /** Inserts a revocation within `trx` and returns its sequence number; call `poll` after commit. */
  async insertWithin(trx: Transaction<Database>, revocation: NewRevocation): Promise<number> {
    if (this.store.dialect === "postgres") {
      // A sequence hands out numbers before commit, so a peer could commit seq n+1 before seq n. A
      // poll in between would then move past n and never emit it. Held until commit, this lock makes
      // commit order equal seq order, and plain reads do not wait for it.
      // NOTE: a batch that also appends audit events can deadlock with a peer's batch that takes the
      // head row first; PostgreSQL then aborts one, and the write queue retries its writes one by one.
      await sql`lock table revocations in share row exclusive mode`.execute(trx);
    }
    const row = await trx
      .insertInto("revocations")
      .values({
        created_at: this.clock.nowMs(),
        reason: revocation.reason,
        task_ids: JSON.stringify(revocation.task_ids),
        agent_ids: JSON.stringify(revocation.agent_ids),
        jtis: JSON.stringify(revocation.jtis),
        expires_at_s: revocation.expires_at_s,
      })
      .returning("seq")
      .executeTakeFirstOrThrow();
    return Number(row.seq);
  }

  /** Publishes a revocation on its own and emits it once durable. */
  async publish(revocation: NewRevocation): Promise<number> {
    const seq = await this.queue.write((trx) => this.insertWithin(trx, revocation));
    await this.poll();
    return seq;
  }

  /** Emits every revocation newer than the last one emitted, including those of peer processes. */
  async poll(): Promise<void> {
    const rows = await this.store.db
      .selectFrom("revocations")
      .selectAll()
      .where("seq", ">", this.lastSeq)
      .orderBy("seq")
      .execute();
    for (const row of rows) {
      if (row.seq <= this.lastSeq) continue;
      this.lastSeq = row.seq;
      this.emitter.emit("revocation", fromRow(row));
    }
    this.emitter.emit("poll");
  }

  /** Calls `listener` after every successful poll of the store; returns the function that stops it. */
  onPoll(listener: () => void): () => void {
    this.emitter.on("poll", listener);
    return () => this.emitter.off("poll", listener);
  }

  /** Calls `listener` for every revocation emitted from now on; returns the function that stops it. */
  subscribe(listener: (event: RevocationEvent) => void): () => void {
    this.emitter.on("revocation", listener);
    return () => this.emitter.off("revocation", listener);
  }

  /** Returns the newest sequence number emitted. */
  cursor(): number {
    return this.lastSeq;
  }

  /** Returns every revocation whose tokens may still be unexpired, oldest first. */
  async snapshot(): Promise<RevocationEvent[]> {
    const rows = await this.store.db
      .selectFrom("revocations")
      .selectAll()
      .where("expires_at_s", ">=", epochSeconds(this.clock))
      .orderBy("seq")
      .execute();
    return rows.map(fromRow);
  }

  /**
   * Returns the revocations after `cursor`, or undefined when the cursor is unknown or its revocation
   * was already purged, in which case the follower needs a snapshot.
   */
  async since(cursor: number): Promise<RevocationEvent[] | undefined> {
    if (cursor > this.lastSeq) return undefined;
    if (cursor > 0) {
      const known = await this.store.db
        .selectFrom("revocations")
        .select("seq")
        .where("seq", "=", cursor)
        .executeTakeFirst();
      if (known === undefined) return undefined;
    }
    const rows = await this.store.db
      .selectFrom("revocations")
      .selectAll()
      .where("seq", ">", cursor)
      .where("seq", "<=", this.lastSeq)
      .orderBy("seq")
      .execute();
    return rows.map(fromRow);
  }

  /** Deletes revocations whose tokens expired more than the retention period ago. */
  async purge(): Promise<void> {
    const horizon = epochSeconds(this.clock) - retentionAfterExpirySeconds;
    const result = await this.store.db
      .deleteFrom("revocations")
      .where("expires_at_s", "<", horizon)
      .executeTakeFirst();
    const deleted = Number(result.numDeletedRows);
    if (deleted > 0) this.log.info({ deleted }, "purged expired revocations");
  }
}

function fromRow(row: Omit<RevocationsTable, "seq"> & { seq: number }): RevocationEvent {
  return {
    seq: row.seq,
    created_at: row.created_at,
    reason: row.reason,
    task_ids: JSON.parse(row.task_ids) as string[],
    agent_ids: JSON.parse(row.agent_ids) as string[],
    jtis: JSON.parse(row.jtis) as string[],
    expires_at_s: row.expires_at_s,
  };
}
