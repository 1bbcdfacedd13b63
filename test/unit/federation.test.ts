import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from "jose";

import { ManualClock } from "../../src/clock.js";
import { WritError } from "../../src/errors/writ-error.js";
import {
  MAX_ASSERTION_LIFETIME_SECONDS,
  createJwksSource,
  describeSpiffeIdProblem,
  selectJwtSvidKeys,
  validateBindingSpec,
  verifyPlatformJwt,
  type FederatedBindingSpec,
} from "../../src/attestation/federation.js";
import { sharedDataDir } from "../support/shared-data.js";

const NOW_SECONDS = 1_750_000_000;
const GITHUB_ISSUER = "https://token.actions.githubusercontent.com";
const KUBERNETES_ISSUER = "https://kubernetes.default.svc.cluster.local";
const SERVICE_ACCOUNT_UID = "0f5a3c1e-8d2b-4c47-9a61-3b7e2d9f4a10";
const OTHER_SERVICE_ACCOUNT_UID = "7c2e9b14-1a3d-4f58-b6e0-9d4c8a2f1e37";
const WORKLOAD_SPIFFE_ID = "spiffe://example.org/ns/prod/sa/billing";

/** go-spiffe's SPIFFE bundle fixtures: one X.509 root and six JWT-SVID keys, public keys only. */
const SPIFFE_TESTDATA = join(sharedDataDir(), "spiffe-go-spiffe-testdata/bundle/spiffebundle/testdata");

interface SigningKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  kid: string;
  alg: string;
}

async function createSigningKey(alg: string, kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg };
  return { privateKey, publicJwk, kid, alg };
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

async function mint(
  key: SigningKey,
  claims: JWTPayload,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...header })
    .sign(key.privateKey);
}

function newClock(): ManualClock {
  return new ManualClock(NOW_SECONDS * 1000);
}

async function assertRejectsWithCode(
  promise: Promise<unknown>,
  code: string,
  detail?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof WritError, `expected a WritError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (detail !== undefined) {
      assert.match(error.detail ?? "", detail);
    }
    return true;
  });
}

function assertInvalidBinding(spec: unknown, message: RegExp): void {
  assert.throws(
    () => validateBindingSpec(spec),
    (error: unknown) => {
      assert.ok(error instanceof WritError, `expected a WritError, got ${String(error)}`);
      assert.equal(error.code, "invalid_binding");
      assert.match(error.description, message);
      return true;
    },
  );
}

let tempDir: string;
let server: Server;
let baseUrl: string;
let githubKey: SigningKey;
let kubernetesKey: SigningKey;
let spireKey: SigningKey;
let strangerKey: SigningKey;
let kubernetesJwksFile: string;
let spireBundleFile: string;
/** Routes of the loopback server mapped to the JSON documents they serve; tests may replace entries. */
const served = new Map<string, unknown>();

before(async () => {
  tempDir = await mkdtemp(join(tmpdir(), "writ-federation-"));
  githubKey = await createSigningKey("RS256", "github-1");
  kubernetesKey = await createSigningKey("ES256", "k8s-1");
  spireKey = await createSigningKey("ES256", "spire-own-1");
  strangerKey = await createSigningKey("RS256", "github-1");

  kubernetesJwksFile = join(tempDir, "kubernetes-jwks.json");
  await writeFile(kubernetesJwksFile, JSON.stringify({ keys: [kubernetesKey.publicJwk] }));

  // A real SPIFFE bundle with our own JWT-SVID key added, because the fixtures hold no private keys.
  const bundle = JSON.parse(await readFile(join(SPIFFE_TESTDATA, "spiffebundle_valid_2.json"), "utf8")) as {
    keys: unknown[];
  };
  bundle.keys.push({ ...spireKey.publicJwk, use: "jwt-svid" });
  spireBundleFile = join(tempDir, "spiffe-bundle.json");
  await writeFile(spireBundleFile, JSON.stringify(bundle));

  served.set("/github/jwks", { keys: [githubKey.publicJwk] });
  served.set("/spire/bundle", bundle);

  server = createServer((request, response) => {
    const document = served.get(request.url ?? "");
    if (document === undefined) {
      response.writeHead(500).end();
      return;
    }
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(document));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(tempDir, { recursive: true, force: true });
});

function githubSpec(): FederatedBindingSpec {
  return validateBindingSpec({
    kind: "github",
    issuer: GITHUB_ISSUER,
    audience: "https://writ.example",
    jwksUrl: `${baseUrl}/github/jwks`,
    claims: {
      sub: "repo:acme/deploy-bot:ref:refs/heads/main",
      repository_id: "123456789",
      repository_owner_id: "987654",
    },
  });
}

function githubClaims(overrides: JWTPayload = {}): JWTPayload {
  return {
    iss: GITHUB_ISSUER,
    aud: "https://writ.example",
    sub: "repo:acme/deploy-bot:ref:refs/heads/main",
    repository: "acme/deploy-bot",
    repository_id: "123456789",
    repository_owner: "acme",
    repository_owner_id: "987654",
    iat: NOW_SECONDS - 10,
    nbf: NOW_SECONDS - 10,
    exp: NOW_SECONDS + 300,
    ...overrides,
  };
}

function kubernetesSpec(): FederatedBindingSpec {
  return validateBindingSpec({
    kind: "kubernetes",
    issuer: KUBERNETES_ISSUER,
    audience: "writ",
    jwksFile: kubernetesJwksFile,
    claims: {
      sub: "system:serviceaccount:agents:billing",
      "kubernetes.io.serviceaccount.uid": SERVICE_ACCOUNT_UID,
    },
  });
}

function kubernetesClaims(uid: string): JWTPayload {
  return {
    iss: KUBERNETES_ISSUER,
    aud: ["writ"],
    sub: "system:serviceaccount:agents:billing",
    iat: NOW_SECONDS - 5,
    nbf: NOW_SECONDS - 5,
    exp: NOW_SECONDS + 600,
    "kubernetes.io": {
      namespace: "agents",
      serviceaccount: { name: "billing", uid },
    },
  };
}

function spireSpec(): FederatedBindingSpec {
  return validateBindingSpec({
    kind: "spire",
    audience: "writ",
    jwksFile: spireBundleFile,
    claims: { sub: WORKLOAD_SPIFFE_ID },
  });
}

// ---------------------------------------------------------------------------------------------------
// Accepted tokens
// ---------------------------------------------------------------------------------------------------

test("github token from bound repository passes", async () => {
  const jwks = createJwksSource({ timeoutMs: 2000 });
  const token = await mint(githubKey, githubClaims());

  const payload = await verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks });

  assert.equal(payload.sub, "repo:acme/deploy-bot:ref:refs/heads/main");
  assert.equal(payload.repository_id, "123456789");
});

test("kubernetes token with nested uid passes", async () => {
  const jwks = createJwksSource();
  const token = await mint(kubernetesKey, kubernetesClaims(SERVICE_ACCOUNT_UID));

  const payload = await verifyPlatformJwt(kubernetesSpec(), token, { clock: newClock(), jwks });

  assert.equal(payload.sub, "system:serviceaccount:agents:billing");
});

test("kubernetes legacy flat uid claim passes", async () => {
  const jwks = createJwksSource();
  const spec = validateBindingSpec({
    ...kubernetesSpec(),
    claims: {
      sub: "system:serviceaccount:agents:billing",
      "kubernetes.io/serviceaccount/service-account.uid": SERVICE_ACCOUNT_UID,
    },
  });
  const token = await mint(kubernetesKey, {
    ...kubernetesClaims(SERVICE_ACCOUNT_UID),
    "kubernetes.io/serviceaccount/service-account.uid": SERVICE_ACCOUNT_UID,
  });

  const payload = await verifyPlatformJwt(spec, token, { clock: newClock(), jwks });

  assert.equal(payload["kubernetes.io/serviceaccount/service-account.uid"], SERVICE_ACCOUNT_UID);
});

test("iat within allowed skew passes", async () => {
  const jwks = createJwksSource();
  const token = await mint(githubKey, githubClaims({ iat: NOW_SECONDS + 60, nbf: NOW_SECONDS + 60 }));

  const payload = await verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks });

  assert.equal(payload.iat, NOW_SECONDS + 60);
});

test("lifetime of exactly one hour passes", async () => {
  const jwks = createJwksSource();
  const token = await mint(
    githubKey,
    githubClaims({ iat: NOW_SECONDS - 10, exp: NOW_SECONDS - 10 + MAX_ASSERTION_LIFETIME_SECONDS }),
  );

  const payload = await verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks });

  assert.equal(payload.exp, NOW_SECONDS - 10 + MAX_ASSERTION_LIFETIME_SECONDS);
});

test("array aud containing audience passes", async () => {
  const jwks = createJwksSource();
  const token = await mint(
    githubKey,
    githubClaims({ aud: ["https://other.example", "https://writ.example"] }),
  );

  const payload = await verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks });

  assert.deepEqual(payload.aud, ["https://other.example", "https://writ.example"]);
});

// ---------------------------------------------------------------------------------------------------
// Bound claims
// ---------------------------------------------------------------------------------------------------

test("github token from another repository is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(githubKey, githubClaims({ repository_id: "123456780" }));

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /repository_id/,
  );
});

test("github numeric repository_id is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(githubKey, githubClaims({ repository_id: 123456789 }));

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /repository_id/,
  );
});

test("kubernetes token from another service account is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(kubernetesKey, kubernetesClaims(OTHER_SERVICE_ACCOUNT_UID));

  await assertRejectsWithCode(
    verifyPlatformJwt(kubernetesSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /kubernetes\.io\.serviceaccount\.uid/,
  );
});

test("kubernetes token without uid is rejected", async () => {
  const jwks = createJwksSource();
  const claims = kubernetesClaims(SERVICE_ACCOUNT_UID);
  claims["kubernetes.io"] = { namespace: "agents", serviceaccount: { name: "billing" } };
  const token = await mint(kubernetesKey, claims);

  await assertRejectsWithCode(
    verifyPlatformJwt(kubernetesSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /is missing/,
  );
});

test("conflicting flat and nested claim is rejected", async () => {
  const jwks = createJwksSource();
  // The nested uid matches, but a literal flat key of the same name carries another value.
  const token = await mint(kubernetesKey, {
    ...kubernetesClaims(SERVICE_ACCOUNT_UID),
    "kubernetes.io.serviceaccount.uid": OTHER_SERVICE_ACCOUNT_UID,
  });

  await assertRejectsWithCode(
    verifyPlatformJwt(kubernetesSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /uid/,
  );
});

// ---------------------------------------------------------------------------------------------------
// Binding validation
// ---------------------------------------------------------------------------------------------------

test("binding without subject is rejected", () => {
  assertInvalidBinding(
    {
      kind: "oidc",
      issuer: "https://idp.example",
      audience: "writ",
      jwksUrl: "https://idp.example/jwks",
      claims: { email: "bot@example.com" },
    },
    /claims\.sub/,
  );
});

test("binding with wildcard is rejected", () => {
  assertInvalidBinding(
    {
      kind: "github",
      issuer: GITHUB_ISSUER,
      audience: "writ",
      jwksUrl: "https://token.actions.githubusercontent.com/.well-known/jwks",
      claims: { sub: "repo:acme/*", repository_id: "1", repository_owner_id: "2" },
    },
    /wildcard/,
  );
  assertInvalidBinding(
    {
      kind: "oidc",
      issuer: "https://idp.example",
      audience: "writ",
      jwksUrl: "https://idp.example/jwks",
      claims: { sub: "agent-?" },
    },
    /wildcard/,
  );
});

test("github binding without repository_id is rejected", () => {
  assertInvalidBinding(
    {
      kind: "github",
      issuer: GITHUB_ISSUER,
      audience: "writ",
      jwksUrl: "https://token.actions.githubusercontent.com/.well-known/jwks",
      claims: { sub: "repo:acme/deploy-bot:ref:refs/heads/main", repository_owner_id: "987654" },
    },
    /repository_id/,
  );
});

test("github binding without repository_owner_id is rejected", () => {
  assertInvalidBinding(
    {
      kind: "github",
      issuer: GITHUB_ISSUER,
      audience: "writ",
      jwksUrl: "https://token.actions.githubusercontent.com/.well-known/jwks",
      claims: { sub: "repo:acme/deploy-bot:ref:refs/heads/main", repository_id: "123456789" },
    },
    /repository_owner_id/,
  );
});

test("kubernetes binding without uid is rejected", () => {
  assertInvalidBinding(
    {
      kind: "kubernetes",
      issuer: KUBERNETES_ISSUER,
      audience: "writ",
      jwksFile: "/etc/writ/k8s-jwks.json",
      claims: { sub: "system:serviceaccount:agents:billing" },
    },
    /uid/,
  );
});

test("kubernetes binding with malformed subject is rejected", () => {
  assertInvalidBinding(
    {
      kind: "kubernetes",
      issuer: KUBERNETES_ISSUER,
      audience: "writ",
      jwksFile: "/etc/writ/k8s-jwks.json",
      claims: {
        sub: "system:serviceaccount:agents",
        "kubernetes.io.serviceaccount.uid": SERVICE_ACCOUNT_UID,
      },
    },
    /system:serviceaccount:<namespace>:<name>/,
  );
});

test("spire binding without full SPIFFE ID is rejected", () => {
  const cases: [string, RegExp][] = [
    ["spiffe://example.org", /no path/],
    ["spiffe://example.org/", /no path/],
    ["spiffe://Example.org/workload", /trust domain/],
    ["spiffe://example.org/a/../b", /'\.' or '\.\.'/],
    ["spiffe://example.org/a//b", /empty segment/],
    ["spiffe://example.org/a%20b", /percent-encoding/],
    ["spiffe://example.org/a?x=1", /wildcard/],
    ["spiffe://example.org/a#frag", /percent-encoding/],
    ["https://example.org/workload", /spiffe:\/\//],
  ];
  for (const [sub, message] of cases) {
    assertInvalidBinding(
      { kind: "spire", audience: "writ", jwksFile: "/etc/writ/bundle.json", claims: { sub } },
      message,
    );
  }
});

test("SPIFFE ID validation accepts workload IDs", () => {
  assert.equal(describeSpiffeIdProblem("spiffe://example.org/ns/prod/sa/billing"), undefined);
  assert.equal(describeSpiffeIdProblem("spiffe://td-1.example_x/agent/a.b-c_d"), undefined);
});

test("binding jwks location rules", () => {
  const base = {
    kind: "oidc",
    issuer: "https://idp.example",
    audience: "writ",
    claims: { sub: "agent-1" },
  };
  assertInvalidBinding({ ...base }, /exactly one of jwksFile and jwksUrl/);
  assertInvalidBinding(
    { ...base, jwksFile: "/etc/writ/jwks.json", jwksUrl: "https://idp.example/jwks" },
    /exactly one of jwksFile and jwksUrl/,
  );
  assertInvalidBinding({ ...base, jwksUrl: "http://idp.example/jwks" }, /https/);
  assertInvalidBinding({ ...base, jwksUrl: "http://10.0.0.1/jwks" }, /https/);
  assertInvalidBinding({ ...base, jwksUrl: "https://user:pw@idp.example/jwks" }, /credentials/);

  for (const jwksUrl of [
    "http://127.0.0.1:8080/jwks",
    "http://127.1.2.3/jwks",
    "http://[::1]/jwks",
    "http://localhost/jwks",
  ]) {
    assert.equal(validateBindingSpec({ ...base, jwksUrl }).jwksUrl, jwksUrl);
  }
});

test("binding issuer rules", () => {
  const base = {
    kind: "oidc",
    audience: "writ",
    jwksUrl: "https://idp.example/jwks",
    claims: { sub: "agent-1" },
  };
  assertInvalidBinding({ ...base }, /issuer/);
  assertInvalidBinding({ ...base, issuer: "idp.example" }, /absolute URL/);

  const spire = validateBindingSpec({
    kind: "spire",
    audience: "writ",
    jwksFile: "/etc/writ/bundle.json",
    claims: { sub: WORKLOAD_SPIFFE_ID },
  });
  assert.equal(spire.issuer, undefined);
});

test("binding reserved claim is rejected", () => {
  assertInvalidBinding(
    {
      kind: "oidc",
      issuer: "https://idp.example",
      audience: "writ",
      jwksUrl: "https://idp.example/jwks",
      claims: { sub: "agent-1", aud: "writ" },
    },
    /claims\.aud/,
  );
});

test("binding normalisation drops unknown fields", () => {
  const spec = validateBindingSpec({
    kind: "oidc",
    issuer: "https://idp.example",
    audience: "writ",
    jwksUrl: "https://idp.example/jwks",
    claims: { sub: "agent-1" },
    extra: "ignored",
  });

  assert.deepEqual(spec, {
    kind: "oidc",
    issuer: "https://idp.example",
    audience: "writ",
    jwksUrl: "https://idp.example/jwks",
    claims: { sub: "agent-1" },
  });
});

test("invalid stored binding fails verification", async () => {
  const jwks = createJwksSource();
  const token = await mint(githubKey, githubClaims());
  const unchecked: FederatedBindingSpec = {
    ...githubSpec(),
    claims: { sub: "repo:acme/deploy-bot:ref:refs/heads/main" },
  };

  await assertRejectsWithCode(
    verifyPlatformJwt(unchecked, token, { clock: newClock(), jwks }),
    "invalid_grant",
    /repository_id/,
  );
});

// ---------------------------------------------------------------------------------------------------
// Rejected tokens
// ---------------------------------------------------------------------------------------------------

test("expired token is rejected", async () => {
  const jwks = createJwksSource();
  const clock = newClock();
  const token = await mint(githubKey, githubClaims({ iat: NOW_SECONDS - 100, exp: NOW_SECONDS + 30 }));

  clock.advanceSeconds(30);

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock, jwks }),
    "invalid_grant",
    /exp/,
  );
});

test("token one second before exp passes", async () => {
  const jwks = createJwksSource();
  const clock = newClock();
  const token = await mint(githubKey, githubClaims({ iat: NOW_SECONDS - 100, exp: NOW_SECONDS + 30 }));

  clock.advanceSeconds(29);
  const payload = await verifyPlatformJwt(githubSpec(), token, { clock, jwks });

  assert.equal(payload.exp, NOW_SECONDS + 30);
});

test("token without exp is rejected", async () => {
  const jwks = createJwksSource();
  const claims = githubClaims();
  delete claims.exp;
  const token = await mint(githubKey, claims);

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /"exp"/,
  );
});

test("token without iat is rejected", async () => {
  const jwks = createJwksSource();
  const claims = githubClaims();
  delete claims.iat;
  const token = await mint(githubKey, claims);

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /"iat"/,
  );
});

test("lifetime over an hour is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(
    githubKey,
    githubClaims({ iat: NOW_SECONDS - 10, exp: NOW_SECONDS - 10 + MAX_ASSERTION_LIFETIME_SECONDS + 1 }),
  );

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /exp - iat is 3601 s/,
  );
});

test("iat two minutes ahead is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(
    githubKey,
    githubClaims({ iat: NOW_SECONDS + 120, nbf: undefined, exp: NOW_SECONDS + 600 }),
  );

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /iat .* more than 60 s after now/,
  );
});

test("nbf two minutes ahead is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(githubKey, githubClaims({ nbf: NOW_SECONDS + 120 }));

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /nbf/,
  );
});

test("wrong aud is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(githubKey, githubClaims({ aud: "https://other.example" }));

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /"aud"/,
  );
});

test("wrong iss is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(
    githubKey,
    githubClaims({ iss: "https://token.actions.githubusercontent.com/evil" }),
  );

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /"iss"/,
  );
});

test("alg none is rejected", async () => {
  const jwks = createJwksSource();
  const token = `${base64url({ alg: "none", typ: "JWT" })}.${base64url(githubClaims())}.`;

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /not allowed/,
  );
});

test("HS256 token is rejected", async () => {
  const jwks = createJwksSource();
  // A verifier that accepted HMAC with the public key as secret would accept this token.
  const secret = Buffer.from(JSON.stringify(githubKey.publicJwk));
  const token = await new SignJWT(githubClaims())
    .setProtectedHeader({ alg: "HS256", kid: githubKey.kid })
    .sign(new Uint8Array(secret));

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), token, { clock: newClock(), jwks }),
    "invalid_grant",
    /not allowed/,
  );
});

test("token signed by unknown key is rejected", async () => {
  const jwks = createJwksSource();
  // Same kid and algorithm as the published key, different key material.
  const forged = await mint(strangerKey, githubClaims());
  const unknownKid = await mint({ ...strangerKey, kid: "not-published" }, githubClaims());

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), forged, { clock: newClock(), jwks }),
    "invalid_grant",
    /signature verification failed/,
  );
  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), unknownKid, { clock: newClock(), jwks }),
    "invalid_grant",
    /no applicable key/,
  );
});

test("tampered payload is rejected", async () => {
  const jwks = createJwksSource();
  const token = await mint(githubKey, githubClaims());
  const [header, , signature] = token.split(".");
  const tampered = `${header}.${base64url(githubClaims({ repository_id: "1" }))}.${signature}`;

  await assertRejectsWithCode(
    verifyPlatformJwt(githubSpec(), tampered, { clock: newClock(), jwks }),
    "invalid_grant",
    /signature verification failed/,
  );
});

// ---------------------------------------------------------------------------------------------------
// Key sources
// ---------------------------------------------------------------------------------------------------

test("key file is re-read after change", async () => {
  const jwks = createJwksSource();
  const file = join(tempDir, "rotating-jwks.json");
  const firstKey = await createSigningKey("ES256", "rotate-1");
  const secondKey = await createSigningKey("ES256", "rotate-2");
  await writeFile(file, JSON.stringify({ keys: [firstKey.publicJwk] }));
  const spec = { ...kubernetesSpec(), jwksFile: file };
  const clock = newClock();

  await verifyPlatformJwt(spec, await mint(firstKey, kubernetesClaims(SERVICE_ACCOUNT_UID)), { clock, jwks });
  await assertRejectsWithCode(
    verifyPlatformJwt(spec, await mint(secondKey, kubernetesClaims(SERVICE_ACCOUNT_UID)), { clock, jwks }),
    "invalid_grant",
  );

  await writeFile(file, JSON.stringify({ keys: [secondKey.publicJwk] }));
  const later = new Date(Date.now() + 5000);
  await utimes(file, later, later);

  const payload = await verifyPlatformJwt(
    spec,
    await mint(secondKey, kubernetesClaims(SERVICE_ACCOUNT_UID)),
    {
      clock,
      jwks,
    },
  );
  assert.equal(payload.sub, "system:serviceaccount:agents:billing");
  await assertRejectsWithCode(
    verifyPlatformJwt(spec, await mint(firstKey, kubernetesClaims(SERVICE_ACCOUNT_UID)), { clock, jwks }),
    "invalid_grant",
  );
});

test("missing key file is temporarily unavailable", async () => {
  const jwks = createJwksSource();
  const spec = { ...kubernetesSpec(), jwksFile: join(tempDir, "does-not-exist.json") };
  const token = await mint(kubernetesKey, kubernetesClaims(SERVICE_ACCOUNT_UID));

  await assertRejectsWithCode(
    verifyPlatformJwt(spec, token, { clock: newClock(), jwks }),
    "temporarily_unavailable",
    /ENOENT/,
  );
});

test("failing key URL is temporarily unavailable", async () => {
  const jwks = createJwksSource({ timeoutMs: 2000 });
  const spec = { ...githubSpec(), jwksUrl: `${baseUrl}/missing` };
  const token = await mint(githubKey, githubClaims());

  await assertRejectsWithCode(
    verifyPlatformJwt(spec, token, { clock: newClock(), jwks }),
    "temporarily_unavailable",
    /200 OK/,
  );
});

test("token without kid tries every key", async () => {
  const jwks = createJwksSource();
  const file = join(tempDir, "no-kid-jwks.json");
  const otherKey = await createSigningKey("ES256", "unused");
  const strip = ({ kid: _kid, ...rest }: JWK): JWK => rest;
  await writeFile(
    file,
    JSON.stringify({ keys: [strip(otherKey.publicJwk), strip(kubernetesKey.publicJwk)] }),
  );
  const spec = { ...kubernetesSpec(), jwksFile: file };
  const token = await new SignJWT(kubernetesClaims(SERVICE_ACCOUNT_UID))
    .setProtectedHeader({ alg: "ES256" })
    .sign(kubernetesKey.privateKey);
  const forged = await new SignJWT(kubernetesClaims(SERVICE_ACCOUNT_UID))
    .setProtectedHeader({ alg: "ES256" })
    .sign((await createSigningKey("ES256", "x")).privateKey);

  const payload = await verifyPlatformJwt(spec, token, { clock: newClock(), jwks });

  assert.equal(payload.sub, "system:serviceaccount:agents:billing");
  await assertRejectsWithCode(
    verifyPlatformJwt(spec, forged, { clock: newClock(), jwks }),
    "invalid_grant",
    /signature verification failed/,
  );
});

// ---------------------------------------------------------------------------------------------------
// SPIRE
// ---------------------------------------------------------------------------------------------------

test("spire JWT-SVID with exact SPIFFE ID passes", async () => {
  const jwks = createJwksSource();
  const token = await mint(spireKey, {
    sub: WORKLOAD_SPIFFE_ID,
    aud: ["writ"],
    iat: NOW_SECONDS,
    exp: NOW_SECONDS + 300,
  });

  const payload = await verifyPlatformJwt(spireSpec(), token, { clock: newClock(), jwks });

  assert.equal(payload.sub, WORKLOAD_SPIFFE_ID);
});

test("spire JWT-SVID for other SPIFFE ID is rejected", async () => {
  const jwks = createJwksSource();
  const others = [
    "spiffe://example.org/ns/prod/sa/billing-admin",
    "spiffe://example.org/ns/prod/sa",
    "spiffe://example.org/ns/prod/sa/billing/extra",
    "spiffe://other.org/ns/prod/sa/billing",
  ];
  for (const sub of others) {
    const token = await mint(spireKey, { sub, aud: "writ", iat: NOW_SECONDS, exp: NOW_SECONDS + 300 });
    await assertRejectsWithCode(
      verifyPlatformJwt(spireSpec(), token, { clock: newClock(), jwks }),
      "invalid_grant",
      /claim sub is/,
    );
  }
});

test("spire issuer is checked when set", async () => {
  const jwks = createJwksSource();
  const spec = validateBindingSpec({ ...spireSpec(), issuer: "https://oidc.example.org" });
  const claims = { sub: WORKLOAD_SPIFFE_ID, aud: "writ", iat: NOW_SECONDS, exp: NOW_SECONDS + 300 };

  await verifyPlatformJwt(spec, await mint(spireKey, { ...claims, iss: "https://oidc.example.org" }), {
    clock: newClock(),
    jwks,
  });
  await assertRejectsWithCode(
    verifyPlatformJwt(spec, await mint(spireKey, claims), { clock: newClock(), jwks }),
    "invalid_grant",
    /"iss"/,
  );
});

test("spire bundle over loopback URL passes", async () => {
  const jwks = createJwksSource({ timeoutMs: 2000 });
  const spec = validateBindingSpec({
    ...spireSpec(),
    jwksFile: undefined,
    jwksUrl: `${baseUrl}/spire/bundle`,
  });
  const token = await mint(spireKey, {
    sub: WORKLOAD_SPIFFE_ID,
    aud: "writ",
    iat: NOW_SECONDS,
    exp: NOW_SECONDS + 300,
  });

  const payload = await verifyPlatformJwt(spec, token, { clock: newClock(), jwks });

  assert.equal(payload.sub, WORKLOAD_SPIFFE_ID);
});

test("spire key marked x509-svid is not trusted", async () => {
  const jwks = createJwksSource();
  const file = join(tempDir, "x509-only-bundle.json");
  await writeFile(
    file,
    JSON.stringify({ keys: [{ ...spireKey.publicJwk, use: "x509-svid" }], spiffe_sequence: 3 }),
  );
  const spec = { ...spireSpec(), jwksFile: file };
  const token = await mint(spireKey, {
    sub: WORKLOAD_SPIFFE_ID,
    aud: "writ",
    iat: NOW_SECONDS,
    exp: NOW_SECONDS + 300,
  });

  await assertRejectsWithCode(
    verifyPlatformJwt(spec, token, { clock: newClock(), jwks }),
    "invalid_grant",
    /no applicable key/,
  );
});

test("go-spiffe bundle keeps only JWT-SVID keys", async () => {
  const path = join(SPIFFE_TESTDATA, "spiffebundle_valid_with_wit.json");
  const document: unknown = JSON.parse(await readFile(path, "utf8"));

  const kids = selectJwtSvidKeys(document).keys.map((key) => key.kid);

  assert.deepEqual(kids, ["IRsID4VIM3T11TsK43Ny1DgCD5UNWhva", "qjwWkiMpkHzIxsSrAsLxSZ2WZ8AyMESx"]);
});

test("go-spiffe bundle keys resolve by kid", async () => {
  const jwks = createJwksSource();
  const spec = { ...spireSpec(), jwksFile: join(SPIFFE_TESTDATA, "spiffebundle_valid_2.json") };
  const keySet = jwks.getKeySet(spec);
  const token = { payload: "", signature: "" };

  const key = await keySet({ alg: "ES256", kid: "IRsID4VIM3T11TsK43Ny1DgCD5UNWhva" }, token);
  assert.ok(key);

  // The bundle's X.509 root is the only P-384 key, so dropping it leaves nothing for ES384.
  await assert.rejects(async () => keySet({ alg: "ES384" }, token), { code: "ERR_JWKS_NO_MATCHING_KEY" });
});

test("go-spiffe bundle rejects token from unlisted key", async () => {
  const jwks = createJwksSource();
  const spec = { ...spireSpec(), jwksFile: join(SPIFFE_TESTDATA, "spiffebundle_valid_2.json") };
  const token = await mint(
    { ...spireKey, kid: "IRsID4VIM3T11TsK43Ny1DgCD5UNWhva" },
    { sub: WORKLOAD_SPIFFE_ID, aud: "writ", iat: NOW_SECONDS, exp: NOW_SECONDS + 300 },
  );

  await assertRejectsWithCode(
    verifyPlatformJwt(spec, token, { clock: newClock(), jwks }),
    "invalid_grant",
    /signature verification failed/,
  );
});
