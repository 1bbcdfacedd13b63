import { createLocalJWKSet, jwtVerify, SignJWT, type JSONWebKeySet } from "jose";
import type { AuditKey } from "./audit-key.js";

/** The JOSE header `typ` of checkpoints, so that no other writ JWT passes as one. */
export const checkpointType = "writ-checkpoint+jwt";

/** A signed statement that the audit chain's head was event `seq` with hash `hash` at `time`. */
export interface Checkpoint {
  seq: number;
  /** The head event's hash, lowercase hex SHA-256. */
  hash: string;
  /** When the checkpoint was signed, in milliseconds since the Unix epoch. */
  time: number;
  /** The compact JWS over the three fields above, signed with the audit key. */
  jws: string;
}

/** Signs the chain head `seq`/`hash` at `timeMs` with the audit key. */
export async function signCheckpoint(
  key: AuditKey,
  issuer: string,
  head: { seq: number; hash: string },
  timeMs: number,
): Promise<Checkpoint> {
  const jws = await new SignJWT({ seq: head.seq, hash: head.hash, time: timeMs })
    .setProtectedHeader({ alg: key.alg, typ: checkpointType, kid: key.kid })
    .setIssuer(issuer)
    .setIssuedAt(Math.floor(timeMs / 1000))
    .sign(key.privateKey);
  return { seq: head.seq, hash: head.hash, time: timeMs, jws };
}

/** The error of a checkpoint whose signature or signed fields are invalid. */
export class CheckpointError extends Error {}

/**
 * Verifies a checkpoint's signature against `jwks` and returns the head it signs. Throws
 * CheckpointError when the signature, the `typ` or the payload is invalid, or when the stored
 * `seq`, `hash` or `time` beside the JWS differ from what the JWS signs.
 */
export async function verifyCheckpoint(
  checkpoint: Checkpoint,
  jwks: JSONWebKeySet,
): Promise<{ seq: number; hash: string; time: number }> {
  let payload: Record<string, unknown>;
  try {
    // No `exp` is set and no maximum age is given, because a checkpoint stays evidence for as long as
    // the log is kept.
    ({ payload } = await jwtVerify(checkpoint.jws, createLocalJWKSet(jwks), {
      typ: checkpointType,
      algorithms: ["Ed25519", "EdDSA", "ES256"],
    }));
  } catch (error) {
    throw new CheckpointError(`signature check failed: ${(error as Error).message}`, { cause: error });
  }
  const { seq, hash, time } = payload;
  if (!Number.isSafeInteger(seq) || typeof hash !== "string" || !Number.isSafeInteger(time)) {
    throw new CheckpointError("signed payload lacks seq, hash or time");
  }
  const signed = { seq: seq as number, hash, time: time as number };
  if (signed.seq !== checkpoint.seq || signed.hash !== checkpoint.hash || signed.time !== checkpoint.time) {
    throw new CheckpointError(
      `stored seq ${checkpoint.seq} and hash differ from the signed seq ${signed.seq} and hash`,
    );
  }
  return signed;
}
