import { test } from "node:test";
import assert from "node:assert/strict";
import canonicalizeModule from "canonicalize";
import fc from "fast-check";
import { canonicalJsonText } from "../../src/audit/canonical-json.js";

// The canonicalize package is the reference: writ's serialiser must write the same text for any JSON.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string;

test("same text as the reference for any JSON value", () => {
  fc.assert(
    fc.property(fc.jsonValue({ stringUnit: "binary" }), (value) => {
      assert.equal(canonicalJsonText(value), canonicalize(value));
    }),
    { numRuns: 2000 },
  );
});

test("same text for objects of one shape", () => {
  // The second object of a shape is written from the cached member order.
  const record = fc.dictionary(fc.string({ unit: "binary" }), fc.jsonValue(), { maxKeys: 8 });
  fc.assert(
    fc.property(record, (value) => {
      const twin = Object.fromEntries(Object.entries(value).map(([name]) => [name, 1]));
      assert.equal(canonicalJsonText(value), canonicalize(value));
      assert.equal(canonicalJsonText(twin), canonicalize(twin));
    }),
  );
});

test("names joined to the same text keep their own order", () => {
  const first = { "a\u0000": 1, b: 2 };
  const second = { a: 1, "\u0000b": 2 };
  assert.equal(canonicalJsonText(first), canonicalize(first));
  assert.equal(canonicalJsonText(second), canonicalize(second));
});

test("numbers written in ECMAScript form", () => {
  const numbers = [0, -0, 1e21, 1e-7, 5e-324, 333333333.3333333, -1.7976931348623157e308, 2 ** 53 + 1];
  assert.equal(
    canonicalJsonText(numbers),
    "[0,0,1e+21,1e-7,5e-324,333333333.3333333,-1.7976931348623157e+308,9007199254740992]",
  );
});

test("members JSON omits are left out", () => {
  const value = { b: undefined, a: [undefined, Symbol("s")], c: { toJSON: () => "when" } };
  assert.equal(canonicalJsonText(value), '{"a":[null,null],"c":"when"}');
});

test("values without a JSON form rejected", () => {
  for (const value of [Number.NaN, Number.POSITIVE_INFINITY, 1n, undefined, () => 1, Symbol("s")])
    assert.throws(() => canonicalJsonText(value), TypeError);
  assert.throws(() => canonicalJsonText({ n: Number.NaN }), TypeError);
});
