import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/** Bytes of an AES-256 key. */
export const aesKeyBytes = 32;
/** Bytes of a GCM nonce, as NIST SP 800-38D recommends for random nonces. */
const nonceBytes = 12;

/** A secret sealed under its own data key, which is itself sealed under the master key. */
export interface SealedSecret {
  /** The data key, encrypted under the master key: nonce, ciphertext and tag, base64url-joined by dots. */
  wrapped_key: string;
  /** The value, encrypted under the data key, in the same form. */
  ciphertext: string;
}

/**
 * Seals a value with AES-256-GCM under a fresh data key, and the data key under the master key.
 * `name` is bound as additional authenticated data, so a sealed value moved to another name fails
 * to open.
 */
export function seal(masterKey: Buffer, name: string, value: Buffer): SealedSecret {
  const dataKey = randomBytes(aesKeyBytes);
  try {
    return {
      wrapped_key: encrypt(masterKey, dataKey, `writ-data-key:${name}`),
      ciphertext: encrypt(dataKey, value, `writ-secret:${name}`),
    };
  } finally {
    dataKey.fill(0);
  }
}

/** Opens a sealed value; throws Error when the master key is wrong or anything was altered. */
export function open(masterKey: Buffer, name: string, sealed: SealedSecret): Buffer {
  const dataKey = decrypt(masterKey, sealed.wrapped_key, `writ-data-key:${name}`);
  try {
    return decrypt(dataKey, sealed.ciphertext, `writ-secret:${name}`);
  } finally {
    dataKey.fill(0);
  }
}

function encrypt(key: Buffer, plaintext: Buffer, associatedData: string): string {
  const nonce = randomBytes(nonceBytes);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(Buffer.from(associatedData));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return [nonce, ciphertext, cipher.getAuthTag()].map((part) => part.toString("base64url")).join(".");
}

function decrypt(key: Buffer, sealed: string, associatedData: string): Buffer {
  const [nonce, ciphertext, tag] = sealed.split(".").map((part) => Buffer.from(part, "base64url"));
  if (nonce === undefined || ciphertext === undefined || tag === undefined || tag.length !== 16) {
    throw new Error("sealed value is malformed");
  }
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(Buffer.from(associatedData));
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}
