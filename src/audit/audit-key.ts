import { readFile, stat } from "node:fs/promises";
import { importJWK, type CryptoKey, type JSONWebKeySet, type JWK } from "jose";
import {
  generateIdentityKey,
  publicMembers,
  writePrivateKeyFile,
  type KeyAlgorithm,
} from "../identity/keys.js";

/** The prefix of audit key ids, so that nothing mistakes the audit key for a token or alert key. */
export const auditKidPrefix = "audit-";

/** The key that signs audit checkpoints. It lives in a file, apart from the store it vouches for. */
export interface AuditKey {
  kid: string;
  alg: KeyAlgorithm;
  publicJwk: JWK;
  privateKey: CryptoKey;
}

/**
 * Loads the audit signing key from `file`, creating it with mode 0600 when the file does not exist.
 * A file readable by group or others is rejected, as is a file that contains no private key of a
 * supported algorithm. When two processes create the key at once, the loser reads the winner's.
 */
export async function loadAuditKey(file: string, alg: KeyAlgorithm): Promise<AuditKey> {
  let exists = true;
  try {
    await stat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    exists = false;
  }
  if (!exists) {
    const generated = await generateIdentityKey(alg);
    const kid = `${auditKidPrefix}${generated.jkt}`;
    try {
      await writePrivateKeyFile(file, { ...generated.privateJwk, kid });
    } catch (error) {
      const cause = (error as Error).cause as NodeJS.ErrnoException | undefined;
      if (cause?.code !== "EEXIST") throw error;
    }
  }
  return readAuditKey(file);
}

/** Reads an existing audit key file; throws Error when it is missing, readable by others, or invalid. */
export async function readAuditKey(file: string): Promise<AuditKey> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (error) {
    throw new Error(
      `audit key file "${file}" not found; restore it or give the audit JWKS with --audit-jwks`,
      {
        cause: error,
      },
    );
  }
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `audit key file "${file}" is readable by others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`,
    );
  }
  return parseAuditKey(await readFile(file, "utf8"), file);
}

async function parseAuditKey(text: string, file: string): Promise<AuditKey> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch (error) {
    throw new Error(`invalid audit key file "${file}": not valid JSON`, { cause: error });
  }
  if (jwk.d === undefined || typeof jwk.kid !== "string" || (jwk.alg !== "Ed25519" && jwk.alg !== "ES256")) {
    throw new Error(`invalid audit key file "${file}": expected a private Ed25519 or ES256 JWK with a "kid"`);
  }
  const alg = jwk.alg as KeyAlgorithm;
  return {
    kid: jwk.kid,
    alg,
    publicJwk: { ...publicMembers(stripPrivate(jwk)), kid: jwk.kid, alg, use: "sig" },
    privateKey: (await importJWK(jwk, alg)) as CryptoKey,
  };
}

function stripPrivate(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, ...rest } = jwk;
  return rest;
}

/** Returns the audit key's public half as a JWK Set, the form verifiers and exports take. */
export function auditJwks(key: AuditKey): JSONWebKeySet {
  return { keys: [key.publicJwk] };
}
