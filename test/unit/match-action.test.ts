import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { matchActions, matchSegments, parseHttpPattern } from "../../src/gateway/http/match-action.js";

function split(path: string): string[] {
  return path.split("/").filter((segment) => segment !== "");
}

describe("matchSegments", () => {
  const cases: [pattern: string, path: string, matches: boolean][] = [
    ["/repos", "/repos", true],
    ["/repos", "/repos/x", false],
    ["/repos", "/", false],
    ["/", "/", true],
    ["/", "/x", false],
    ["/repos/*", "/repos/x", true],
    ["/repos/*", "/repos", false],
    ["/repos/*", "/repos/x/y", false],
    ["/repos/*/issues", "/repos/x/issues", true],
    ["/repos/*/issues", "/repos/issues", false],
    ["/repos/*/issues", "/repos/x/y/issues", false],
    ["/repos/**", "/repos", true],
    ["/repos/**", "/repos/x", true],
    ["/repos/**", "/repos/x/y/z", true],
    ["/repos/**", "/admin/repos", false],
    ["/**", "/", true],
    ["/**", "/a/b", true],
    ["/repos/**/comments", "/repos/comments", true],
    ["/repos/**/comments", "/repos/x/comments", true],
    ["/repos/**/comments", "/repos/x/y/comments", true],
    ["/repos/**/comments", "/repos/x/y", false],
    ["/repos/**/comments", "/repos/x/comments/1", false],
    ["/repos/*/issues/**", "/repos/x/issues", true],
    ["/repos/*/issues/**", "/repos/x/issues/1/comments", true],
    ["/repos/*/issues/**", "/repos/x/pulls/1", false],
    ["/repos/*/issues/**", "/admin/x/issues/1", false],
    ["/**/admin", "/admin", true],
    ["/**/admin", "/a/b/admin", true],
    ["/**/admin", "/a/admin/b", false],
    ["/*/**/*", "/a", false],
    ["/*/**/*", "/a/b", true],
    ["/**/**", "/a/b", true],
    ["/Repos", "/repos", false],
  ];
  for (const [pattern, path, matches] of cases) {
    test(`${pattern} ${matches ? "matches" : "rejects"} ${path}`, () => {
      assert.equal(matchSegments(split(pattern), split(path)), matches);
    });
  }
});

describe("matchActions", () => {
  const actions = [
    { name: "read", spec: "GET /repos/*/issues/**", risk: "low" as const },
    { name: "any", spec: "GET /repos/**", risk: "low" as const },
    { name: "write", spec: "POST /repos/*/issues", risk: "medium" as const },
  ].map((action) => ({ ...action, pattern: parseHttpPattern(action.spec) }));

  function names(method: string, path: string, caseSensitive = true): string[] {
    return matchActions(actions, method, path, caseSensitive).map((action) => action.name);
  }

  test("returns matches in declaration order", () => {
    assert.deepEqual(names("GET", "/repos/x/issues/1"), ["read", "any"]);
  });

  test("method must match", () => {
    assert.deepEqual(names("DELETE", "/repos/x/issues"), []);
  });

  test("POST matches only POST", () => {
    assert.deepEqual(names("POST", "/repos/x/issues"), ["write"]);
  });

  test("case-sensitive tool keeps case", () => {
    assert.deepEqual(names("GET", "/Repos/x/issues/1"), []);
  });

  test("case-insensitive tool folds pattern", () => {
    // The gateway lowercases the path of a case-insensitive tool before matching.
    const upperCase = [{ name: "read", spec: "GET /Repos/**", risk: "low" as const }].map((action) => ({
      ...action,
      pattern: parseHttpPattern(action.spec),
    }));
    assert.deepEqual(
      matchActions(upperCase, "GET", "/repos/x", false).map((action) => action.name),
      ["read"],
    );
  });
});

describe("parseHttpPattern", () => {
  test("splits method and segments", () => {
    assert.deepEqual(parseHttpPattern("GET /repos/*/issues/**"), {
      method: "GET",
      segments: ["repos", "*", "issues", "**"],
    });
  });

  test("root pattern has no segments", () => {
    assert.deepEqual(parseHttpPattern("GET /"), { method: "GET", segments: [] });
  });
});

/** Builds the regular expression a pattern stands for, over a path written as `/seg/seg…`. */
function patternRegex(pattern: readonly string[]): RegExp {
  const parts = pattern.map((token) => {
    if (token === "**") return "(?:/[^/]+)*";
    if (token === "*") return "/[^/]+";
    return `/${token.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`;
  });
  return new RegExp(`^${parts.join("")}$`);
}

const pathSegment = fc.constantFrom("a", "b", "c.d");
const patternToken = fc.constantFrom("a", "b", "c.d", "*", "**");

describe("matchSegments property", () => {
  test("agrees with regex model", () => {
    fc.assert(
      fc.property(
        fc.array(patternToken, { maxLength: 6 }),
        fc.array(pathSegment, { maxLength: 7 }),
        (pattern, path) => {
          const expected = patternRegex(pattern).test(path.map((segment) => `/${segment}`).join(""));
          assert.equal(matchSegments(pattern, path), expected);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
