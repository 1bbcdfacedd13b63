/**
 * Measures the CPU cost of the Ed25519 operations that a token request makes the server do, through
 * jose (WebCrypto) and through node:crypto directly, with 1 and with 64 operations in flight. It is a
 * diagnostic for the token_issuance metric and not a metric itself.
 *
 *   node --import tsx bench/signature-costs.ts [operations]
 */
import { createPrivateKey, createPublicKey, randomUUID, verify } from "node:crypto";
import {
  calculateJwkThumbprint,
  EmbeddedJWK,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
  type JWK,
} from "jose";
import { signEd25519Jws } from "./lib/jws.js";
import { ownCpuSeconds } from "./lib/cpu.js";
import { positiveIntegerSetting } from "./lib/settings.js";

const operations = process.argv[2] === undefined ? 5000 : Number(process.argv[2]);
if (!Number.isInteger(operations) || operations <= 0) {
  throw new Error(`invalid operation count "${process.argv[2]}": expected a positive integer`);
}
const warmupOperations = Math.ceil(operations / 10);
const concurrencies = [1, positiveIntegerSetting("WRIT_BENCH_CONCURRENCY", 64)];

/** Runs `operation` `count` times with `concurrency` in flight, and returns CPU microseconds per call. */
async function cpuMicrosPerCall(
  operation: (index: number) => unknown,
  count: number,
  concurrency: number,
): Promise<number> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await operation(next++);
  };
  const before = ownCpuSeconds();
  await Promise.all(Array.from({ length: concurrency }, lane));
  return ((ownCpuSeconds() - before) / count) * 1e6;
}

const { publicKey, privateKey } = await generateKeyPair("Ed25519", { extractable: true });
const privateJwk = await exportJWK(privateKey);
const publicJwk: JWK = { kty: privateJwk.kty, crv: privateJwk.crv, x: privateJwk.x };
const nodePrivateKey = createPrivateKey({ key: privateJwk as Record<string, string>, format: "jwk" });
const nodePublicKey = createPublicKey({ key: publicJwk as Record<string, string>, format: "jwk" });

// Distinct DPoP proofs, signed as the load generator signs them. Nothing here checks replays.
const proofs = Array.from({ length: operations + warmupOperations }, () =>
  signEd25519Jws(
    { typ: "dpop+jwt", jwk: publicJwk },
    {
      htm: "POST",
      htu: "http://127.0.0.1:7400/oauth/token",
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
    },
    nodePrivateKey,
  ),
);
// Claims shaped like a writ access token's.
const claims = {
  iss: "http://127.0.0.1:7400",
  sub: "spiffe://bench.example/agent/bench-agent-0",
  aud: "http://127.0.0.1:7400/tools/bench-tool",
  client_id: "spiffe://bench.example/agent/bench-agent-0",
  iat: 1_800_000_000,
  exp: 1_800_000_600,
  cnf: { jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" },
  task_id: randomUUID(),
  authorization_details: [
    {
      type: "agent_task",
      task_id: randomUUID(),
      locations: ["http://127.0.0.1:7400/tools/bench-tool"],
      actions: ["read"],
      environment: "bench",
    },
  ],
};

const cases: [string, (index: number) => unknown][] = [
  [
    "jose jwtVerify with EmbeddedJWK, plus thumbprint",
    async (index) => {
      await jwtVerify(proofs[index] as string, EmbeddedJWK, { typ: "dpop+jwt", algorithms: ["Ed25519"] });
      await calculateJwkThumbprint(publicJwk, "sha256");
    },
  ],
  [
    "jose importJWK, then jwtVerify",
    async (index) =>
      jwtVerify(proofs[index] as string, await importJWK(publicJwk, "Ed25519"), { algorithms: ["Ed25519"] }),
  ],
  [
    "jose jwtVerify with an imported key",
    (index) => jwtVerify(proofs[index] as string, publicKey, { algorithms: ["Ed25519"] }),
  ],
  [
    "node:crypto verify, synchronous",
    (index) => {
      const proof = proofs[index] as string;
      const dot = proof.lastIndexOf(".");
      const signature = Buffer.from(proof.slice(dot + 1), "base64url");
      return verify(null, Buffer.from(proof.slice(0, dot)), nodePublicKey, signature);
    },
  ],
  [
    "jose SignJWT, access token claims",
    () =>
      new SignJWT({ ...claims, jti: randomUUID() })
        .setProtectedHeader({ alg: "Ed25519", typ: "at+jwt", kid: "bench" })
        .sign(privateKey),
  ],
  [
    "node:crypto sign, synchronous, same claims",
    () => signEd25519Jws({ typ: "at+jwt", kid: "bench" }, { ...claims, jti: randomUUID() }, nodePrivateKey),
  ],
];

console.log(`CPU microseconds per operation, ${operations} operations after ${warmupOperations} of warm-up`);
console.log(`${"operation".padEnd(50)}${concurrencies.map((c) => `${c} in flight`.padStart(14)).join("")}`);
for (const [name, operation] of cases) {
  const cells: string[] = [];
  for (const concurrency of concurrencies) {
    await cpuMicrosPerCall(operation, warmupOperations, concurrency);
    const micros = await cpuMicrosPerCall(
      (index) => operation(index + warmupOperations),
      operations,
      concurrency,
    );
    cells.push(micros.toFixed(0).padStart(14));
  }
  console.log(`${name.padEnd(50)}${cells.join("")}`);
}
