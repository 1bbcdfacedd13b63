import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { normalisePath, type NormalisedPath } from "../../src/gateway/http/normalise-path.js";

const sensitive = { caseSensitive: true };
const insensitive = { caseSensitive: false };

describe("normalisePath", () => {
  const accepted: [raw: string, expected: string][] = [
    ["/", "/"],
    ["", "/"],
    ["/repos/x/issues/1", "/repos/x/issues/1"],
    ["/repos/x/./issues//1", "/repos/x/issues/1"],
    ["//repos///x", "/repos/x"],
    ["/repos/x/issues/2/../3", "/repos/x/issues/3"],
    ["/a/b/..", "/a"],
    ["/a/..", "/"],
    ["/a/../", "/"],
    ["/a/b/", "/a/b/"],
    ["/a/./", "/a/"],
    ["/%2e%2e%2e", "/..."],
    ["/a/%2e%2e/b", "/b"],
    ["/a/%2E%2e/b", "/b"],
    ["/a/.%2E/b", "/b"],
    ["/a/%2e/b", "/a/b"],
    ["/%61%62%63", "/abc"],
    ["/a%2Db%5fc%7E", "/a-b_c~"],
    ["/a%20b", "/a%20b"],
    ["/a%3ab", "/a%3Ab"],
    ["/a%e2%82%ac", "/a%E2%82%AC"],
    ["/Repos/X", "/Repos/X"],
  ];
  for (const [raw, expected] of accepted) {
    test(`accepts ${JSON.stringify(raw)}`, () => {
      assert.deepEqual(normalisePath(raw, sensitive), { ok: true, path: expected });
    });
  }

  test("lowercases case-insensitive path", () => {
    assert.deepEqual(normalisePath("/Repos/X/%41", insensitive), { ok: true, path: "/repos/x/a" });
  });

  test("lowercases kept escapes too", () => {
    // Lowercasing runs last, over the escapes that were kept. Hex digits in escapes are case-insensitive.
    assert.deepEqual(normalisePath("/a%3Ab", insensitive), { ok: true, path: "/a%3ab" });
  });

  const rejected: [raw: string, problem: string][] = [
    ["/..", "leaves_tool"],
    ["/a/../..", "leaves_tool"],
    ["/a/../../admin", "leaves_tool"],
    ["/%2e%2e/admin", "leaves_tool"],
    ["/a%2Fb", "encoded_slash"],
    ["/a%2fb", "encoded_slash"],
    ["/a%5Cb", "encoded_backslash"],
    ["/a%5cb", "encoded_backslash"],
    ["/a%00b", "encoded_nul"],
    ["/%252e%252e/admin", "double_encoding"],
    ["/a%25", "double_encoding"],
    ["/a%", "invalid_encoding"],
    ["/a%2", "invalid_encoding"],
    ["/a%zz", "invalid_encoding"],
    ["/a\\b", "backslash"],
    ["/a/..\\admin", "backslash"],
    ["/a;b", "path_parameter"],
    ["/..;/admin", "path_parameter"],
    ["/a#/b", "fragment"],
    ["/a\u0000b", "control_character"],
    ["/a\tb", "control_character"],
    ["/a\u007fb", "control_character"],
    ["/items/a b", "invalid_character"],
    ["/items/\u00e9", "invalid_character"],
    ["/items/a|b", "invalid_character"],
    ["/items/[0]", "invalid_character"],
  ];
  for (const [raw, problem] of rejected) {
    test(`rejects ${JSON.stringify(raw)}`, () => {
      assert.deepEqual(normalisePath(raw, sensitive), { ok: false, problem });
    });
  }
});

/** Characters RFC 3986 calls unreserved, which `normalisePath` decodes from their escapes. */
const unreservedCharacters = [..."abcXYZ019-._~"];

/** One character of a segment, raw or percent-encoded in either hex case. */
const segmentCharacter = fc.oneof(
  fc.constantFrom(...unreservedCharacters),
  fc.constantFrom(...unreservedCharacters).map((character) => percentEncode(character, "upper")),
  fc.constantFrom(...unreservedCharacters).map((character) => percentEncode(character, "lower")),
);

/** A raw segment: empty, `.`, `..` (raw or encoded), or a run of segment characters. */
const rawSegment = fc.oneof(
  fc.constantFrom("", ".", "..", "%2e", "%2E", "%2e%2e", ".%2E", "%2E."),
  fc.array(segmentCharacter, { minLength: 1, maxLength: 4 }).map((characters) => characters.join("")),
);

const rawPath = fc
  .tuple(fc.array(rawSegment, { maxLength: 10 }), fc.boolean())
  .map(([segments, trailingSlash]) => `/${segments.join("/")}${trailingSlash ? "/" : ""}`);

function percentEncode(character: string, hexCase: "upper" | "lower"): string {
  const hex = character.charCodeAt(0).toString(16).padStart(2, "0");
  return `%${hexCase === "upper" ? hex.toUpperCase() : hex}`;
}

/** Resolves the segments of a path whose escapes are decoded; undefined when `..` climbs above root. */
function modelSegments(decoded: string): string[] | undefined {
  const stack: string[] = [];
  for (const segment of decoded.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment !== "..") stack.push(segment);
    else if (stack.pop() === undefined) return undefined;
  }
  return stack;
}

function pathOf(result: NormalisedPath): string {
  assert.ok(result.ok, `rejected: ${result.ok ? "" : result.problem}`);
  return result.path;
}

describe("normalisePath properties", () => {
  test("output has no empty or dot segments", () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const result = normalisePath(raw, sensitive);
        if (!result.ok) return;
        assert.equal(result.path.includes("//"), false);
        assert.equal(`${result.path}/`.includes("/./"), false);
        assert.equal(`${result.path}/`.includes("/../"), false);
        assert.equal(result.path.startsWith("/"), true);
      }),
    );
  });

  test("matches stack model", () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const expected = modelSegments(decodeURIComponent(raw));
        const result = normalisePath(raw, sensitive);
        if (expected === undefined) {
          assert.deepEqual(result, { ok: false, problem: "leaves_tool" });
          return;
        }
        const segments = pathOf(result)
          .split("/")
          .filter((segment) => segment !== "");
        assert.deepEqual(segments, expected);
      }),
    );
  });

  test("re-normalising is idempotent", () => {
    fc.assert(
      fc.property(rawPath, fc.boolean(), (raw, caseSensitive) => {
        const options = { caseSensitive };
        const first = normalisePath(raw, options);
        if (!first.ok) return;
        assert.deepEqual(normalisePath(first.path, options), first);
      }),
    );
  });

  test("decoding first changes nothing", () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        assert.deepEqual(normalisePath(decodeURIComponent(raw), sensitive), normalisePath(raw, sensitive));
      }),
    );
  });
});
