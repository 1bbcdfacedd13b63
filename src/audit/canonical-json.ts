/**
 * RFC 8785 (JSON Canonicalization Scheme) serialisation of the values an audit event's `data` holds.
 *
 * RFC 8785 writes strings and numbers as ECMAScript's `JSON.stringify` does, and orders each
 * object's members by the UTF-16 code units of their names, which is what `Array.prototype.sort`
 * compares by default. So each primitive is written by `JSON.stringify` and only the member order is
 * done here. Each event kind builds its `data` the same way, so objects of one shape (the same
 * member names in the same order) are common. The sorted and quoted names of a shape are cached
 * instead of being sorted and quoted again for every event.
 */

/** One object shape: its member names as found, then sorted, then sorted and quoted as JSON. */
interface Shape {
  found: string[];
  sorted: string[];
  quoted: string[];
}

/** Shapes by their member names joined with NUL. It starts over at `maxShapes` to bound its memory. */
const shapes = new Map<string, Shape>();
const maxShapes = 1000;

/**
 * Returns the canonical JSON text of `value`. As `JSON.stringify` does, members whose value is
 * undefined, a function or a symbol are left out and such array items become `null`, and `toJSON`
 * is honoured. Throws a TypeError for a value with no JSON form: undefined, a function or symbol at
 * the top, NaN, an infinity or a bigint.
 */
export function canonicalJsonText(value: unknown): string {
  if (value === undefined || typeof value === "function" || typeof value === "symbol")
    throw new TypeError(`a ${typeof value} has no JSON form`);
  return write(value);
}

function write(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      throw new TypeError("a bigint has no JSON form");
    case "object":
      break;
    default:
      // Not reached: callers leave out, or write as null, undefined, functions and symbols.
      return "null";
  }
  if (value === null) return "null";
  const toJson = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJson === "function") return write((value as { toJSON(): unknown }).toJSON());
  if (Array.isArray(value)) {
    let text = "[";
    for (let index = 0; index < value.length; index++) {
      const item: unknown = value[index];
      if (index > 0) text += ",";
      text += omitted(item) ? "null" : write(item);
    }
    return `${text}]`;
  }
  const record = value as Record<string, unknown>;
  const shape = shapeOf(Object.keys(record));
  let text = "{";
  for (let index = 0; index < shape.sorted.length; index++) {
    const member = record[shape.sorted[index] as string];
    if (omitted(member)) continue;
    if (text.length > 1) text += ",";
    text += `${shape.quoted[index] as string}:${write(member)}`;
  }
  return `${text}}`;
}

/** Returns whether JSON leaves a member out, and writes an array item as null: undefined, functions, symbols. */
function omitted(value: unknown): boolean {
  return value === undefined || typeof value === "function" || typeof value === "symbol";
}

function shapeOf(names: string[]): Shape {
  // Names may contain NUL, so two different lists can join to the same text: a hit is compared in full.
  const id = names.join("\u0000");
  const cached = shapes.get(id);
  if (cached !== undefined && sameNames(cached.found, names)) return cached;
  const sorted = [...names].sort();
  const shape = { found: names, sorted, quoted: sorted.map((name) => JSON.stringify(name)) };
  if (shapes.size >= maxShapes) shapes.clear();
  shapes.set(id, shape);
  return shape;
}

function sameNames(left: readonly string[], right: readonly string[]): boolean {
  if (left.length !== right.length) return false;
  for (let index = 0; index < left.length; index++) if (left[index] !== right[index]) return false;
  return true;
}
