import { constants, open, unlink, type FileHandle } from "node:fs/promises";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";

/** Key types writ generates for identities and for its own signing keys. */
export type KeyAlgorithm = "Ed25519" | "ES256";

/** JWS algorithms accepted from clients: asymmetric only; `EdDSA` is the pre-RFC 9864 name of Ed25519. */
export const acceptedClientAlgorithms = ["Ed25519", "EdDSA", "ES256", "ES384", "PS256", "RS256"] as const;

export interface GeneratedKey {
  publicJwk: JWK;
  privateJwk: JWK;
  /** The RFC 7638 SHA-256 thumbprint of the public key, base64url-encoded. */
  jkt: string;
}

/** Generates a key pair, returning both halves as JWKs whose `kid` is the key's thumbprint. */
export async function generateIdentityKey(alg: KeyAlgorithm): Promise<GeneratedKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const privateJwk = await exportJWK(privateKey);
  const jkt = await calculateJwkThumbprint(publicJwk, "sha256");
  const common = { kid: jkt, alg, use: "sig" };
  return { publicJwk: { ...publicJwk, ...common }, privateJwk: { ...privateJwk, ...common }, jkt };
}

/** Returns the public members of a JWK, refusing any private or symmetric key material. */
export function publicMembers(jwk: JWK): JWK {
  if (jwk.d !== undefined || jwk.k !== undefined || jwk.p !== undefined) {
    throw new TypeError("expected a public JWK, got private or symmetric key material");
  }
  const { kty, crv, x, y, n, e } = jwk;
  return Object.fromEntries(
    Object.entries({ kty, crv, x, y, n, e }).filter(([, value]) => value !== undefined),
  );
}

/** A key file created empty and exclusively, to be filled once the key's identity is registered. */
export interface ReservedKeyFile {
  write(contents: object): Promise<void>;
  /** Closes and removes the file, for when registration failed. */
  abandon(): Promise<void>;
}

/**
 * Creates a private key file with mode 0600. The file is created exclusively and never through a
 * symbolic link, so an existing file, or a link planted at the path, is an error rather than a target.
 */
export async function reservePrivateKeyFile(path: string): Promise<ReservedKeyFile> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let handle: FileHandle;
  try {
    handle = await open(path, flags, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new Error(`key file "${path}" already exists; choose another path or remove it first`, {
        cause: error,
      });
    }
    throw error;
  }
  return {
    async write(contents) {
      try {
        await handle.writeFile(`${JSON.stringify(contents, null, 2)}\n`);
      } finally {
        await handle.close();
      }
    },
    async abandon() {
      await handle.close();
      await unlink(path);
    },
  };
}

/** Writes a private key file exclusively with mode 0600, as `reservePrivateKeyFile` describes. */
export async function writePrivateKeyFile(path: string, contents: object): Promise<void> {
  await (await reservePrivateKeyFile(path)).write(contents);
}
