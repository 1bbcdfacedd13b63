import { test } from "node:test";
import assert from "node:assert/strict";
import { mayApprove, parseApprovalRule, parseApprovalSpec } from "../../src/approvals/rule.js";
import type { Human } from "../../src/identity/humans.js";
import { isWritError } from "../../src/errors/writ-error.js";

const ann = "spiffe://example.org/human/6f1c0f55-0d0b-4d4e-9a39-6d1b1d7e2a10";
const other = "spiffe://example.org/human/0b7e3c9a-5a39-4a7f-8f55-2f0d3c1a9e44";

function person(spiffeId: string, displayName: string, roles: Human["roles"]): Human {
  return {
    id: spiffeId.slice(spiffeId.lastIndexOf("/") + 1),
    spiffe_id: spiffeId,
    display_name: displayName,
    email: null,
    roles,
    public_jwk: {},
    jkt: "",
    status: "active",
    created_at: 0,
  };
}

test("approval rule parsing accepts valid rules", () => {
  assert.deepEqual(parseApprovalRule({ role: "approver", count: 2 }, "deploy"), {
    role: "approver",
    count: 2,
  });
  assert.deepEqual(parseApprovalRule({ people: [ann, ann], count: 1 }, "deploy"), {
    people: [ann],
    count: 1,
  });
  assert.deepEqual(parseApprovalSpec("approver:1", "deploy"), { role: "approver", count: 1 });
  assert.deepEqual(parseApprovalSpec(`people:${ann},${other}:2`, "deploy"), {
    people: [ann, other],
    count: 2,
  });
});

test("approval rule parsing rejects invalid rules", () => {
  const cases: unknown[] = [
    { count: 1 },
    { role: "owner", count: 1 },
    { role: "approver", count: 0 },
    { role: "approver", count: 11 },
    { role: "approver", count: 1.5 },
    { people: ["Ann"], count: 1 },
    { people: ["spiffe://example.org/agent/ann"], count: 1 },
    { people: [ann], count: 2 },
    { role: "approver", count: 1, extra: true },
    "approver:x",
    [],
    null,
  ];
  for (const rule of cases) {
    assert.throws(
      () => parseApprovalRule(rule, "deploy"),
      (error) => isWritError(error) && error.code === "invalid_request",
      JSON.stringify(rule),
    );
  }
});

test("approver matched by SPIFFE ID, not name", () => {
  const rule = { roles: [], people: [ann], count: 1 };
  assert.equal(mayApprove(rule, person(ann, "Ann", [])), true);
  for (const lookalike of ["Ann", "ANN", "\uff21\uff4e\uff4e", "Ann\u200b"]) {
    assert.equal(mayApprove(rule, person(other, lookalike, [])), false, lookalike);
  }
});

test("approver matched by role", () => {
  const rule = { roles: ["approver" as const], people: [], count: 1 };
  assert.equal(mayApprove(rule, person(ann, "Ann", ["approver"])), true);
  assert.equal(mayApprove(rule, person(ann, "Ann", ["auditor"])), false);
  assert.equal(mayApprove(rule, { ...person(ann, "Ann", ["approver"]), status: "disabled" }), false);
});
