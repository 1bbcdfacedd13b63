import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { scan } from "../../src/scan/scan.js";
import { renderTable } from "../../src/scan/report/table.js";
import { renderSarif } from "../../src/scan/report/sarif.js";
import { sharedDataDir } from "../support/shared-data.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "scan");
const data = sharedDataDir();
const keyFile = "/nonexistent/scan-key";

test("kubernetes jti from two addresses", async () => {
  const result = await scan({ inputs: [join(fixtures, "k8s-jti-two-sources.jsonl")], keyFile });
  const credential = "k8s:JTI=7d6c2a50-3f6e-4d4c-bb1f-2a8e9b0c1d2e";
  const outside = result.findings.find(
    (f) => f.kind === "credential-outside-workload" && f.credential === credential,
  );
  assert.ok(outside !== undefined);
  assert.equal(outside.arguments[1], "billing-5d8f7c9b6-x2kqz");
  const shared = result.findings.find((f) => f.kind === "shared-credential" && f.credential === credential);
  assert.equal(shared?.workloads.length, 2);
});

test("github token in two repositories", async () => {
  const result = await scan({ inputs: [join(fixtures, "github-token-two-repos.jsonl")], keyFile });
  const shared = result.findings.find((f) => f.kind === "shared-credential");
  assert.ok(shared !== undefined);
  const repositories = new Set(shared.workloads.map((workload) => workload.repository));
  assert.deepEqual(repositories, new Set(["acme/payments-api", "acme/web-frontend"]));
});

test("terminal output strips escapes", async () => {
  const result = await scan({ inputs: [join(fixtures, "hostile-user-agent.jsonl")], keyFile });
  const output = renderTable(result).join("\n");
  assert.match(output, /credential-outside-workload/);
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(output, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
});

test("sarif carries values as arguments", async () => {
  const result = await scan({ inputs: [join(fixtures, "hostile-user-agent.jsonl")], keyFile });
  const sarif = renderSarif(result, "0.1.0") as {
    version: string;
    runs: {
      results: {
        message: { text: string; arguments: string[] };
        locations: { physicalLocation: { region: { startLine: number } } }[];
      }[];
    }[];
  };
  assert.equal(sarif.version, "2.1.0");
  const results = sarif.runs[0]?.results ?? [];
  const hostile = results.find((entry) =>
    entry.message.arguments.some((value) => value.includes("<script>")),
  );
  assert.ok(hostile !== undefined);
  assert.doesNotMatch(hostile.message.text, /<script>/);
  assert.ok(results.every((entry) => entry.locations[0]?.physicalLocation.region.startLine === 1));
});

test("gzip and records form read alike", async () => {
  const directory = await mkdtemp(join(tmpdir(), "writ-scan-"));
  const source = join(
    data,
    "invictus-aws-dataset",
    "CloudTrail",
    "218007301253_CloudTrail_us-east-1_20230710T1145Z_7xgocspSowgK0Gto.json",
  );
  const compressed = join(directory, "delivery.json.gz");
  await writeFile(compressed, gzipSync(await readFile(source)));
  const plain = await scan({ inputs: [source], keyFile });
  const gzipped = await scan({ inputs: [compressed], keyFile });
  assert.ok(plain.records > 0);
  assert.equal(gzipped.records, plain.records);
  assert.equal(gzipped.aggregate.credentials.size, plain.aggregate.credentials.size);
});

test("malformed lines keep their line numbers", async () => {
  const directory = await mkdtemp(join(tmpdir(), "writ-scan-"));
  const file = join(directory, "mixed.jsonl");
  const lines = (await readFile(join(fixtures, "k8s-jti-two-sources.jsonl"), "utf8")).trim().split("\n");
  await writeFile(
    file,
    [lines[0], "{not json", lines[1], '{"kind":"Event","verb":"get"}', lines[2]].join("\n"),
  );
  const result = await scan({ inputs: [file], keyFile });
  assert.deepEqual(
    result.malformed.map((entry) => entry.location.line),
    [2, 4],
  );
  assert.equal(result.aggregate.events, 3);
});

test("generic secrets get hmac fingerprints", async () => {
  const directory = await mkdtemp(join(tmpdir(), "writ-scan-"));
  const file = join(directory, "app.jsonl");
  const secret = "hunter2-shared-api-key";
  await writeFile(
    file,
    [
      {
        key: secret,
        who: "svc",
        ip: "10.0.0.1",
        ua: "python-requests/2.31",
        ts: "2025-03-04T10:00:00Z",
        env: "prod",
      },
      {
        key: secret,
        who: "svc",
        ip: "10.0.0.2",
        ua: "node-fetch/3.3",
        ts: "2025-03-04T10:01:00Z",
        env: "staging",
      },
    ]
      .map((line) => JSON.stringify(line))
      .join("\n"),
  );
  const scanKey = join(directory, "scan-key");
  const result = await scan({
    inputs: [file],
    keyFile: scanKey,
    format: "generic",
    mapping: {
      credential: "key",
      actor: "who",
      source: "ip",
      user_agent: "ua",
      time: "ts",
      environment: "env",
    },
  });
  assert.equal((await stat(scanKey)).mode & 0o777, 0o600);
  assert.doesNotMatch(JSON.stringify(result.findings), /hunter2/);
  const cross = result.findings.find((f) => f.kind === "cross-environment-credential");
  assert.match(cross?.credential ?? "", /^generic:hmac:[0-9a-f]{32}$/);
  assert.deepEqual(cross?.owasp, ["NHI8"]);
});
