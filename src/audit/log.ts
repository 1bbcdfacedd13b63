import type { Transaction } from "kysely";
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { logFields } from "../log/fields.js";
import type { Database } from "../store/schema.js";
import type { Store } from "../store/store.js";
import type { WriteQueue } from "../store/write-queue.js";
import { chainVersion, genesisHash, hashRecord, type AuditRecord } from "./chain.js";

/** What a caller states about an event; the log adds the sequence number, time and hashes. */
export interface AuditInput {
  /** Noun plus past tense, such as `token.issued` or `task.ended`. */
  kind: string;
  /** The SPIFFE ID of the one identity that acted, or `writ` for the broker's own timers. */
  actor: string;
  task_id?: string | null;
  jti?: string | null;
  data?: Record<string, unknown>;
}

/** Delay before the first retry of an event that must be recorded, doubling up to the maximum. */
const retryInitialDelayMs = 100;
const retryMaxDelayMs = 10_000;

/**
 * The append-only, hash-chained audit log. Appends are group-committed with the other writes of the
 * same turn of the event loop, and resolve only once their event is durable.
 */
export class AuditLog {
  /** The chain head each open transaction has written, keyed by the transaction. */
  private readonly heads = new WeakMap<Transaction<Database>, { seq: number; hash: string }>();

  constructor(
    private readonly store: Store,
    private readonly queue: WriteQueue,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * Appends one event, together with `alongside` (writes that must commit in the same transaction,
   * such as the token row of an issued token). Rejects when the store failed; the caller then denies.
   */
  append(input: AuditInput, alongside?: (trx: Transaction<Database>) => Promise<void>): Promise<AuditRecord> {
    return this.queue.write(async (trx) => {
      if (alongside !== undefined) await alongside(trx);
      return this.appendWithin(trx, input);
    });
  }

  /**
   * Appends an event whose effect has already happened (a revocation, a task end): it is retried with
   * backoff until it is written, and every failure is logged at error level.
   */
  appendEventually(input: AuditInput): void {
    const attempt = (delayMs: number): void => {
      this.append(input).catch((error: unknown) => {
        this.log.error(
          {
            err: error,
            [logFields.auditKind]: input.kind,
            [logFields.taskId]: input.task_id,
            retry_in_ms: delayMs,
          },
          "audit append failed; retrying",
        );
        setTimeout(() => attempt(Math.min(delayMs * 2, retryMaxDelayMs)), delayMs).unref();
      });
    };
    attempt(retryInitialDelayMs);
  }

  /** Appends within a transaction the caller already holds. */
  async appendWithin(trx: Transaction<Database>, input: AuditInput): Promise<AuditRecord> {
    // The head stays locked until the transaction ends, so later events of the same transaction
    // continue from the head this one leaves instead of reading it again.
    let head = this.heads.get(trx) ?? (await this.lockHead(trx));
    if (head === undefined && this.store.dialect === "postgres") {
      // FOR UPDATE locks nothing while the head row is missing, so two processes appending the first
      // event would both take seq 1. Creating the row at seq 0 (or waiting for a peer's) gives the
      // lock a row to hold.
      await trx
        .insertInto("audit_head")
        .values({ id: 1, seq: 0, hash: genesisHash })
        .onConflict((conflict) => conflict.column("id").doNothing())
        .execute();
      head = await this.lockHead(trx);
    }

    const unhashed = {
      seq: (head?.seq ?? 0) + 1,
      time: this.clock.nowMs(),
      kind: input.kind,
      actor: input.actor,
      task_id: input.task_id ?? null,
      jti: input.jti ?? null,
      data: input.data ?? {},
      prev_hash: head?.hash ?? genesisHash,
      chain_version: chainVersion,
    };
    const record: AuditRecord = { ...unhashed, hash: hashRecord(unhashed) };

    await trx
      .insertInto("audit_events")
      .values({ ...record, data: JSON.stringify(record.data) })
      .execute();
    if (head === undefined) {
      await trx.insertInto("audit_head").values({ id: 1, seq: record.seq, hash: record.hash }).execute();
    } else {
      await trx
        .updateTable("audit_head")
        .set({ seq: record.seq, hash: record.hash })
        .where("id", "=", 1)
        .execute();
    }
    this.heads.set(trx, { seq: record.seq, hash: record.hash });
    return record;
  }

  /** Reads the chain's head; on PostgreSQL it also locks the row until the transaction ends. */
  private lockHead(trx: Transaction<Database>): Promise<{ seq: number; hash: string } | undefined> {
    let headQuery = trx.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1);
    if (this.store.dialect === "postgres") headQuery = headQuery.forUpdate();
    return headQuery.executeTakeFirst();
  }
}
