import type { Clock } from "../clock.js";
import { epochSeconds } from "../clock.js";
import type { Store } from "../store/store.js";
import type { WriteQueue } from "../store/write-queue.js";

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
