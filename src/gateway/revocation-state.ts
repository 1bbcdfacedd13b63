import { epochSeconds, type Clock } from "../clock.js";
import type { RevocationEvent } from "../revocation/feed.js";

/** What a token is checked against: its id, task, subject, actors and issue time. */
export interface RevocationSubject {
  jti: string;
  task_id?: string | undefined;
  /** `sub` and every `act.sub` of the token. */
  identities: string[];
  /** The token's `iat`, epoch seconds. */
  iat: number;
}

/**
 * A gateway's view of revocations, built from the broker's feed: a snapshot first, then events.
 * Until it has loaded a snapshot, and whenever it has heard neither event nor heartbeat for longer
 * than the silence bound, it reports itself stale and the gateway denies every request.
 */
export class RevocationState {
  private readonly jtis = new Map<string, number>();
  private readonly tasks = new Map<string, number>();
  /** Revoked identities mapped to the revocation time (epoch seconds) and the entry's expiry. */
  private readonly identities = new Map<string, { atS: number; expiresAtS: number }>();
  private lastHeardMs = -Infinity;
  private loaded = false;
  private cursorSeq = 0;

  constructor(
    private readonly clock: Clock,
    private readonly silenceBoundMs: number,
  ) {}

  /** Replaces the state with a snapshot. */
  loadSnapshot(cursor: number, revocations: readonly RevocationEvent[]): void {
    this.jtis.clear();
    this.tasks.clear();
    this.identities.clear();
    for (const event of revocations) this.apply(event);
    this.cursorSeq = cursor;
    this.loaded = true;
    this.heard();
  }

  apply(event: RevocationEvent): void {
    for (const jti of event.jtis) this.jtis.set(jti, event.expires_at_s);
    for (const task of event.task_ids) this.tasks.set(task, event.expires_at_s);
    const atS = Math.floor(event.created_at / 1000);
    for (const identity of event.agent_ids)
      this.identities.set(identity, { atS, expiresAtS: event.expires_at_s });
    this.cursorSeq = Math.max(this.cursorSeq, event.seq);
    this.heard();
  }

  /** Records that the feed is alive: an event, a heartbeat or a successful poll. */
  heard(): void {
    this.lastHeardMs = this.clock.nowMs();
  }

  cursor(): number {
    return this.cursorSeq;
  }

  /** Returns whether the state may be trusted: loaded, and heard from within the silence bound. */
  isFresh(): boolean {
    return this.loaded && this.clock.nowMs() - this.lastHeardMs <= this.silenceBoundMs;
  }

  /** Returns why a token is revoked, or undefined when it is not. */
  revocationOf(subject: RevocationSubject): string | undefined {
    if (this.jtis.has(subject.jti)) return "token revoked";
    if (subject.task_id !== undefined && this.tasks.has(subject.task_id)) return "task ended";
    for (const identity of subject.identities) {
      const revoked = this.identities.get(identity);
      // A token issued after the revocation belongs to an identity that was enabled again.
      if (revoked !== undefined && subject.iat <= revoked.atS) return "identity revoked";
    }
    return undefined;
  }

  /** Drops entries whose tokens have all expired. */
  purge(): void {
    const now = epochSeconds(this.clock);
    for (const [jti, expiresAtS] of this.jtis) if (expiresAtS < now) this.jtis.delete(jti);
    for (const [task, expiresAtS] of this.tasks) if (expiresAtS < now) this.tasks.delete(task);
    for (const [identity, entry] of this.identities)
      if (entry.expiresAtS < now) this.identities.delete(identity);
  }
}
