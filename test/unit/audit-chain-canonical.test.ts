import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import canonicalizeModule from "canonicalize";
import { genesisHash, hashRecord, type AuditRecord } from "../../src/audit/chain.js";

const canonicalize = canonicalizeModule as unknown as (input: unknown) => string;

/** Computes the hash as the chain defines it: SHA-256 over the canonical JSON of the whole record. */
function referenceHash(record: Omit<AuditRecord, "hash">): string {
  return createHash("sha256").update(canonicalize(record)).digest("hex");
}

const base: Omit<AuditRecord, "hash"> = {
  seq: 42,
  time: 1_796_000_000_123,
  kind: "tool_call.allowed",
  actor: "spiffe://example.org/agent/billing-bot",
  task_id: "4d1f0c9e-2b7a-4c55-9f00-0d3c2a1b9e77",
  jti: null,
  data: {
    decision: "allow",
    policies: ["writ.permit_task_actions"],
    risk_score: 0,
    nested: { b: 1, a: [true, null] },
  },
  prev_hash: genesisHash,
  chain_version: 1,
};

test("written-out hash equals the canonical form of the whole record", () => {
  assert.equal(hashRecord(base), referenceHash(base));
});

test("strings that need escaping hash as the canonical form does", () => {
  const record = {
    ...base,
    actor: 'spiffe://example.org/agent/"quoted"\\back\u2028line\u0007',
    kind: "naïve.événement",
    task_id: null,
    jti: "jti-\ud83d\ude00",
    data: { "\u00e9": "é", e: "\n\t", "": "", "10": 1, "9": 2 },
  };
  assert.equal(hashRecord(record), referenceHash(record));
});

test("lone surrogates hash as the canonical form does", () => {
  const record = { ...base, actor: "a\ud800b", data: { k: "\udc00" } };
  assert.equal(hashRecord(record), referenceHash(record));
});

test("non-integer sequence number is refused", () => {
  assert.throws(() => hashRecord({ ...base, seq: 1.5 }), /not a safe integer/);
});
