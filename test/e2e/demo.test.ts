import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { before, describe, test } from "node:test";

const run = promisify(execFile);

interface DemoOutput {
  ok: boolean;
  steps: { step: string; ok: boolean; detail: string }[];
  counts: { allowed: number; denied: number; audit_events: number };
}

describe("writ demo", () => {
  let output: DemoOutput;

  // The test command builds dist/ before any test runs.
  before(async () => {
    const { stdout } = await run(process.execPath, ["dist/cli/main.js", "--json", "demo"], {
      timeout: 120_000,
    });
    output = JSON.parse(stdout) as DemoOutput;
  });

  test("every outcome happened", () => {
    assert.equal(output.ok, true, JSON.stringify(output.steps));
  });

  test("each step is reported", () => {
    assert.ok(output.steps.length >= 9);
    for (const step of output.steps) assert.equal(step.ok, true, step.step);
  });

  test("denied call names a decision", () => {
    const denied = output.steps.find((step) => step.step.includes("was denied"));
    assert.match(denied?.detail ?? "", /decision [0-9a-f-]{36}/);
  });

  test("revoked agent cut within a second", () => {
    const revoked = output.steps.find((step) => step.step.includes("revoked"));
    const ms = Number(/(\d+) ms/.exec(revoked?.detail ?? "")?.[1]);
    assert.ok(ms < 1000, revoked?.detail);
  });

  test("counts add up", () => {
    assert.equal(output.counts.allowed, 3);
    assert.equal(output.counts.denied, 3);
    assert.ok(output.counts.audit_events > 0);
  });
});
