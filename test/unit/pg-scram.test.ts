import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { test } from "node:test";
import { generatePassword, scramSha256Verifier } from "../../src/systems/scram.js";

// The SCRAM-SHA-256 exchange of RFC 7677 section 3: user "user", password "pencil".
const salt = Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64");
const authMessage =
  "n=user,r=rOprNGfwEbeRWgbNEkqO," +
  "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
  "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const clientProof = Buffer.from("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "base64");
const serverSignature = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

function parts(verifier: string): { iterations: number; salt: string; storedKey: Buffer; serverKey: Buffer } {
  const match = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  assert.ok(match !== null, verifier);
  return {
    iterations: Number(match[1]),
    salt: match[2] as string,
    storedKey: Buffer.from(match[3] as string, "base64"),
    serverKey: Buffer.from(match[4] as string, "base64"),
  };
}

test("verifier matches the RFC 7677 exchange", () => {
  const verifier = parts(scramSha256Verifier("pencil", { salt, iterations: 4096 }));
  assert.equal(verifier.iterations, 4096);
  assert.equal(verifier.salt, salt.toString("base64"));

  // The server's signature in the RFC is derived from ServerKey.
  assert.equal(
    createHmac("sha256", verifier.serverKey).update(authMessage).digest("base64"),
    serverSignature,
  );

  // The client's proof in the RFC recovers a ClientKey whose hash is StoredKey.
  const clientSignature = createHmac("sha256", verifier.storedKey).update(authMessage).digest();
  const clientKey = Buffer.from(clientProof.map((byte, index) => byte ^ (clientSignature[index] as number)));
  assert.deepEqual(createHash("sha256").update(clientKey).digest(), verifier.storedKey);
});

test("verifier uses a fresh salt", () => {
  const first = parts(scramSha256Verifier("same-password"));
  const second = parts(scramSha256Verifier("same-password"));
  assert.notEqual(first.salt, second.salt);
  assert.equal(Buffer.from(first.salt, "base64").length, 16);
});

test("verifier rejects non-ASCII passwords", () => {
  for (const password of ["", "with space", "pässword", "tab\there"]) {
    assert.throws(() => scramSha256Verifier(password), TypeError, JSON.stringify(password));
  }
});

test("generated passwords are printable ASCII", () => {
  const password = generatePassword();
  assert.match(password, /^[A-Za-z0-9_-]{43}$/);
  assert.doesNotThrow(() => scramSha256Verifier(password));
});
