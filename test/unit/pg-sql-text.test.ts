import assert from "node:assert/strict";
import { test } from "node:test";
import { WritError } from "../../src/errors/writ-error.js";
import { parseGrantClause } from "../../src/systems/grant-clause.js";
import { identifier, integer, literal, statement, type SqlPart } from "../../src/systems/sql-text.js";

test("identifier quoting", () => {
  const cases: [string, string][] = [
    ["writ_admin", '"writ_admin"'],
    ['x"; DROP ROLE writ_admin; --', '"x""; DROP ROLE writ_admin; --"'],
    ["O'Brien", `"O'Brien"`],
    ["writ_0f6c1a0e-2b7d-4c55-9a55-0d2b8a7f9e11", '"writ_0f6c1a0e-2b7d-4c55-9a55-0d2b8a7f9e11"'],
  ];
  for (const [name, quoted] of cases) assert.equal(statement`${identifier(name)}`, quoted, name);
});

test("identifier rejects what PostgreSQL would alter", () => {
  for (const name of ["", "nul\0byte", "x".repeat(64), "é".repeat(32)]) {
    assert.throws(
      () => identifier(name),
      (error: unknown) => error instanceof WritError && error.code === "invalid_request",
    );
  }
  assert.doesNotThrow(() => identifier("x".repeat(63)));
});

test("literal quoting", () => {
  const cases: [string, string][] = [
    ["plain", "'plain'"],
    ["O'Brien", "'O''Brien'"],
    ["'; DROP ROLE writ_admin; --", "'''; DROP ROLE writ_admin; --'"],
    ["back\\slash'", "E'back\\\\slash'''"],
  ];
  for (const [value, quoted] of cases) assert.equal(statement`${literal(value)}`, quoted, value);
  assert.throws(() => literal("nul\0"), WritError);
});

test("statement accepts only quoted parts", () => {
  assert.equal(statement`GRANT ${identifier("g")} TO ${identifier("r")}`, 'GRANT "g" TO "r"');
  assert.equal(statement`CONNECTION LIMIT ${integer(5)}`, "CONNECTION LIMIT 5");
  assert.throws(() => statement`DROP ROLE ${"raw" as unknown as SqlPart}`, TypeError);
  assert.throws(() => integer(1.5), TypeError);
});

test("grant clauses", () => {
  const accepted: [string, string][] = [
    ["SELECT ON ALL TABLES IN SCHEMA billing", "SELECT ON ALL TABLES IN SCHEMA billing"],
    ["select, insert on  billing.invoices", "select , insert on billing . invoices"],
    ['SELECT (id, amount) ON "Billing"."Invoices"', 'SELECT ( id , amount ) ON "Billing" . "Invoices"'],
    ["USAGE, CREATE ON SCHEMA scratch", "USAGE , CREATE ON SCHEMA scratch"],
    ["EXECUTE ON ALL FUNCTIONS IN SCHEMA api", "EXECUTE ON ALL FUNCTIONS IN SCHEMA api"],
  ];
  for (const [text, clause] of accepted) assert.equal(parseGrantClause(text).clause, clause, text);

  const rejected = [
    "SELECT ON billing.invoices TO PUBLIC",
    "SELECT ON billing.invoices; DROP ROLE writ_admin",
    "SELECT ON billing.invoices -- comment",
    "SELECT ON billing.invoices /* comment */",
    "SELECT ON 'billing'",
    "SELECT ON $$x$$",
    "SELECT ON billing.invoices WITH GRANT OPTION",
    "DROP ON billing.invoices",
    "SELECT billing.invoices",
    "ON billing.invoices",
    "SELECT ON",
    'SELECT ON "unterminated',
    "SELECT ON a ON b",
  ];
  for (const text of rejected) {
    assert.throws(
      () => parseGrantClause(text),
      (error: unknown) => error instanceof WritError && error.code === "invalid_request",
      text,
    );
  }
});
