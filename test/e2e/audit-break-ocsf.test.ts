// Fuzzes the OCSF mapping with every event kind writ records. Each kind is crossed with unusual but
// storable event data: missing members, members of another type, odd identities and extreme times.
// Every exported event must validate against the OCSF 1.3.0 JSON Schemas in test/data/ocsf/.
// `client_ip` is always an address here: the gateway records the socket's peer address
// (`request.ip` with trustProxy off), and a value that is not an IP address fails the schema's
// `ip` pattern.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { AuditRecord } from "../../src/audit/chain.js";
import { toOcsfEvent } from "../../src/audit/export/ocsf.js";
import { ocsfValidators } from "./audit-export-support.js";

const kinds = [
  "account.created",
  "account.expired",
  "account.rotated",
  "agent.created",
  "agent.disabled",
  "agent.enabled",
  "agent.revoked",
  "alert_delivery.failed",
  "alert_delivery.succeeded",
  "approval.expired",
  "approval.requested",
  "approval.used",
  "approval.voted",
  "binding.created",
  "breakglass.activated",
  "breakglass.approved",
  "breakglass.cancelled",
  "breakglass.noted",
  "breakglass.rejected",
  "breakglass.requested",
  "breakglass.used",
  "credential.denied",
  "credential.fetched",
  "credential.released",
  "gateway.created",
  "human.created",
  "lease.cleaned",
  "lease.cleanup_failed",
  "lease.created",
  "policy.created",
  "policy.removed",
  "policy.updated",
  "secret.created",
  "secret.updated",
  "signing_key.rotated",
  "system.created",
  "task.delegated",
  "task.ended",
  "task.expired",
  "task.joined",
  "task.revoked",
  "task.started",
  "template.created",
  "token.issued",
  "token.refused",
  "token.revoked",
  "tool.created",
  "tool_call.allowed",
  "tool_call.denied",
  "tool_call.held",
  "x",
  ".created",
  "a.",
  "a.b.created",
];

const actors = [
  "writ",
  "anonymous",
  "",
  "spiffe://example.org/agent/a",
  "spiffe://example.org/",
  "not a spiffe id",
];

const dataVariants: Record<string, unknown>[] = [
  {},
  {
    tool: "github",
    action: "read",
    method: "GET",
    path: "/repos/x",
    decision: "allow",
    policies: ["p1"],
    jkt: "abc",
    client_ip: "::ffff:127.0.0.1",
    decision_id: "d1",
    aud: "https://b/tools/github",
    exp: 1_700_000_000,
    agent: "spiffe://example.org/agent/a",
    subject: "spiffe://example.org/agent/a",
    policy_id: "p1",
    breakglass_id: "bg1",
    note: "n",
    reason: "r",
    error: "invalid_grant",
    description: "d",
  },
  {
    tool: 7,
    action: 1,
    method: "BREW",
    path: 3,
    decision: "maybe",
    policies: [1, null, "p"],
    jkt: 5,
    client_ip: "192.0.2.7",
    decision_id: 9,
    aud: 1,
    exp: 1.5,
    agent: 2,
    subject: 3,
    policy_id: 4,
    breakglass_id: 1,
    note: 1,
    reason: 1,
    error: 1,
    description: 1,
    mcp_method: "tools/call",
  },
  { method: "", path: "", tool: "", mcp_method: "", client_ip: "", exp: -1, error: "", reason: "" },
  { client_ip: "2001:db8::1", exp: 9_007_199_254_740 },
];

const times = [0, 1, 8_640_000_000_000_000];

test("ocsf export fuzz validates", () => {
  const validators = ocsfValidators();
  const failures: string[] = [];
  let seq = 0;
  for (const kind of kinds)
    for (const actor of actors)
      for (const data of dataVariants)
        for (const time of times)
          for (const ids of [
            { jti: null, task_id: null },
            { jti: "j1", task_id: "t1" },
          ]) {
            seq++;
            const record: AuditRecord = {
              seq,
              time,
              kind,
              actor,
              ...ids,
              data,
              prev_hash: "0".repeat(64),
              hash: "f".repeat(64),
              chain_version: 1,
            };
            const event = JSON.parse(JSON.stringify(toOcsfEvent(record, () => undefined))) as {
              class_uid: number;
            };
            const validate = validators.get(event.class_uid);
            if (validate === undefined) {
              failures.push(`${kind}: class ${event.class_uid} has no schema`);
              continue;
            }
            if (!validate(event)) {
              failures.push(
                `${kind} actor=${JSON.stringify(actor)} data#${dataVariants.indexOf(data)} time=${time} ${JSON.stringify(ids)}: ${(validate.errors ?? []).map((e) => `${e.instancePath} ${e.keyword}`).join("; ")}`,
              );
            }
          }
  const unique = [
    ...new Set(
      failures.map((f) =>
        f
          .replace(/time=\d+ /, "")
          .replace(/ \{"jti.*?\}:/, ":")
          .replace(/actor=\S+ /, ""),
      ),
    ),
  ];
  assert.ok(seq > 9000, `only ${seq} events were generated`);
  assert.deepEqual(unique, []);
});
