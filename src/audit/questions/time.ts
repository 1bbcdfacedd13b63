import { WritError } from "../../errors/writ-error.js";

/** RFC 3339 date-time (section 5.6): a full date, `T`, a time with optional fraction, and `Z` or an offset. */
const rfc3339Pattern = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
/** A relative age such as `90s`, `30m`, `2h` or `7d`, counted back from now. */
const agePattern = /^(\d{1,9})(s|m|h|d)$/;
const unitMs = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Parses a point in time as the investigation commands take it: an RFC 3339 date-time, or a relative
 * age (`1h` is one hour before `nowMs`). Returns milliseconds since the Unix epoch; throws
 * `invalid_request` naming the option otherwise.
 */
export function parseTime(option: string, value: string, nowMs: number): number {
  const text = value.trim();
  const age = agePattern.exec(text);
  if (age !== null) return nowMs - Number(age[1]) * unitMs[age[2] as keyof typeof unitMs];
  if (rfc3339Pattern.test(text)) {
    const parsed = Date.parse(text.toUpperCase());
    if (!Number.isNaN(parsed)) return parsed;
  }
  throw new WritError(
    "invalid_request",
    `invalid ${option} "${value}": use an RFC 3339 time such as 2026-01-31T09:30:00Z or an age such as 1h`,
  );
}

/** A closed interval of time in milliseconds; an absent end is unbounded. */
export interface TimeWindow {
  sinceMs?: number;
  untilMs?: number;
}

/** Parses `since` and `until` query values into a window; throws when `since` is after `until`. */
export function parseWindow(since: string | undefined, until: string | undefined, nowMs: number): TimeWindow {
  const window: TimeWindow = {};
  if (since !== undefined) window.sinceMs = parseTime("since", since, nowMs);
  if (until !== undefined) window.untilMs = parseTime("until", until, nowMs);
  if (window.sinceMs !== undefined && window.untilMs !== undefined && window.sinceMs > window.untilMs) {
    throw new WritError("invalid_request", `since "${since}" is after until "${until}": swap them`);
  }
  return window;
}

/** Returns whether an interval [startMs, endMs] overlaps the window; a null end means still open. */
export function overlaps(window: TimeWindow, startMs: number, endMs: number | null): boolean {
  if (window.untilMs !== undefined && startMs > window.untilMs) return false;
  if (window.sinceMs !== undefined && endMs !== null && endMs < window.sinceMs) return false;
  return true;
}
