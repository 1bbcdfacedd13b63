import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { sharedDataDir } from "../support/shared-data.js";

const execute = promisify(execFile);
const repository = resolve(import.meta.dirname, "../..");
const fixtures = join(repository, "test", "fixtures", "scan");
const falco = join(sharedDataDir(), "falco-k8s-audit-events");

async function writ(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execute(
      process.execPath,
      ["--import", "tsx", join(repository, "src/cli/main.ts"), ...args],
      {
        cwd: repository,
        env: { ...process.env, ...env },
        timeout: 60_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== "number") throw error;
    return { code: failed.code, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

test("scan exits 1 on a high finding", async () => {
  const result = await writ(["scan", join(fixtures, "k8s-jti-two-sources.jsonl")]);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /credential-outside-workload/);
});

test("scan exits 0 below --fail-on", async () => {
  const result = await writ(["scan", "--fail-on", "critical", falco]);
  assert.equal(result.code, 0);
  assert.match(result.stdout, /malformed .*fal_01_003\.json:1/);
});

test("scan exits 2 on usage errors", async () => {
  assert.equal((await writ(["scan", "--fail-on", "severe", falco])).code, 2);
  assert.equal((await writ(["scan"])).code, 2);
  assert.equal((await writ(["scan", "--format", "syslog", falco])).code, 2);
  assert.equal((await writ(["scan", "--apply", falco])).code, 2);
});

test("scan writes json and sarif", async () => {
  const directory = await mkdtemp(join(tmpdir(), "writ-scan-cli-"));
  const sarifPath = join(directory, "scan.sarif");
  const result = await writ([
    "--json",
    "scan",
    "--sarif",
    sarifPath,
    join(fixtures, "github-token-two-repos.jsonl"),
  ]);
  const document = JSON.parse(result.stdout) as { findings: { kind: string }[]; records: number };
  assert.equal(document.records, 4);
  assert.ok(document.findings.some((finding) => finding.kind === "shared-credential"));
  const sarif = JSON.parse(await readFile(sarifPath, "utf8")) as { version: string };
  assert.equal(sarif.version, "2.1.0");
});

test("plan apply registers agents and policies", async () => {
  const directory = await mkdtemp(join(tmpdir(), "writ-scan-apply-"));
  const dataDir = join(directory, "data");
  const adminKey = join(directory, "admin-key.json");
  const env = { XDG_CONFIG_HOME: join(directory, "config") };
  const init = await writ(
    ["--data", dataDir, "init", "--trust-domain", "example.org", "--admin-key-out", adminKey],
    env,
  );
  assert.equal(init.code, 0, init.stderr);

  const common = ["--data", dataDir, "--admin-key", adminKey];
  const refused = await writ(
    [...common, "scan", "--plan", "--apply", join(fixtures, "k8s-jti-two-sources.jsonl")],
    env,
  );
  assert.equal(refused.code, 2);

  const applied = await writ(
    [...common, "scan", "--plan", "--apply", "--yes", join(fixtures, "k8s-jti-two-sources.jsonl")],
    env,
  );
  assert.match(applied.stderr, /applied: 2 agents, \d+ tools, 2 policies/);

  const agents = await writ([...common, "--json", "agent", "list"], env);
  const names = (JSON.parse(agents.stdout) as { agents: { name: string }[] }).agents.map(
    (agent) => agent.name,
  );
  assert.deepEqual(
    names.sort(),
    [
      "system-serviceaccount-payments-billing-billing-worker",
      "system-serviceaccount-payments-billing-kubectl",
    ].sort(),
  );
  const policies = await writ([...common, "--json", "policy", "list"], env);
  assert.match(policies.stdout, /k8s-secrets:list/);
});
