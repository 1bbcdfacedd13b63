import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ValidateFunction } from "ajv";
import { decodeJwt } from "jose";
import type * as oauth from "oauth4webapi";
import { hashRecord, type AuditRecord } from "../../src/audit/chain.js";
import { exportFileType, readExportFile, type ExportHeader } from "../../src/audit/export-file.js";
import { ocsfVersion } from "../../src/audit/export/ocsf.js";
import type { Task } from "../../src/tasks/tasks.js";
import {
  discover,
  refusalOf,
  registerAgent,
  requestTaskToken,
  startTask,
  type AgentToken,
  type TestAgent,
} from "../support/agent-client.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { callTool, startRecordingUpstream, type RecordingUpstream } from "../support/gateway-client.js";
import { ocsfValidators } from "./audit-export-support.js";

const upstreamBearer = "upstream-bearer-5be2c81f";

type OcsfEvent = {
  class_uid: number;
  activity_id: number;
  status_id: number;
  type_uid: number;
  metadata: {
    version: string;
    sequence: number;
    uid: string;
    product: { name: string };
    profiles?: string[];
  };
  unmapped: { writ: AuditRecord };
  [member: string]: unknown;
};

/** Reads `GET /v1/audit/export` to its end and returns its lines. */
async function exportText(broker: TestBroker, query: string): Promise<{ status: number; lines: string[] }> {
  const response = await broker.admin.open(
    "GET",
    `/v1/audit/export?${query}`,
    undefined,
    "application/x-ndjson",
  );
  const text = await response.text();
  return { status: response.status, lines: text.split("\n").filter((line) => line !== "") };
}

/** Polls the audit log until an event of every kind in `kinds` is there; such events are written after the effect. */
async function waitForKinds(broker: TestBroker, kinds: string[]): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const { lines } = await exportText(broker, "format=jsonl");
    const present = new Set(lines.slice(1).map((line) => (JSON.parse(line) as AuditRecord).kind));
    if (kinds.every((kind) => present.has(kind))) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`audit events of kinds ${kinds.join(", ")} were not all written`);
}

describe("audit export", () => {
  let broker: TestBroker;
  let upstream: RecordingUpstream;
  let as: oauth.AuthorizationServer;
  let worker: TestAgent;
  let task: Task;
  let token: AgentToken;
  let validators: Map<number, ValidateFunction>;
  /** Every OCSF event of the full export, in line order. */
  let ocsf: OcsfEvent[];
  /** The JSON-lines export: its header and events. */
  let header: ExportHeader;
  let records: AuditRecord[];

  /** The OCSF events exported for the audit events of `kind`. */
  const ocsfOf = (kind: string): OcsfEvent[] => ocsf.filter((event) => event.unmapped.writ.kind === kind);

  before(async () => {
    validators = ocsfValidators();
    upstream = await startRecordingUpstream({
      bearer: upstreamBearer,
      basic: { user: "unused", password: "unused-9d1f" },
      query: { name: "unused", value: "unused-3c7a" },
    });
    broker = await startTestBroker();
    as = await discover(broker.issuer);

    // Admin changes: a secret, a tool, policies (one added and removed), agents enabled and disabled.
    await broker.admin.call("POST", "/v1/secrets/gh-token", { value: upstreamBearer });
    await broker.admin.call("POST", "/v1/tools", {
      name: "gh",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /repos/**" },
        { name: "write", spec: "POST /repos/**" },
      ],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:gh-token}"] },
    });
    await broker.admin.call("POST", "/v1/policies", {
      id: "no-writes",
      text: 'forbid (principal, action == Action::"gh:write", resource);',
    });
    await broker.admin.call("POST", "/v1/policies", {
      id: "short-lived",
      text: 'forbid (principal, action == Action::"gh:read", resource) when { context.risk_score > 1000 };',
    });
    await broker.admin.call("POST", "/v1/policies/short-lived/remove");
    worker = await registerAgent(broker, "worker");
    await registerAgent(broker, "bystander");
    await broker.admin.call("POST", "/v1/agents/bystander/disable");
    await broker.admin.call("POST", "/v1/agents/bystander/enable");

    // Tokens issued and refused, gateway decisions allowed and denied.
    task = await startTask(broker, worker.name, ["gh:read", "gh:write"]);
    token = await requestTaskToken(as, worker, task.id);
    await refusalOf(requestTaskToken(as, worker, "no-such-task"));
    const allowed = await callTool(broker.issuer, {
      target: "/tools/gh/repos/acme/issues",
      token: token.accessToken,
      proofKeys: token.dpopKeys,
    });
    assert.equal(allowed.status, 200);
    const denied = await callTool(broker.issuer, {
      method: "POST",
      target: "/tools/gh/repos/acme/issues",
      token: token.accessToken,
      proofKeys: token.dpopKeys,
      body: Buffer.from("{}"),
    });
    assert.equal(denied.status, 403);

    // Revocations: one token, the task, and the other agent.
    await broker.admin.call("POST", "/v1/revoke", { token: decodeJwt(token.accessToken).jti });
    await broker.admin.call("POST", `/v1/tasks/${task.id}/end`);
    await broker.admin.call("POST", "/v1/revoke", { agent: "bystander" });
    await waitForKinds(broker, ["token.revoked", "task.ended", "agent.revoked"]);

    ocsf = (await exportText(broker, "format=ocsf")).lines.map((line) => JSON.parse(line) as OcsfEvent);
    const jsonl = await exportText(broker, "format=jsonl");
    header = JSON.parse(jsonl.lines[0] ?? "{}") as ExportHeader;
    records = jsonl.lines.slice(1).map((line) => JSON.parse(line) as AuditRecord);
  });

  after(async () => {
    await broker.close();
    await upstream.close();
  });

  describe("OCSF", () => {
    test("every event validates against its class schema", () => {
      assert.notEqual(ocsf.length, 0, "no event was exported");
      for (const event of ocsf) {
        const validate = validators.get(event.class_uid);
        assert.ok(
          validate !== undefined,
          `no schema for class_uid ${event.class_uid} (${event.unmapped.writ.kind})`,
        );
        const valid = validate(event);
        assert.ok(
          valid,
          `${event.unmapped.writ.kind} (seq ${event.metadata.sequence}): ${JSON.stringify(validate.errors)}`,
        );
      }
    });

    test("one event per audit event in order", () => {
      assert.deepEqual(
        ocsf.map((event) => event.metadata.sequence),
        records.map((record) => record.seq),
      );
    });

    test("metadata names version and product", () => {
      for (const event of ocsf) {
        assert.equal(event.metadata.version, ocsfVersion);
        assert.equal(event.metadata.product.name, "writ");
        assert.equal(event.metadata.uid, event.unmapped.writ.hash);
      }
    });

    test("type_uid combines class and activity", () => {
      for (const event of ocsf) assert.equal(event.type_uid, event.class_uid * 100 + event.activity_id);
    });

    const mapping: [kind: string, classUid: number, activityId: number, statusId: number][] = [
      ["token.issued", 3002, 1, 1],
      ["token.refused", 3002, 1, 2],
      ["token.revoked", 3002, 2, 1],
      ["task.ended", 3002, 2, 1],
      ["agent.revoked", 3002, 2, 1],
      ["tool_call.allowed", 6003, 2, 1],
      ["tool_call.denied", 6003, 1, 2],
      ["agent.created", 3004, 1, 1],
      ["agent.disabled", 3004, 9, 1],
      ["agent.enabled", 3004, 8, 1],
      ["tool.created", 3004, 1, 1],
      ["policy.created", 3004, 1, 1],
      ["policy.removed", 3004, 4, 1],
      ["secret.created", 3004, 1, 1],
      ["task.started", 3004, 1, 1],
    ];
    for (const [kind, classUid, activityId, statusId] of mapping) {
      test(`${kind} maps to class ${classUid} activity ${activityId}`, () => {
        const events = ocsfOf(kind);
        assert.ok(events.length > 0, `no ${kind} event was exported`);
        for (const event of events) {
          assert.equal(event.class_uid, classUid);
          assert.equal(event.activity_id, activityId);
          assert.equal(event.status_id, statusId);
        }
      });
    }

    test("token issuance names agent and session", () => {
      const issued = ocsfOf("token.issued").find(
        (event) => event.unmapped.writ.jti === decodeJwt(token.accessToken).jti,
      );
      assert.ok(issued !== undefined);
      assert.deepEqual((issued.user as { uid: string }).uid, worker.clientId);
      assert.equal((issued.session as { uid: string }).uid, decodeJwt(token.accessToken).jti);
      assert.equal((issued.service as { name: string }).name, "gh");
    });

    test("task end names the task's agent", () => {
      const [ended] = ocsfOf("task.ended");
      assert.equal((ended?.user as { uid: string } | undefined)?.uid, worker.clientId);
    });

    test("denied call carries deciding policy", () => {
      const [denied] = ocsfOf("tool_call.denied");
      const actor = denied?.actor as {
        user: { uid: string };
        authorizations: { decision: string; policy?: { uid: string } }[];
      };
      assert.equal(actor.user.uid, worker.clientId);
      assert.deepEqual(actor.authorizations, [
        { decision: "deny", policy: { uid: "no-writes", name: "no-writes", is_applied: true } },
      ]);
    });

    test("allowed call carries api and resource", () => {
      const [allowed] = ocsfOf("tool_call.allowed");
      const api = allowed?.api as { operation: string; service: { name: string } };
      assert.equal(api.operation, "read");
      assert.equal(api.service.name, "gh");
      assert.deepEqual(allowed?.resources, [
        { name: "/repos/acme/issues", type: "HTTP path", namespace: "gh" },
      ]);
      assert.equal(
        (allowed?.actor as { authorizations: { decision: string }[] }).authorizations[0]?.decision,
        "allow",
      );
      const source = allowed?.src_endpoint as { ip?: string; uid?: string };
      assert.equal(source.ip, "127.0.0.1");
      assert.match(source.uid ?? "", /^[A-Za-z0-9_-]{43}$/);
    });

    test("policy change names the policy", () => {
      const [created] = ocsfOf("policy.created");
      const entity = created?.entity as { type_id: number; policy: { uid: string } };
      assert.equal(entity.type_id, 5);
      assert.equal(entity.policy.uid, "no-writes");
      assert.deepEqual(created?.metadata.profiles, ["host"]);
    });
  });

  describe("JSON lines", () => {
    test("header embeds audit keys", () => {
      assert.equal(header.type, exportFileType);
      assert.ok(Array.isArray(header.audit_jwks.keys));
      assert.equal(header.after, undefined);
    });

    test("sequence numbers are continuous", () => {
      assert.deepEqual(
        records.map((record) => record.seq),
        records.map((_, index) => index + 1),
      );
    });

    test("each line hashes to its hash", () => {
      for (const record of records) {
        const { hash, ...unhashed } = record;
        assert.equal(hashRecord(unhashed), hash, `event ${record.seq} does not hash to its stored hash`);
      }
    });

    test("each line links to the one before", () => {
      for (const [index, record] of records.entries()) {
        if (index === 0) continue;
        assert.equal(record.prev_hash, records[index - 1]?.hash, `event ${record.seq} does not link back`);
      }
    });

    test("export file parses", async () => {
      const file = join(broker.dataDir, "export.jsonl");
      const { lines } = await exportText(broker, "format=jsonl");
      await writeFile(file, `${lines.join("\n")}\n`);
      const parsed = await readExportFile(file);
      assert.equal(parsed.events.length, records.length);
    });

    test("partial export names event before", async () => {
      const { lines } = await exportText(broker, "format=jsonl&after=5");
      const partialHeader = JSON.parse(lines[0] ?? "{}") as ExportHeader;
      assert.deepEqual(partialHeader.after, { seq: 5, hash: records[4]?.hash });
      assert.equal((JSON.parse(lines[1] ?? "{}") as AuditRecord).seq, 6);
    });
  });

  describe("invalid requests", () => {
    for (const [query, why] of [
      ["format=xml", "an unknown format"],
      ["after=-1", "a negative sequence number"],
      ["after=abc", "a sequence number that is not a number"],
      ["follow=yes", "a follow flag that is not true or false"],
      ["format=jsonl&after=100000", "a start after an event that does not exist"],
    ]) {
      test(`export rejects ${why}`, async () => {
        const response = await broker.admin.open("GET", `/v1/audit/export?${query}`);
        assert.equal(response.status, 400);
        assert.equal(((await response.json()) as { error: string }).error, "invalid_request");
      });
    }
  });
});
