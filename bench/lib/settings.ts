/**
 * Reads a positive number from the environment variable `name`, or returns `fallback` when it is
 * unset. Throws Error naming the variable when its value is not a positive number.
 */
export function positiveNumberSetting(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`invalid ${name}="${text}": expected a positive number`);
  }
  return value;
}

/** Reads a positive integer from the environment variable `name`, as `positiveNumberSetting` does. */
export function positiveIntegerSetting(name: string, fallback: number): number {
  const value = positiveNumberSetting(name, fallback);
  if (!Number.isInteger(value)) throw new Error(`invalid ${name}="${value}": expected a positive integer`);
  return value;
}

/** Reads an integer of 0 or more from the environment variable `name`, or returns `fallback` when unset. */
export function nonNegativeIntegerSetting(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`invalid ${name}="${text}": expected an integer of 0 or more`);
  }
  return value;
}
