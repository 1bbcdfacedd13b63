import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { closingLines, exploreCommands, Progress, shellQuote, stepLine } from "../../src/demo/output.js";
import { detectPostgres } from "../../src/demo/postgres.js";
import { StepLog, type DemoResult } from "../../src/demo/report.js";
import { cliPath, requireBuiltCli } from "../support/writ-process.js";

/** Returns a stand-in for a terminal or a pipe that records what is written to it. */
function recordingStream(isTTY: boolean): { stream: NodeJS.WriteStream; written: string[] } {
  const written: string[] = [];
  const stream = {
    isTTY,
    write: (chunk: string) => {
      written.push(chunk);
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { stream, written };
}

function resultWith(overrides: Partial<DemoResult>): DemoResult {
  return {
    ok: true,
    data_dir: "/tmp/writ-demo-x/data",
    data_kept: false,
    steps: [],
    counts: { allowed: 11, denied: 3, tokens_issued: 7, audit_events: 35 },
    agents: {},
    tasks: {},
    mcp_servers: [],
    explore: [],
    ...overrides,
  };
}

describe("demo step log", () => {
  test("failed step fails the run", () => {
    const log = new StepLog();
    log.check("first", true, "seen");
    log.check("second", false, "not seen");
    assert.equal(log.ok, false);
    assert.equal(log.steps[1]?.status, "failed");
  });

  test("skipped step keeps the run ok", () => {
    const log = new StepLog();
    log.check("first", true, "seen");
    log.skip("optional", "not available");
    assert.equal(log.ok, true);
    assert.equal(log.steps[1]?.status, "skipped");
    assert.equal(log.steps[1]?.ok, true);
  });

  test("listener receives each step", () => {
    const seen: string[] = [];
    const log = new StepLog((step) => seen.push(step.step));
    log.check("first", true, "");
    log.skip("second", "");
    assert.deepEqual(seen, ["first", "second"]);
  });
});

describe("demo output", () => {
  test("step lines carry their marks", () => {
    const line = (status: "passed" | "failed" | "skipped") =>
      stepLine({ step: "step", status, ok: status !== "failed", detail: "detail" });
    assert.equal(line("passed"), "✓ step (detail)");
    assert.equal(line("failed"), "✗ step (detail)");
    assert.equal(line("skipped"), "– step (detail)");
  });

  test("step detail loses control characters", () => {
    const line = stepLine({ step: "step", status: "passed", ok: true, detail: "a\u001b[2Jb\nc" });
    assert.equal(line, "✓ step (a[2Jbc)");
  });

  test("summary counts calls and events", () => {
    const lines = closingLines(resultWith({}));
    assert.ok(
      lines.includes("11 calls allowed, 3 denied, 7 tokens issued, 35 audit events."),
      lines.join("\n"),
    );
    assert.ok(lines.includes("every expected outcome happened."));
  });

  test("summary counts failed steps", () => {
    const steps = [
      { step: "a", status: "passed", ok: true, detail: "" },
      { step: "b", status: "failed", ok: false, detail: "" },
    ] as const;
    const lines = closingLines(resultWith({ ok: false, steps: [...steps] }));
    assert.ok(lines.includes("1 of 2 expected outcomes did not happen."), lines.join("\n"));
  });

  test("removed directory suggests --keep", () => {
    const text = closingLines(resultWith({})).join("\n");
    assert.match(text, /\/tmp\/writ-demo-x\/data was removed/);
    assert.match(text, /--keep/);
  });

  test("kept directory lists commands", () => {
    const explore = exploreCommands("writ", "/srv/demo data", "/srv/key.json", { a: "task-a", b: "task-b" });
    assert.deepEqual(explore, [
      "writ --data '/srv/demo data' audit verify",
      "writ --data '/srv/demo data' --admin-key /srv/key.json audit task task-a",
      "writ --data '/srv/demo data' --admin-key /srv/key.json audit list --task task-b",
      "writ --data '/srv/demo data' --admin-key /srv/key.json task list",
      "writ --data '/srv/demo data' --admin-key /srv/key.json tool list",
    ]);
    const text = closingLines(resultWith({ data_kept: true, explore })).join("\n");
    assert.match(text, /explore further:/);
    for (const command of explore) assert.ok(text.includes(command), command);
  });

  test("shell quoting", () => {
    const cases: [string, string][] = [
      ["/tmp/plain-path_1.json", "/tmp/plain-path_1.json"],
      ["/tmp/with space", "'/tmp/with space'"],
      ["it's", "'it'\\''s'"],
      ["$HOME", "'$HOME'"],
    ];
    for (const [value, quoted] of cases) assert.equal(shellQuote(value), quoted, value);
  });

  test("progress silent off a terminal", () => {
    const { stream, written } = recordingStream(false);
    const progress = new Progress(stream);
    progress.start("starting");
    progress.around(() => written.push("step"));
    progress.stop();
    assert.deepEqual(written, ["step"]);
  });

  test("progress draws on a terminal", () => {
    const { stream, written } = recordingStream(true);
    const progress = new Progress(stream);
    progress.start("starting");
    assert.match(written[0] ?? "", /starting$/);
    progress.stop();
    assert.equal(written.at(-1), "\r\u001b[K");
  });
});

describe("demo PostgreSQL detection", () => {
  let folder: string;
  const path = process.env.PATH;

  before(async () => {
    folder = await mkdtemp(join(tmpdir(), "writ-demo-pg-"));
    for (const program of ["initdb", "pg_ctl", "postgres"]) {
      await writeFile(join(folder, program), "#!/bin/sh\nexit 0\n");
      await chmod(join(folder, program), 0o755);
    }
  });

  after(async () => {
    process.env.PATH = path;
    await rm(folder, { recursive: true, force: true });
  });

  test("programs on PATH are found", async () => {
    process.env.PATH = folder;
    assert.deepEqual(await detectPostgres(), { found: true, binDir: folder, source: folder });
  });
});

describe("writ demo --data", () => {
  let root: string;

  before(async () => {
    requireBuiltCli();
    root = await mkdtemp(join(tmpdir(), "writ-demo-data-"));
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("existing installation rejected", async () => {
    const dataDir = join(root, "data");
    await mkdir(dataDir);
    await writeFile(join(dataDir, "writ.json"), "{}");
    const { code, stdout } = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, [cliPath, "demo", "--json", "--data", dataDir], (error, out) => {
        resolve({ code: error === null ? 0 : Number(error.code), stdout: out });
      });
    });
    assert.equal(code, 1);
    const body = JSON.parse(stdout) as { error: string; error_description: string };
    assert.equal(body.error, "error");
    assert.match(body.error_description, /already exists: give --data a new folder/);
  });
});
