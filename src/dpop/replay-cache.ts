import type { Clock } from "../clock.js";
import { epochSeconds } from "../clock.js";
import type { Store } from "../store/store.js";
import type { WriteQueue } from "../store/write-queue.js";
import type { Transaction } from "kysely";
import type { Database } from "../store/schema.js";

/**
 * Remembers one-time identifiers (`jti` of DPoP proofs and client assertions) until they expire, so a
 * replay within their validity window is detected.
 */
export interface ReplayCache {
  /** Records `jti` in `scope`; resolves false when it was already recorded and has not expired. */
  remember(scope: string, jti: string, expiresAtS: number): Promise<boolean>;
}

/**
 * A replay cache in the store, shared by every broker process that uses the same database. The
 * primary key makes the check atomic: a second insert of the same identifier inserts nothing.
 */
export class StoreReplayCache implements ReplayCache {
  constructor(
    private readonly store: Store,
    private readonly queue: WriteQueue,
    private readonly clock: Clock,
  ) {}

  remember(scope: string, jti: string, expiresAtS: number): Promise<boolean> {
    return this.queue.write(async (trx) => {
      const result = await trx
        .insertInto("replay_jtis")
        .values({ scope, jti, expires_at_s: expiresAtS })
        .onConflict((conflict) => conflict.columns(["scope", "jti"]).doNothing())
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
    });
  }

  /** Deletes identifiers whose window has passed; returns how many were removed. */
  async purge(): Promise<number> {
    const result = await this.store.db
      .deleteFrom("replay_jtis")
      .where("expires_at_s", "<", epochSeconds(this.clock))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

/** The largest number of identifiers an in-memory cache holds before it rejects new ones. */
const maxMemoryEntries = 1_000_000;

/**
 * A replay cache in one process's memory, for a gateway: fast, but not shared between processes.
 * When full it fails closed, treating every new identifier as a replay, rather than forgetting one.
 */
export class MemoryReplayCache implements ReplayCache {
  private readonly entries = new Map<string, number>();

  constructor(private readonly clock: Clock) {}

  remember(scope: string, jti: string, expiresAtS: number): Promise<boolean> {
    const key = `${scope}\u0000${jti}`;
    const now = epochSeconds(this.clock);
    const known = this.entries.get(key);
    if (known !== undefined && known >= now) return Promise.resolve(false);
    if (this.entries.size >= maxMemoryEntries) this.purge();
    if (this.entries.size >= maxMemoryEntries) return Promise.resolve(false);
    this.entries.set(key, expiresAtS);
    return Promise.resolve(true);
  }

  purge(): void {
    const now = epochSeconds(this.clock);
    for (const [key, expiresAtS] of this.entries) if (expiresAtS < now) this.entries.delete(key);
  }
}

/**
 * A replay cache for one request whose writes join the request's final transaction: the identifiers
 * are inserted by `commitWithin` in the same transaction that records the request's outcome, so an
 * issuance costs one commit rather than three and no extra read. A replayed identifier, stored
 * earlier or by a concurrent request, is caught there by the primary key and rolls the whole
 * issuance back. Identifiers of a request that fails before committing are not spent.
 */
export class DeferredReplayCache implements ReplayCache {
  private readonly pending: { scope: string; jti: string; expiresAtS: number }[] = [];

  constructor(private readonly clock: Clock) {}

  /**
   * Records an identifier to be written with the request's outcome. A replay of one already stored is
   * caught there, by the primary key, before anything the request produced is committed.
   */
  remember(scope: string, jti: string, expiresAtS: number): Promise<boolean> {
    if (this.pending.some((entry) => entry.scope === scope && entry.jti === jti))
      return Promise.resolve(false);
    this.pending.push({ scope, jti, expiresAtS });
    return Promise.resolve(true);
  }

  /** Inserts the remembered identifiers; throws `replayed(scope)` for one another request inserted first. */
  async commitWithin(trx: Transaction<Database>, replayed: (scope: string) => Error): Promise<void> {
    for (const entry of this.pending) {
      // An expired row of the same identifier may linger until the next purge; it is replaced.
      const result = await trx
        .insertInto("replay_jtis")
        .values({ scope: entry.scope, jti: entry.jti, expires_at_s: entry.expiresAtS })
        .onConflict((conflict) =>
          conflict
            .columns(["scope", "jti"])
            .doUpdateSet({ expires_at_s: entry.expiresAtS })
            .where("replay_jtis.expires_at_s", "<", epochSeconds(this.clock)),
        )
        .executeTakeFirst();
      if (Number(result.numInsertedOrUpdatedRows ?? 0n) !== 1) throw replayed(entry.scope);
    }
  }
}
