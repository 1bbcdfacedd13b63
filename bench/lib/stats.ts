/** Returns the `p`-th percentile (0 to 100) of ascending `sorted` by the nearest-rank method. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  const index = Math.min(Math.max(rank, 1), sorted.length) - 1;
  return sorted[index] as number;
}

/** Returns the values sorted in ascending order, in a new typed array. */
export function sortAscending(values: Iterable<number>): Float64Array {
  return Float64Array.from(values).sort();
}

/** Rounds to `digits` significant digits, so that results do not claim more precision than they have. */
export function roundSignificant(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  return Number(value.toPrecision(digits));
}
