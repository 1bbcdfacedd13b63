/** A source of the current time, injected so that expiry, skew and replay windows are testable without sleeping. */
export interface Clock {
  /** Returns the current time in milliseconds since the Unix epoch. */
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** Returns the current time of a clock in whole seconds since the Unix epoch, as JWT `NumericDate` values use. */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.nowMs() / 1000);
}

/** A clock that tests move by hand. */
export class ManualClock implements Clock {
  constructor(private currentMs: number = Date.now()) {}
  nowMs(): number {
    return this.currentMs;
  }
  advanceSeconds(seconds: number): void {
    this.currentMs += seconds * 1000;
  }
}
