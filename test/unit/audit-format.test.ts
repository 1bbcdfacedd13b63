import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { csvField, renderCsv, renderTable, terminalText } from "../../src/audit/questions/format.js";
import { compileResourcePattern } from "../../src/audit/questions/resource-pattern.js";
import { parseTime } from "../../src/audit/questions/time.js";

describe("CSV fields", () => {
  const cases: [string, string | number | null, string][] = [
    ["plain text unchanged", "planner", "planner"],
    ["empty for null", null, ""],
    ["formula with = neutralised", '=HYPERLINK("http://x")', `"'=HYPERLINK(""http://x"")"`],
    ["formula with + neutralised", "+1+2", "'+1+2"],
    ["formula with - neutralised", "-2+3", "'-2+3"],
    ["formula with @ neutralised", "@SUM(A1)", "'@SUM(A1)"],
    ["leading tab neutralised", "\t=1", "'\t=1"],
    ["negative number kept", -5, "-5"],
    ["comma quoted", "a,b", '"a,b"'],
    ["quote doubled", 'say "hi"', '"say ""hi"""'],
    ["line feed kept and quoted", "one\ntwo", '"one\ntwo"'],
    ["carriage return removed", "one\r\ntwo", '"one\ntwo"'],
    ["escape sequence removed", "\u001b[31mred\u001b[0m", "[31mred[0m"],
    ["C1 control removed", "a\u009bb", "ab"],
    ["control before formula removed first", "\u0007=1", "'=1"],
  ];
  for (const [name, input, expected] of cases) {
    test(name, () => {
      assert.equal(csvField(input), expected);
    });
  }

  test("records end with CRLF", () => {
    const csv = renderCsv({
      header: ["A", "B"],
      rows: [
        ["x", 1],
        [null, "y,z"],
      ],
    });
    assert.equal(csv, 'A,B\r\nx,1\r\n,"y,z"\r\n');
  });
});

describe("terminal table", () => {
  test("control characters removed", () => {
    assert.equal(terminalText("ok\u001b]0;title\u0007\nnext\u0085"), "ok]0;titlenext");
  });

  test("columns aligned after removal", () => {
    const lines = renderTable({ header: ["NAME", "N"], rows: [["\u001b[1mbold", 12]] });
    assert.deepEqual(lines, ["NAME     N", "[1mbold  12"]);
  });

  test("formula cells left as text", () => {
    const lines = renderTable({ header: ["V"], rows: [["=1+1"]] });
    assert.equal(lines[1], "=1+1");
  });
});

describe("time values", () => {
  const nowMs = Date.UTC(2026, 0, 31, 12, 0, 0);

  test("RFC 3339 in UTC", () => {
    assert.equal(parseTime("since", "2026-01-31T09:30:00Z", nowMs), Date.UTC(2026, 0, 31, 9, 30, 0));
  });

  test("RFC 3339 with offset and fraction", () => {
    assert.equal(
      parseTime("since", "2026-01-31T10:30:00.250+01:00", nowMs),
      Date.UTC(2026, 0, 31, 9, 30, 0, 250),
    );
  });

  test("relative age counts back", () => {
    assert.equal(parseTime("since", "90m", nowMs), nowMs - 90 * 60_000);
    assert.equal(parseTime("since", "2d", nowMs), nowMs - 2 * 86_400_000);
  });

  for (const bad of ["yesterday", "2026-01-31", "2026-01-31 09:30:00Z", "1w", "-1h", ""]) {
    test(`"${bad}" rejected`, () => {
      assert.throws(() => parseTime("since", bad, nowMs), /invalid since/);
    });
  }
});

describe("resource patterns", () => {
  const issuer = "https://writ.example.org";

  test("single star stays in one segment", () => {
    const pattern = compileResourcePattern("/issues/*", issuer);
    assert.ok(pattern.matches("/issues/1"));
    assert.ok(!pattern.matches("/issues/1/comments"));
  });

  test("double star crosses segments and matches the prefix", () => {
    const pattern = compileResourcePattern("/repos/**", issuer);
    assert.ok(pattern.matches("/repos"));
    assert.ok(pattern.matches("/repos/acme/issues"));
    assert.ok(!pattern.matches("/reposx"));
  });

  test("regular expression characters are literal", () => {
    const pattern = compileResourcePattern("/a.b/(c)", issuer);
    assert.ok(pattern.matches("/a.b/(c)"));
    assert.ok(!pattern.matches("/aXb/(c)"));
  });

  test("resource URI names its tool", () => {
    const pattern = compileResourcePattern(`${issuer}/tools/tracker/issues/**`, issuer);
    assert.equal(pattern.tool, "tracker");
    assert.ok(pattern.matches("/issues/4"));
  });

  test("MCP resource URI without a path matches every target", () => {
    const pattern = compileResourcePattern(`${issuer}/mcp/files`, issuer);
    assert.equal(pattern.tool, "files");
    assert.ok(pattern.matches("read_file"));
    assert.ok(pattern.matches("file:///srv/notes.txt"));
  });
});

test("terminal text drops bidirectional and zero-width characters", () => {
  assert.equal(
    terminalText("triage \u202eexe.tnemyap\u202c x\u2066y\u2069 z\u200bw\u2028v\ufeff"),
    "triage exe.tnemyap xy zwv",
  );
});

test("CSV drops format characters but keeps line feeds", () => {
  assert.equal(csvField("a\u202eb\nc"), '"ab\nc"');
});
