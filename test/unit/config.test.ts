import { test } from "node:test";
import assert from "node:assert/strict";

import { configSchema, parseConfig, type WritConfig } from "../../src/config/config.js";

const source = "/tmp/writ-test/writ.json";

/** The smallest valid configuration: the two keys without a default. */
const minimal = { trust_domain: "example.org", public_url: "https://writ.example.org" };

function parseWith(overrides: Record<string, unknown>): WritConfig {
  return parseConfig({ ...minimal, ...overrides }, source);
}

/** Asserts that parsing fails with an Error whose message contains every fragment. */
function assertRejected(raw: unknown, fragments: string[]): void {
  assert.throws(
    () => parseConfig(raw, source),
    (error: unknown) => {
      assert.ok(error instanceof Error, "parseConfig threw something other than an Error");
      for (const fragment of fragments) {
        assert.ok(
          error.message.includes(fragment),
          `message "${error.message}" does not contain "${fragment}"`,
        );
      }
      return true;
    },
  );
}

test("parseConfig fills every default", () => {
  const config = parseConfig(minimal, source);

  assert.equal(config.trust_domain, "example.org");
  assert.equal(config.public_url, "https://writ.example.org");
  for (const [key, spec] of Object.entries(configSchema)) {
    if (spec.default === "required") continue;
    assert.deepEqual(config[key as keyof WritConfig], spec.default, `default of "${key}"`);
  }
});

test("parseConfig treats null as absent", () => {
  const config = parseWith({ access_token_ttl_seconds: null, listen: null });

  assert.equal(config.access_token_ttl_seconds, configSchema.access_token_ttl_seconds.default);
  assert.equal(config.listen, configSchema.listen.default);
});

test("parseConfig keeps given values", () => {
  const config = parseWith({
    listen: "127.0.0.1:9000",
    signing_alg: "ES256",
    access_token_ttl_seconds: 120,
    dpop_nonce_required: true,
    store: { kind: "postgres", url_env: "WRIT_DATABASE_URL" },
  });

  assert.equal(config.listen, "127.0.0.1:9000");
  assert.equal(config.signing_alg, "ES256");
  assert.equal(config.access_token_ttl_seconds, 120);
  assert.equal(config.dpop_nonce_required, true);
  assert.deepEqual(config.store, { kind: "postgres", url_env: "WRIT_DATABASE_URL" });
});

test("parseConfig rejects non-objects", () => {
  for (const raw of [null, [], "writ", 42, true]) {
    assertRejected(raw, [source, "expected a JSON object"]);
  }
});

test("parseConfig rejects unknown keys", () => {
  const cases = [
    { key: "bogus", value: 1 },
    { key: "access_token_ttl", value: 600 },
    { key: "Trust_Domain", value: "example.org" },
    { key: "__proto__x", value: {} },
  ];
  for (const { key, value } of cases) {
    assertRejected({ ...minimal, [key]: value }, [source, `unknown key "${key}"`]);
  }
});

test("parseConfig rejects missing required keys", () => {
  for (const key of ["trust_domain", "public_url"] as const) {
    const raw: Record<string, unknown> = { ...minimal };
    delete raw[key];
    assertRejected(raw, [source, `"${key}" is missing`]);
    assertRejected({ ...minimal, [key]: null }, [source, `"${key}" is missing`]);
  }
});

test("parseConfig rejects type violations", () => {
  const cases: { key: string; value: unknown; problem: string }[] = [
    { key: "trust_domain", value: 42, problem: "must be a non-empty string" },
    { key: "trust_domain", value: "", problem: "must be a non-empty string" },
    { key: "public_url", value: false, problem: "must be a non-empty string" },
    { key: "listen", value: 7400, problem: "must be a non-empty string" },
    { key: "listen", value: "", problem: "must be a non-empty string" },
    { key: "store", value: "sqlite", problem: "must be an object" },
    { key: "store", value: { kind: "mysql" }, problem: 'must be {"kind":"sqlite"}' },
    { key: "store", value: { kind: "sqlite", file: "x.db" }, problem: 'must be {"kind":"sqlite"}' },
    { key: "store", value: { kind: "postgres" }, problem: 'must be {"kind":"sqlite"}' },
    { key: "store", value: { kind: "postgres", url_env: 5 }, problem: 'must be {"kind":"sqlite"}' },
    {
      key: "store",
      value: { kind: "postgres", url_env: "DB", password: "x" },
      problem: 'must be {"kind":"sqlite"}',
    },
    { key: "signing_alg", value: "RS256", problem: 'must be "Ed25519" or "ES256"' },
    { key: "signing_alg", value: "ed25519", problem: 'must be "Ed25519" or "ES256"' },
    { key: "access_token_ttl_seconds", value: "600", problem: "must be an integer" },
    { key: "access_token_ttl_seconds", value: 600.5, problem: "must be an integer" },
    { key: "access_token_ttl_seconds", value: true, problem: "must be an integer" },
    { key: "clock_skew_seconds", value: Number.NaN, problem: "must be an integer" },
    { key: "dpop_nonce_required", value: "true", problem: "must be true or false" },
    { key: "dpop_nonce_required", value: 1, problem: "must be true or false" },
    { key: "tls_cert", value: 42, problem: "must be a path or null" },
    { key: "tls_cert", value: "", problem: "must be a path or null" },
    { key: "tls_key", value: [], problem: "must be a path or null" },
  ];
  for (const { key, value, problem } of cases) {
    assertRejected({ ...minimal, [key]: value }, [source, `"${key}" ${problem}`]);
  }
});

test("parseConfig type-checks every schema key", () => {
  const wrongValueByType: Record<string, unknown> = {
    string: 42,
    integer: "1",
    boolean: "yes",
    path: 42,
    algorithm: "none",
    store: "sqlite",
    // Plain http is accepted only on loopback.
    urls: ["http://alerts.example.com/hook"],
  };
  for (const [key, spec] of Object.entries(configSchema)) {
    const wrong = wrongValueByType[spec.type];
    assert.ok(wrong !== undefined, `no wrong value for type "${spec.type}" of "${key}"`);
    assertRejected({ ...minimal, [key]: wrong }, [source, `"${key}"`]);
  }
});

test("parseConfig enforces min and max", () => {
  const bounded = Object.entries(configSchema).filter(
    ([, spec]) => spec.type === "integer" && spec.min !== undefined && spec.max !== undefined,
  );
  assert.ok(bounded.length > 0, "the schema has no bounded integer key");

  for (const [key, spec] of bounded) {
    const min = spec.min as number;
    const max = spec.max as number;
    assert.equal(parseWith({ [key]: min })[key as keyof WritConfig], min, `"${key}" at its min`);
    assert.equal(parseWith({ [key]: max })[key as keyof WritConfig], max, `"${key}" at its max`);
    assertRejected({ ...minimal, [key]: min - 1 }, [`"${key}" must be at least ${min}`]);
    assertRejected({ ...minimal, [key]: max + 1 }, [`"${key}" must be at most ${max}`]);
  }
});

test("parseConfig enforces documented bounds", () => {
  const cases = [
    { key: "access_token_ttl_seconds", value: 9, problem: "must be at least 10" },
    { key: "access_token_ttl_seconds", value: 3601, problem: "must be at most 3600" },
    { key: "dpop_proof_max_future_seconds", value: -1, problem: "must be at least 0" },
    { key: "revocation_heartbeat_seconds", value: 0, problem: "must be at least 1" },
    { key: "revocation_heartbeat_seconds", value: 6, problem: "must be at most 5" },
    { key: "clock_skew_seconds", value: 61, problem: "must be at most 60" },
  ];
  for (const { key, value, problem } of cases) {
    assertRejected({ ...minimal, [key]: value }, [`"${key}" ${problem}`]);
  }
});

test("parseConfig rejects invalid trust domains", () => {
  for (const domain of [
    "Example.org",
    "example.org/agents",
    "exa mple.org",
    "example.org:8443",
    "ëxample.org",
  ]) {
    assertRejected({ ...minimal, trust_domain: domain }, [source, '"trust_domain" is invalid']);
  }
});

test("parseConfig accepts https and loopback http URLs", () => {
  const accepted = [
    "https://writ.example.org",
    "https://writ.example.org/",
    "https://writ.example.org:8443/writ",
    "https://10.0.0.5",
    "http://127.0.0.1:7400",
    "http://127.8.9.10",
    "http://localhost:7400",
    "http://[::1]:7400",
  ];
  for (const url of accepted) {
    assert.equal(parseWith({ public_url: url }).public_url, url);
  }
});

test("parseConfig rejects plain http off loopback", () => {
  const rejected = [
    "http://writ.example.org",
    "http://10.0.0.5:7400",
    "http://0.0.0.0:7400",
    "http://[::]:7400",
    "http://127.0.0.1.example.org",
    "http://localhost.example.org",
  ];
  for (const url of rejected) {
    assertRejected({ ...minimal, public_url: url }, [url, "use https unless the host is loopback"]);
  }
});

test("parseConfig rejects other schemes and relative URLs", () => {
  assertRejected({ ...minimal, public_url: "ftp://writ.example.org" }, ["use https"]);
  assertRejected({ ...minimal, public_url: "writ.example.org" }, ["not an absolute URL"]);
  assertRejected({ ...minimal, public_url: "/writ" }, ["not an absolute URL"]);
});

test("parseConfig rejects query, fragment and credentials", () => {
  const rejected = [
    "https://writ.example.org/?tenant=a",
    "https://writ.example.org/#top",
    "https://writ.example.org/?",
    "https://writ.example.org/#",
    "https://writ.example.org?",
    "http://127.0.0.1:7400/?debug",
    "https://admin@writ.example.org",
    "https://admin:secret@writ.example.org",
  ];
  for (const url of rejected) {
    assertRejected({ ...minimal, public_url: url }, [url, "no query, fragment or credentials"]);
  }
});

test("parseConfig requires tls_cert and tls_key together", () => {
  assertRejected({ ...minimal, tls_cert: "/etc/writ/cert.pem" }, [source, '"tls_cert" and "tls_key"']);
  assertRejected({ ...minimal, tls_key: "/etc/writ/key.pem" }, [source, '"tls_cert" and "tls_key"']);

  const config = parseWith({ tls_cert: "/etc/writ/cert.pem", tls_key: "/etc/writ/key.pem" });
  assert.equal(config.tls_cert, "/etc/writ/cert.pem");
  assert.equal(config.tls_key, "/etc/writ/key.pem");
});
