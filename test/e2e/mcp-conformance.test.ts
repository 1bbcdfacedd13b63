import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startForwarder, type Forwarder } from "../conformance/forwarder.js";
import { ensureNode22 } from "../conformance/node22.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { registerAgent, startTask } from "../support/agent-client.js";

const run = promisify(execFile);
const projectRoot = process.cwd();
const everythingServer = join(
  projectRoot,
  "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
);
const conformanceCli = join(projectRoot, "node_modules/@modelcontextprotocol/conformance/dist/index.js");
const expectedFailuresFile = join(projectRoot, "test/conformance/expected-failures.json");
/** The active suite ran in about 2 s on 2 cores; the rest is headroom for a loaded machine. */
const conformanceTimeoutMs = 50_000;

/**
 * Tool names of server-everything 2026.8.31 and of the conformance fixtures. The fixture names are
 * granted too, so that a call to one reaches the upstream and fails there (unknown tool) rather
 * than at the gateway's policy, and the expected failures name what the upstream lacks.
 */
const toolActions = [
  "echo",
  "get-annotated-message",
  "get-env",
  "get-resource-links",
  "get-resource-reference",
  "get-structured-content",
  "get-sum",
  "get-tiny-image",
  "gzip-file-as-resource",
  "toggle-simulated-logging",
  "toggle-subscriber-updates",
  "trigger-long-running-operation",
  "test_simple_text",
  "test_image_content",
  "test_audio_content",
  "test_embedded_resource",
  "test_multiple_content_types",
  "test_tool_with_logging",
  "test_error_handling",
  "test_tool_with_progress",
  "test_sampling",
  "test_elicitation",
  "test_elicitation_sep1034_defaults",
  "test_elicitation_sep1330_enums",
  "test_reconnection",
];
const promptActions = [
  "simple-prompt",
  "args-prompt",
  "completable-prompt",
  "resource-prompt",
  "test_simple_prompt",
  "test_prompt_with_arguments",
  "test_prompt_with_embedded_resource",
  "test_prompt_with_image",
];

interface ExpectedFailure {
  scenario: string;
  reason: string;
}

/** One check of a scenario, as the conformance runner writes it to `checks.json`. */
interface ConformanceCheck {
  id: string;
  status: "SUCCESS" | "FAILURE" | "WARNING" | "INFO" | "SKIPPED";
  errorMessage?: string;
}

/**
 * Reads the runner's output folder: one `server-<scenario>-<timestamp>` folder per scenario, each
 * with a `checks.json`. A scenario passes, as the runner itself counts it, with no FAILURE and no
 * WARNING check.
 */
async function readOutcomes(
  outputDir: string,
): Promise<Map<string, { passed: boolean; problems: string[] }>> {
  const outcomes = new Map<string, { passed: boolean; problems: string[] }>();
  for (const entry of await readdir(outputDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const scenario = entry.name.replace(/^server-/, "").replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, "");
    const checks = JSON.parse(
      await readFile(join(outputDir, entry.name, "checks.json"), "utf8"),
    ) as ConformanceCheck[];
    const problems = checks
      .filter((check) => check.status === "FAILURE" || check.status === "WARNING")
      .map((check) => `${check.id}: ${check.status} ${check.errorMessage ?? ""}`.trim());
    outcomes.set(scenario, { passed: problems.length === 0, problems });
  }
  return outcomes;
}

describe("MCP conformance through the gateway", () => {
  let node22: string | undefined;
  let skipReason: string | undefined;
  let broker: TestBroker | undefined;
  let forwarder: Forwarder | undefined;
  let outputDir: string | undefined;

  before(async () => {
    // The conformance runner imports `globSync` from node:fs, which Node.js 20 lacks.
    const found = await ensureNode22(projectRoot);
    if ("unavailable" in found) {
      skipReason = `Node.js 22 is needed to run @modelcontextprotocol/conformance: ${found.unavailable}`;
      return;
    }
    node22 = found.node;

    broker = await startTestBroker();
    const toolUrl = `${broker.issuer}/mcp/everything`;
    const agent = await registerAgent(broker, "conformance-agent");
    await broker.admin.call("POST", "/v1/tools", {
      name: "everything",
      kind: "mcp",
      environment: "prod",
      actions: [
        ...toolActions.map((name) => ({ name })),
        ...promptActions.map((name) => ({ name: `prompt.${name}`, spec: `prompt:${name}` })),
        { name: "resources", spec: "resource:**" },
      ],
      config: { command: ["node", everythingServer, "stdio"] },
    });
    // The protocol methods outside the gateway's fixed list pass only where a site policy names them.
    await broker.admin.call("POST", "/v1/policies", {
      id: "permit-everything-protocol-methods",
      text:
        'permit (principal, action == Action::"protocol_method", resource == Tool::"everything")\n' +
        'when { ["logging/setLevel", "completion/complete", "resources/subscribe", ' +
        '"resources/unsubscribe"].contains(context.method) };',
    });
    const task = await startTask(broker, agent.name, [
      ...toolActions.map((name) => `everything:${name}`),
      ...promptActions.map((name) => `everything:prompt.${name}`),
      "everything:resources",
    ]);
    forwarder = await startForwarder({
      toolUrl,
      taskId: task.id,
      credentials: {
        issuer: broker.issuer,
        clientId: agent.clientId,
        privateKey: agent.privateKey,
        allowInsecureHttp: true,
      },
    });
    outputDir = await mkdtemp(join(tmpdir(), "writ-conformance-"));
  });

  after(async () => {
    await forwarder?.close();
    await broker?.close();
    if (outputDir !== undefined) await rm(outputDir, { recursive: true, force: true });
  });

  test("server scenarios match expected failures", { timeout: conformanceTimeoutMs + 10_000 }, async (t) => {
    if (skipReason !== undefined) {
      t.skip(skipReason);
      return;
    }
    assert.ok(node22 !== undefined, "Node.js 22 was not found");
    assert.ok(forwarder !== undefined, "the forwarder did not start");
    assert.ok(outputDir !== undefined, "the output folder was not created");

    // The runner exits with 1 whenever a scenario fails, so its exit code is not the verdict here.
    await run(node22, [conformanceCli, "server", "--url", forwarder.url, "--output-dir", outputDir], {
      cwd: outputDir,
      timeout: conformanceTimeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((error: { code?: unknown; killed?: boolean; stderr?: string }) => {
      if (error.killed === true || typeof error.code !== "number") throw error;
    });

    const outcomes = await readOutcomes(outputDir);
    const expected = JSON.parse(await readFile(expectedFailuresFile, "utf8")) as ExpectedFailure[];
    const expectedIds = new Set(expected.map((entry) => entry.scenario));

    const report = [...outcomes].map(([scenario, outcome]) =>
      outcome.passed ? `pass ${scenario}` : `FAIL ${scenario}\n    ${outcome.problems.join("\n    ")}`,
    );
    t.diagnostic(report.join("\n"));

    assert.ok(
      outcomes.size >= 25,
      `expected the whole active suite, the runner reported ${outcomes.size} scenarios`,
    );
    assert.deepEqual(forwarder.errors, [], "the forwarder failed to pass requests on");

    const missing = expected.filter((entry) => !outcomes.has(entry.scenario)).map((entry) => entry.scenario);
    assert.deepEqual(missing, [], "expected-failures.json names scenarios the runner no longer has");

    const unexpected = [...outcomes]
      .filter(([scenario, outcome]) => !outcome.passed && !expectedIds.has(scenario))
      .map(([scenario, outcome]) => `${scenario}: ${outcome.problems.join("; ")}`);
    assert.deepEqual(unexpected, [], "scenarios failed that expected-failures.json does not list");

    const nowPassing = [...outcomes]
      .filter(([scenario, outcome]) => outcome.passed && expectedIds.has(scenario))
      .map(([scenario]) => scenario);
    assert.deepEqual(nowPassing, [], "scenarios pass now; remove them from expected-failures.json");
  });
});
