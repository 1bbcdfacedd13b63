import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { chainVersion, genesisHash, type AuditRecord } from "../../src/audit/chain.js";
import { toOcsfEvent } from "../../src/audit/export/ocsf.js";
import { ocsfValidators } from "./audit-export-support.js";

// These cases cover event kinds that the broker scenario of audit-export.test.ts does not produce,
// built here with the `data` members their writers record. The hashes are placeholders: the mapping
// copies them and does not check the chain.

const agent = "spiffe://example.org/agent/billing-bot";
const delegate = "spiffe://example.org/agent/helper-bot";
const person = "spiffe://example.org/human/2f0c3a4e-4c1b-4d55-9d43-7d8b1d6f0a11";
const gateway = "spiffe://example.org/gateway/edge-1";
const issuer = "https://writ.example.org";
const taskId = "5b0e6a52-3c8f-4a55-b7e3-0a6f8f7f1c2d";

let seq = 0;
function record(
  kind: string,
  actor: string,
  data: Record<string, unknown>,
  extra: Partial<AuditRecord> = {},
): AuditRecord {
  seq++;
  return {
    seq,
    time: 1_780_000_000_000 + seq,
    kind,
    actor,
    task_id: null,
    jti: null,
    data,
    prev_hash: genesisHash,
    hash: seq.toString(16).padStart(64, "0"),
    chain_version: chainVersion,
    ...extra,
  };
}

const decision = (overrides: Record<string, unknown>): Record<string, unknown> => ({
  decision_id: "d-1",
  decision: "allow",
  reason: "permitted by policy",
  sub: agent,
  actors: [],
  tool: "billing",
  action: "read",
  method: "GET",
  path: "/invoices/7",
  policies: ["writ-default-permit"],
  errors: [],
  risk_score: 10,
  jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
  via: null,
  breakglass_id: null,
  approval_id: null,
  ...overrides,
});

const inTask = { task_id: taskId, jti: "6f1d0c1a-7c55-4bb6-9b35-8f8a3ad3e1b0" };

/** Each case: the audit event, then the expected `class_uid`, `activity_id` and `status_id`. */
const cases: [AuditRecord, number, number, number][] = [
  [
    record("token.issued", person, { client_id: person, aud: `${issuer}/v1`, jkt: "k", exp: 1_780_000_300 }),
    3002,
    1,
    1,
  ],
  [
    record("token.refused", "anonymous", { error: "invalid_client", description: "unknown client" }),
    3002,
    1,
    2,
  ],
  [
    record("task.expired", "writ", { status: "expired", reason: "deadline passed" }, { task_id: taskId }),
    3002,
    2,
    1,
  ],
  [
    record(
      "task.revoked",
      person,
      { status: "revoked", reason: "revoked by an operator" },
      { task_id: taskId },
    ),
    3002,
    2,
    1,
  ],
  [record("tool_call.allowed", agent, decision({ breakglass_id: "bg-1" }), inTask), 6003, 2, 1],
  [
    record("tool_call.held", agent, decision({ decision: "deny", action: "pay", method: "POST" }), inTask),
    6003,
    1,
    99,
  ],
  [
    record(
      "tool_call.denied",
      "anonymous",
      decision({
        decision: "deny",
        sub: null,
        tool: null,
        action: null,
        path: null,
        policies: [],
        jkt: null,
      }),
    ),
    6003,
    2,
    2,
  ],
  [record("tool_call.allowed", agent, decision({ method: "DELETE" }), inTask), 6003, 4, 1],
  [record("tool_call.allowed", agent, decision({ method: "PATCH" }), inTask), 6003, 3, 1],
  [record("tool_call.allowed", agent, decision({ method: "PROPFIND", action: null }), inTask), 6003, 99, 1],
  [
    record(
      "tool_call.allowed",
      delegate,
      decision({ method: "POST", mcp_method: "tools/call", path: "read_text_file", actors: [delegate] }),
      inTask,
    ),
    6003,
    99,
    1,
  ],
  [
    record(
      "tool_call.allowed",
      agent,
      decision({ method: "POST", mcp_method: "resources/read", path: "file:///notes" }),
      inTask,
    ),
    6003,
    2,
    1,
  ],
  [
    record("human.created", person, { human: person, display_name: "Ada", roles: ["admin"], jkt: "k" }),
    3004,
    1,
    1,
  ],
  [
    record("gateway.created", person, { gateway, jkt: "k", tls_cert_sha256: null, public_url: null }),
    3004,
    1,
    1,
  ],
  [
    record("binding.created", person, {
      agent,
      binding_id: "b-1",
      binding_kind: "github",
      issuer: "https://token.actions.githubusercontent.com",
      claims: {},
    }),
    3004,
    1,
    1,
  ],
  [
    record("policy.updated", person, {
      policy_id: "no-writes",
      text: "forbid (principal, action, resource);",
    }),
    3004,
    3,
    1,
  ],
  [record("secret.updated", person, { secret: "billing-token" }), 3004, 3, 1],
  [record("signing_key.rotated", person, { kid: "k-2", retired: ["k-1"] }), 3004, 3, 1],
  [
    record(
      "task.delegated",
      agent,
      { parent_task_id: taskId, sub: agent, delegate, actors: [delegate] },
      inTask,
    ),
    3004,
    1,
    1,
  ],
  [
    record("task.joined", person, { sub: agent, tool: "billing", actions: ["read"], jkt: "k" }, inTask),
    3004,
    3,
    1,
  ],
  [record("approval.requested", agent, { approval_id: "a-1", approval_kind: "step_up" }, inTask), 3004, 1, 1],
  [
    record(
      "approval.voted",
      person,
      { approval_id: "a-1", approval_kind: "step_up", decision: "approve" },
      inTask,
    ),
    3004,
    3,
    1,
  ],
  [
    record(
      "approval.granted",
      person,
      { approval_id: "a-1", approval_kind: "step_up", approvers: [person] },
      inTask,
    ),
    3004,
    3,
    1,
  ],
  [
    record(
      "approval.rejected",
      person,
      { approval_id: "a-2", approval_kind: "step_up", approvers: [person] },
      inTask,
    ),
    3004,
    3,
    1,
  ],
  [
    record(
      "approval.used",
      agent,
      { approval_id: "a-1", digest: "x", tool: "billing", action: "pay" },
      inTask,
    ),
    3004,
    3,
    1,
  ],
  [record("approval.expired", "writ", { approval_id: "a-3", approval_kind: "breakglass" }), 3004, 11, 1],
  [record("breakglass.requested", person, { breakglass_id: "bg-1", reason: "outage", agent }), 3004, 1, 1],
  [
    record("breakglass.activated", person, { breakglass_id: "bg-1", reason: "outage", agent }, inTask),
    3004,
    10,
    1,
  ],
  [record("breakglass.cancelled", person, { breakglass_id: "bg-2", reason: "outage", agent }), 3004, 11, 1],
  [
    record("breakglass.expired", "writ", { breakglass_id: "bg-1", reason: "outage", agent }, inTask),
    3004,
    11,
    1,
  ],
  [
    record("breakglass.noted", person, { breakglass_id: "bg-1", note: "rotated the key" }, inTask),
    3004,
    3,
    1,
  ],
  [record("credential.released", gateway, { tool: "billing", secret: "billing-token", gateway }), 3004, 2, 1],
  [record("lease.created", "writ", { lease_id: "l-1", role: "writ_task_1" }, inTask), 3004, 1, 1],
  [
    record("alert_delivery.failed", "writ", {
      delivery_id: "x",
      event: "breakglass.used",
      attempt: 1,
      final: false,
    }),
    0,
    99,
    2,
  ],
  [record("audit.checkpointed", "writ", { seq: 40 }), 0, 99, 1],
];

describe("OCSF mapping of every kind", () => {
  const validators = ocsfValidators();

  for (const [input, classUid, activityId, statusId] of cases) {
    test(`${input.kind} maps to class ${classUid}`, () => {
      const event = JSON.parse(JSON.stringify(toOcsfEvent(input, () => undefined))) as Record<
        string,
        unknown
      >;
      const validate = validators.get(classUid);
      assert.ok(validate !== undefined);
      assert.equal(event.class_uid, classUid);
      assert.equal(event.activity_id, activityId);
      assert.equal(event.status_id, statusId);
      assert.ok(validate(event), JSON.stringify(validate.errors));
      assert.deepEqual((event.unmapped as { writ: AuditRecord }).writ, input);
    });
  }

  test("break-glass call is high severity", () => {
    const allowed = toOcsfEvent(cases[4]?.[0] as AuditRecord, () => undefined);
    assert.equal(allowed.severity_id, 4);
  });

  test("unknown task end names nobody", () => {
    const ended = toOcsfEvent(cases[2]?.[0] as AuditRecord, () => undefined);
    assert.deepEqual(ended.user, { name: "unknown", type_id: 0, type: "Unknown" });
  });

  test("refusal carries OAuth error", () => {
    const refused = toOcsfEvent(cases[1]?.[0] as AuditRecord, () => undefined);
    assert.equal(refused.status_code, "invalid_client");
    assert.equal(refused.status_detail, "unknown client");
  });

  test("delegated MCP call names acting delegate", () => {
    const call = toOcsfEvent(cases[10]?.[0] as AuditRecord, () => undefined);
    assert.equal((call.actor as { user: { uid: string } }).user.uid, delegate);
    assert.equal((call.api as { operation: string }).operation, "read");
  });

  describe("schema rejects broken events", () => {
    const valid = JSON.parse(
      JSON.stringify(toOcsfEvent(cases[0]?.[0] as AuditRecord, () => undefined)),
    ) as Record<string, unknown>;
    const validate = validators.get(3002);

    test("accepts the unbroken event", () => {
      assert.equal(validate?.(valid), true);
    });

    test("rejects missing user", () => {
      const { user: _user, ...broken } = valid;
      assert.equal(validate?.(broken), false);
    });

    test("rejects unknown member", () => {
      assert.equal(validate?.({ ...valid, verdict: "allow" }), false);
    });

    test("rejects wrong class_uid", () => {
      assert.equal(validate?.({ ...valid, class_uid: 6003 }), false);
    });

    test("rejects mismatched type_uid", () => {
      assert.equal(validate?.({ ...valid, type_uid: 300250 }), false);
    });

    test("rejects product without vendor", () => {
      const metadata = valid.metadata as { product: Record<string, unknown> };
      const { vendor_name: _vendor, ...product } = metadata.product;
      assert.equal(validate?.({ ...valid, metadata: { ...metadata, product } }), false);
    });
  });
});
