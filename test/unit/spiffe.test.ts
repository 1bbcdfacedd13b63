import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import {
  identityName,
  parseSpiffeId,
  pathSegmentProblem,
  spiffeId,
  trustDomainProblem,
  type IdentityKind,
} from "../../src/identity/spiffe.js";

const kinds: readonly IdentityKind[] = ["agent", "human", "gateway"];

test("trustDomainProblem accepts valid domains", () => {
  const valid = ["example.org", "a", "prod.example.org", "my-domain_1.example", "x".repeat(255), "123"];
  for (const domain of valid) {
    assert.equal(trustDomainProblem(domain), undefined, `"${domain}" should be valid`);
  }
});

test("trustDomainProblem rejects invalid domains", () => {
  const cases = [
    { domain: "", problem: "empty" },
    { domain: "x".repeat(256), problem: "longer than 255" },
    { domain: "Example.org", problem: "lowercase" },
    { domain: "EXAMPLE.ORG", problem: "lowercase" },
    { domain: "example.org/agent", problem: "lowercase" },
    { domain: "example.org:8443", problem: "lowercase" },
    { domain: "user@example.org", problem: "lowercase" },
    { domain: "exa mple.org", problem: "lowercase" },
    { domain: "ex%41mple.org", problem: "lowercase" },
    { domain: "ëxample.org", problem: "lowercase" },
    { domain: "example.org?x", problem: "lowercase" },
  ];
  for (const { domain, problem } of cases) {
    const reason = trustDomainProblem(domain);
    assert.ok(reason !== undefined, `"${domain}" should be invalid`);
    assert.ok(reason.includes(problem), `reason for "${domain}" is "${reason}"`);
  }
});

test("pathSegmentProblem accepts valid names", () => {
  const valid = ["agent-1", "Agent.Name_2", "a", "A", "...", ".hidden", "a..b", "-", "_", "x".repeat(500)];
  for (const name of valid) {
    assert.equal(pathSegmentProblem(name), undefined, `"${name}" should be valid`);
  }
});

test("pathSegmentProblem rejects invalid names", () => {
  const cases = [
    { name: "", problem: "empty" },
    { name: ".", problem: "'.' and '..'" },
    { name: "..", problem: "'.' and '..'" },
    { name: "a%2Fb", problem: "only letters" },
    { name: "%2F", problem: "only letters" },
    { name: "%2e%2e", problem: "only letters" },
    { name: "a/b", problem: "only letters" },
    { name: "a b", problem: "only letters" },
    { name: "a:b", problem: "only letters" },
    { name: "a?b", problem: "only letters" },
    { name: "a#b", problem: "only letters" },
    { name: "café", problem: "only letters" },
    { name: "a\nb", problem: "only letters" },
  ];
  for (const { name, problem } of cases) {
    const reason = pathSegmentProblem(name);
    assert.ok(reason !== undefined, `${JSON.stringify(name)} should be invalid`);
    assert.ok(reason.includes(problem), `reason for ${JSON.stringify(name)} is "${reason}"`);
  }
});

test("spiffeId builds the identity URI", () => {
  assert.equal(spiffeId("example.org", "agent", "billing-bot"), "spiffe://example.org/agent/billing-bot");
  assert.equal(spiffeId("example.org", "human", "Ops.Person_1"), "spiffe://example.org/human/Ops.Person_1");
  assert.equal(spiffeId("a", "gateway", "gw"), "spiffe://a/gateway/gw");
});

test("spiffeId rejects invalid domains and names", () => {
  const cases = [
    { domain: "Example.org", name: "bot", message: 'invalid trust domain "Example.org"' },
    { domain: "", name: "bot", message: "invalid trust domain" },
    { domain: "example.org", name: "", message: 'invalid agent name ""' },
    { domain: "example.org", name: "..", message: 'invalid agent name ".."' },
    { domain: "example.org", name: ".", message: 'invalid agent name "."' },
    { domain: "example.org", name: "a%2Fb", message: 'invalid agent name "a%2Fb"' },
    { domain: "example.org", name: "a/b", message: 'invalid agent name "a/b"' },
  ];
  for (const { domain, name, message } of cases) {
    assert.throws(
      () => spiffeId(domain, "agent", name),
      (error: unknown) => error instanceof TypeError && error.message.includes(message),
      `spiffeId(${JSON.stringify(domain)}, "agent", ${JSON.stringify(name)})`,
    );
  }
});

test("parseSpiffeId splits valid IDs", () => {
  const cases = [
    { id: "spiffe://example.org", trustDomain: "example.org", path: [] },
    { id: "spiffe://example.org/agent/bot", trustDomain: "example.org", path: ["agent", "bot"] },
    { id: "spiffe://a/b/c/d", trustDomain: "a", path: ["b", "c", "d"] },
    {
      id: "spiffe://example.org/ns/prod/sa/x.y",
      trustDomain: "example.org",
      path: ["ns", "prod", "sa", "x.y"],
    },
  ];
  for (const { id, trustDomain, path } of cases) {
    assert.deepEqual(parseSpiffeId(id), { trustDomain, path }, id);
  }
});

test("parseSpiffeId rejects invalid IDs", () => {
  const invalid = [
    "",
    "spiffe://",
    "spiffe:///agent/bot",
    "spiffe://example.org/",
    "spiffe://example.org/agent/bot/",
    "spiffe://example.org//bot",
    "spiffe://example.org/agent/bot?x=1",
    "spiffe://example.org/agent/bot?",
    "spiffe://example.org?x=1",
    "spiffe://example.org/agent/bot#frag",
    "spiffe://example.org#frag",
    "spiffe://example.org/agent/a%2Fb",
    "spiffe://example.org/agent/%62ot",
    "spiffe://ex%61mple.org/agent/bot",
    "spiffe://example.org/agent/..",
    "spiffe://example.org/agent/.",
    "spiffe://example.org/../agent/bot",
    "spiffe://Example.org/agent/bot",
    "spiffe://user@example.org/agent/bot",
    "spiffe://example.org:443/agent/bot",
    "SPIFFE://example.org/agent/bot",
    "https://example.org/agent/bot",
    "spiffe:/example.org/agent/bot",
    " spiffe://example.org/agent/bot",
    `spiffe://example.org/agent/${"x".repeat(2048)}`,
  ];
  for (const id of invalid) {
    assert.equal(parseSpiffeId(id), undefined, `${JSON.stringify(id.slice(0, 80))} should be rejected`);
  }
});

test("identityName matches kind and domain", () => {
  const id = "spiffe://example.org/agent/bot";

  assert.equal(identityName(id, "example.org", "agent"), "bot");
  assert.equal(identityName(id, "other.org", "agent"), undefined);
  assert.equal(identityName(id, "example.org", "human"), undefined);
  assert.equal(identityName("spiffe://example.org/agent/bot/extra", "example.org", "agent"), undefined);
  assert.equal(identityName("spiffe://example.org/agent", "example.org", "agent"), undefined);
  assert.equal(identityName("spiffe://example.org", "example.org", "agent"), undefined);
  assert.equal(identityName("spiffe://example.org/agent/a%2Fb", "example.org", "agent"), undefined);
});

/** Characters of valid names plus ones that must be rejected, so both outcomes are common. */
const nameCharacter = fc.constantFrom(
  ..."abcXYZ019._-".split(""),
  "/",
  "%",
  "2",
  "F",
  "?",
  "#",
  ":",
  " ",
  "é",
  "\u0000",
);
const nameCandidate = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."abcXYZ019._-".split("")), minLength: 1, maxLength: 20 }),
  fc.string({ unit: nameCharacter, maxLength: 12 }),
  fc.string({ maxLength: 12 }),
  fc.constantFrom(".", "..", "...", "", "%2F", "%2e%2e"),
);
const validDomain = fc.string({
  unit: fc.constantFrom(..."abz09._-".split("")),
  minLength: 1,
  maxLength: 40,
});
const kind = fc.constantFrom(...kinds);

test("accepted names round-trip through spiffeId", () => {
  fc.assert(
    fc.property(validDomain, kind, nameCandidate, (domain, identityKind, name) => {
      if (pathSegmentProblem(name) !== undefined) {
        assert.throws(() => spiffeId(domain, identityKind, name), TypeError);
        return;
      }
      const id = spiffeId(domain, identityKind, name);
      assert.equal(identityName(id, domain, identityKind), name);
      assert.deepEqual(parseSpiffeId(id), { trustDomain: domain, path: [identityKind, name] });
    }),
    { numRuns: 2000 },
  );
});

test("parseSpiffeId returns only valid parts", () => {
  const candidate = fc.oneof(
    fc.string(),
    fc.webUrl(),
    fc.string({ unit: nameCharacter }).map((rest) => `spiffe://${rest}`),
  );
  fc.assert(
    fc.property(candidate, (value) => {
      const parsed = parseSpiffeId(value);
      if (parsed === undefined) return;
      assert.equal(trustDomainProblem(parsed.trustDomain), undefined);
      for (const segment of parsed.path) assert.equal(pathSegmentProblem(segment), undefined);
    }),
    { numRuns: 2000 },
  );
});
