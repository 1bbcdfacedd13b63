import type { Transaction } from "kysely";
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { logFields } from "../log/fields.js";
import type { Database } from "../store/schema.js";
import type { Store } from "../store/store.js";
import type { WriteQueue } from "../store/write-queue.js";
import { canonicalJson, chainVersion, genesisHash, hashRecordWithData, type AuditRecord } from "./chain.js";

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
 * Events per INSERT statement when a batch is flushed; 10 columns each keeps a statement far below
 * SQLite's limit of 32,766 bound parameters and PostgreSQL's of 65,535.
 */
const rowsPerInsert = 500;

/** The state of one open transaction: its chain head, and its events not yet inserted. */
interface TransactionState {
  head: { seq: number; hash: string } | undefined;
  /** Whether the head row did not exist when the transaction began, so the flush inserts it. */
  insertHead: boolean;
  /** Events as stored: `data` is its canonical JSON text. */
  pending: Array<Omit<AuditRecord, "data"> & { data: string }>;
  /** Whether the write queue flushes the events before the commit, instead of each append. */
  deferred: boolean;
}

/** Failed attempts of one event after which `onRepeatedFailure` is called, once for that event. */
export const auditFailuresBeforeAlert = 3;

/** Called when an event whose effect already happened has failed to be written several times. */
export type RepeatedFailureHandler = (input: AuditInput, failures: number, error: unknown) => void;

/**
 * The append-only, hash-chained audit log. Appends are group-committed with the other writes of the
 * same turn of the event loop, and resolve only once their event is durable.
 */
export class AuditLog {
  /** The chain head and unwritten events of each open transaction, keyed by the transaction. */
  private readonly transactions = new WeakMap<Transaction<Database>, TransactionState>();

  /** Raises an alert about an event that keeps failing; the broker sets it to send a signed alert. */
  onRepeatedFailure: RepeatedFailureHandler | undefined;

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
   * backoff until it is written, and every failure is logged at error level. After
   * `auditFailuresBeforeAlert` failures of one event, `onRepeatedFailure` is called once for it.
   *
   * NOTE: retries live in this process only. An event still failing when the process exits is lost,
   * while its effect (such as the revocation row) is already durable.
   */
  appendEventually(input: AuditInput): void {
    let failures = 0;
    const attempt = (delayMs: number): void => {
      this.append(input).then(
        (record) => {
          if (failures > 0) {
            this.log.info(
              { [logFields.auditKind]: input.kind, [logFields.auditSeq]: record.seq, failures },
              "audit append succeeded after retries",
            );
          }
        },
        (error: unknown) => {
          failures++;
          this.log.error(
            {
              err: error,
              [logFields.auditKind]: input.kind,
              [logFields.taskId]: input.task_id,
              failures,
              retry_in_ms: delayMs,
            },
            "audit append failed; retrying",
          );
          if (failures === auditFailuresBeforeAlert) this.onRepeatedFailure?.(input, failures, error);
          setTimeout(() => attempt(Math.min(delayMs * 2, retryMaxDelayMs)), delayMs).unref();
        },
      );
    };
    attempt(retryInitialDelayMs);
  }

  /** Appends within a transaction the caller already holds. */
  async appendWithin(trx: Transaction<Database>, input: AuditInput): Promise<AuditRecord> {
    // The head stays locked until the transaction ends, so later events of the same transaction
    // continue from the head this one leaves instead of reading it again.
    let head = this.transactions.get(trx)?.head ?? (await this.lockHead(trx));
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

    const seq = (head?.seq ?? 0) + 1;
    const time = this.clock.nowMs();
    const taskId = input.task_id ?? null;
    const jti = input.jti ?? null;
    const data = input.data ?? {};
    const prevHash = head?.hash ?? genesisHash;
    // The canonical text of `data` is hashed and stored, so it is computed once.
    const dataText = canonicalJson(data);
    const hash = hashRecordWithData(
      {
        seq,
        time,
        kind: input.kind,
        actor: input.actor,
        task_id: taskId,
        jti,
        prev_hash: prevHash,
        chain_version: chainVersion,
      },
      dataText,
    );

    let state = this.transactions.get(trx);
    if (state === undefined) {
      state = { head, insertHead: head === undefined, pending: [], deferred: false };
      this.transactions.set(trx, state);
      // In a transaction the write queue runs, the batch's events are inserted and the head row
      // written once, after the batch's last write and before the commit. Elsewhere each event is
      // written at once.
      const current = state;
      state.deferred = this.queue.beforeCommit(trx, () => this.flush(trx, current));
    }
    state.head = { seq, hash };
    state.pending.push({
      seq,
      time,
      kind: input.kind,
      actor: input.actor,
      task_id: taskId,
      jti,
      data: dataText,
      prev_hash: prevHash,
      hash,
      chain_version: chainVersion,
    });
    if (!state.deferred) await this.flush(trx, state);
    return {
      seq,
      time,
      kind: input.kind,
      actor: input.actor,
      task_id: taskId,
      jti,
      data,
      prev_hash: prevHash,
      hash,
      chain_version: chainVersion,
    };
  }

  /** Inserts the pending events of a transaction and moves the head row to its latest event. */
  private async flush(trx: Transaction<Database>, state: TransactionState): Promise<void> {
    const rows = state.pending;
    state.pending = [];
    for (let start = 0; start < rows.length; start += rowsPerInsert) {
      await trx
        .insertInto("audit_events")
        .values(rows.slice(start, start + rowsPerInsert))
        .execute();
    }
    if (state.head === undefined) return;
    if (state.insertHead) {
      await trx
        .insertInto("audit_head")
        .values({ id: 1, ...state.head })
        .execute();
      state.insertHead = false;
      return;
    }
    await trx.updateTable("audit_head").set(state.head).where("id", "=", 1).execute();
  }

  /** Reads the chain's head; on PostgreSQL it also locks the row until the transaction ends. */
  private lockHead(trx: Transaction<Database>): Promise<{ seq: number; hash: string } | undefined> {
    let headQuery = trx.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1);
    if (this.store.dialect === "postgres") headQuery = headQuery.forUpdate();
    return headQuery.executeTakeFirst();
  }
}
