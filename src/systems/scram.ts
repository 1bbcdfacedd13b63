import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";

/** The PBKDF2 iteration count PostgreSQL itself uses by default (`scram_iterations`, 4096). */
export const scramIterations = 4096;
/** Salt length in bytes, as PostgreSQL generates it. */
const saltBytes = 16;

/**
 * Computes the SCRAM-SHA-256 verifier of a password in the form PostgreSQL stores in `rolpassword`
 * (RFC 5802 and RFC 7677): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.
 * PostgreSQL stores a value in this form as it is, so the password itself never reaches the server.
 *
 * PostgreSQL normalises passwords with SASLprep first. The passwords writ generates are printable
 * ASCII, for which SASLprep changes nothing, so this function accepts only printable ASCII.
 */
export function scramSha256Verifier(
  password: string,
  options: { salt?: Buffer; iterations?: number } = {},
): string {
  if (!/^[\x21-\x7e]+$/.test(password)) {
    throw new TypeError("a SCRAM password here must be printable ASCII without spaces");
  }
  const salt = options.salt ?? randomBytes(saltBytes);
  const iterations = options.iterations ?? scramIterations;
  const saltedPassword = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", saltedPassword).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", saltedPassword).update("Server Key").digest();
  saltedPassword.fill(0);
  return (
    `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}` +
    `$${storedKey.toString("base64")}:${serverKey.toString("base64")}`
  );
}

/** Generates a random password: 32 bytes as base64url, 43 printable ASCII characters. */
export function generatePassword(): string {
  return randomBytes(32).toString("base64url");
}
