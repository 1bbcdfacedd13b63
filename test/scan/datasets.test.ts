import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Finding, FindingKind } from "../../src/scan/model.js";
import { scan } from "../../src/scan/scan.js";
import { sharedDataDir } from "../support/shared-data.js";

const data = sharedDataDir();
const keyFile = "/nonexistent/scan-key";

function find(findings: Finding[], kind: FindingKind, credential: string): Finding | undefined {
  return findings.find((finding) => finding.kind === kind && finding.credential === credential);
}

test("invictus: terraform and stratus share a key", async () => {
  const result = await scan({ inputs: [join(data, "invictus-aws-dataset", "CloudTrail")], keyFile });
  assert.equal(result.records, 2900);
  assert.equal(result.malformedCount, 0);
  const shared = find(result.findings, "shared-credential", "aws:AKIATFQR7NSC8Q4X20BJ");
  assert.ok(shared !== undefined);
  assert.equal(shared.severity, "critical");
  assert.deepEqual(shared.owasp, ["NHI9"]);
  assert.deepEqual(
    shared.workloads.map((workload) => workload.id),
    ["terraform from 192.168.10.20", "stratus-red-team from 192.168.10.20"],
  );
  assert.equal(shared.workloads[0]?.count, 1938);
  assert.equal(shared.workloads[1]?.count, 166);
  assert.ok(find(result.findings, "long-lived-credential", "aws:AKIATFQR7NSC8Q4X20BJ") !== undefined);
  assert.ok(find(result.findings, "human-credential-automation", "aws:AKIATFQR7NSC8Q4X20BJ") !== undefined);
});

test("invictus: instance credentials used off the instance", async () => {
  const result = await scan({ inputs: [join(data, "invictus-aws-dataset", "CloudTrail")], keyFile });
  const credential = "aws:instance-session:stratus-red-team-ec2-steal-credentials-role/i-0dbc91f429e48eeed";
  const outside = find(result.findings, "credential-outside-workload", credential);
  assert.ok(outside !== undefined);
  assert.equal(outside.severity, "critical");
  assert.equal(outside.arguments[1], "i-0dbc91f429e48eeed");
  assert.match(outside.arguments[2] ?? "", /3\.225\.16\.109/);
  assert.match(outside.arguments[2] ?? "", /192\.168\.10\.20/);
});

test("invictus: aws internal callers are no source", async () => {
  const result = await scan({ inputs: [join(data, "invictus-aws-dataset", "CloudTrail")], keyFile });
  for (const usage of result.aggregate.credentials.values()) {
    for (const source of usage.sources.values.keys()) {
      assert.notEqual(source, "AWS Internal");
      assert.doesNotMatch(source, /amazonaws\.com$/);
    }
  }
});

test("stratus: stolen instance session seen at operator address", async () => {
  const result = await scan({
    inputs: [join(data, "stratus-red-team-detonation-logs", "detonation-logs")],
    keyFile,
  });
  assert.equal(result.records, 310);
  assert.equal(result.malformedCount, 0);
  const credential = "aws:instance-session:stratus-red-team-ec2-steal-credentials-role/i-786a3A8B5C0d92eF4";
  const outside = find(result.findings, "credential-outside-workload", credential);
  assert.ok(outside !== undefined);
  assert.equal(outside.arguments[2], "18.236.253.47");
  assert.match(outside.arguments[3] ?? "", /aws:AKIA/);
  assert.match(outside.location.file, /ec2-steal-instance-credentials\.json$/);
});

test("otrf: logstash lines reveal a stolen instance key", async () => {
  const file = join(
    data,
    "otrf-aws-ec2-proxy-s3-exfiltration",
    "ec2_proxy_s3_exfiltration_2020-09-14011940.json",
  );
  const result = await scan({ inputs: [file], keyFile });
  assert.equal(result.records, 103);
  assert.equal(result.malformedCount, 0);
  const credential = "aws:instance-session:MordorNginxStack-BankingWAFRole-9S3E0UAE1MM0/i-0317f6c6b66ae9c40";
  const outside = find(result.findings, "credential-outside-workload", credential);
  assert.ok(outside !== undefined);
  assert.match(outside.arguments[2] ?? "", /Darwin\/19\.5\.0/);
  const interactive = find(result.findings, "automation-credential-interactive", credential);
  assert.deepEqual(interactive?.owasp, ["NHI10"]);
  assert.equal(find(result.findings, "shared-credential", "aws:ASIA5FLZVX4OI4ZDQJOL"), undefined);
});

test("falco: malformed event reported, scan continues", async () => {
  const result = await scan({ inputs: [join(data, "falco-k8s-audit-events")], keyFile });
  assert.equal(result.records, 52);
  assert.equal(result.malformedCount, 1);
  assert.match(result.malformed[0]?.location.file ?? "", /fal_01_003\.json$/);
  assert.equal(result.malformed[0]?.location.line, 1);
  const legacy = find(
    result.findings,
    "long-lived-credential",
    "k8s:system:serviceaccount:kube-system:replicaset-controller",
  );
  assert.equal(legacy?.severity, "low");
  assert.equal(result.aggregate.credentials.has("k8s:system:anonymous"), false);
});

test("falco: secret values never reach findings", async () => {
  const result = await scan({ inputs: [join(data, "falco-k8s-audit-events")], keyFile });
  const text = JSON.stringify(result.findings);
  assert.doesNotMatch(text, /ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRwWkNJNklpSjk|password|data":/);
});

test("panther eks: pod token used from two addresses", async () => {
  const result = await scan({
    inputs: [join(data, "panther-analysis-test-events", "eks-audit.jsonl")],
    keyFile,
  });
  const outside = find(
    result.findings,
    "credential-outside-workload",
    "k8s:system:serviceaccount:kube-system:coredns",
  );
  assert.ok(outside !== undefined);
  assert.equal(outside.arguments[1], "coredns-57ff979f67-bl27n");
  assert.match(outside.arguments[2] ?? "", /5\.5\.5\.5/);
  assert.ok(
    result.malformed.every((entry) => entry.reason === "Kubernetes audit event without user.username"),
  );
});

test("panther github: one token across toolchains", async () => {
  const result = await scan({
    inputs: [join(data, "panther-analysis-test-events", "github-audit.jsonl")],
    keyFile,
  });
  const shared = find(result.findings, "shared-credential", "github:developer:personal_access_token");
  assert.ok(shared !== undefined);
  assert.deepEqual(
    new Set(shared.workloads.map((workload) => workload.toolchain)),
    new Set(["npm", "yarn", "ab"]),
  );
  const app = find(result.findings, "automation-credential-interactive", "github:suspicious-user:github_app");
  assert.deepEqual(app?.owasp, ["NHI10"]);
  const hashed = find(
    result.findings,
    "long-lived-credential",
    "github:hashed_token:0771cae4d170dc02a6ff393d9946cd684d6145c1=",
  );
  assert.deepEqual(hashed?.owasp, ["NHI7"]);
});
