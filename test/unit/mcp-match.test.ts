import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { matchesUriPattern, resolvePathArgument, uriProblem } from "../../src/gateway/mcp/match.js";

const patterns: [string, string, boolean][] = [
  ["demo://docs/*", "demo://docs/a.md", true],
  ["demo://docs/*", "demo://docs/sub/a.md", false],
  ["demo://docs/**", "demo://docs/sub/a.md", true],
  ["demo://docs/a.md", "demo://docs/a.md", true],
  ["demo://docs/a.md", "demo://docs/aXmd", false],
  ["file:///srv/*.txt", "file:///srv/notes.txt", true],
];

for (const [pattern, uri, expected] of patterns) {
  test(`uri pattern ${pattern} on ${uri}`, () => {
    assert.equal(matchesUriPattern(pattern, uri), expected);
  });
}

test("pattern without wildcard is equality", () => {
  fc.assert(
    fc.property(
      fc.string().filter((text) => !text.includes("*")),
      fc.string(),
      (pattern, uri) => {
        assert.equal(matchesUriPattern(pattern, uri), pattern === uri);
      },
    ),
  );
});

test("uri problems", () => {
  assert.equal(uriProblem("demo://docs/a.md"), undefined);
  assert.equal(uriProblem("demo://docs/../secret"), "dot segment");
  assert.equal(uriProblem("demo://docs/%2e%2e/secret"), "encoded dot, slash, backslash or NUL");
  assert.equal(uriProblem("demo://docs\\secret"), "control character or backslash");
});

test("path arguments resolve links", async () => {
  const root = await realpath(await mkdtemp(join(tmpdir(), "writ-match-")));
  try {
    await mkdir(join(root, "inside"));
    await symlink(tmpdir(), join(root, "inside", "link"));
    const base = { cwd: join(root, "inside"), home: root };
    assert.equal(await resolvePathArgument("a.txt", base), join(root, "inside", "a.txt"));
    assert.equal(await resolvePathArgument("../x", base), join(root, "x"));
    assert.equal(await resolvePathArgument("~/y", base), join(root, "y"));
    assert.equal(
      await resolvePathArgument("link/new/file", base),
      join(await realpath(tmpdir()), "new", "file"),
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
