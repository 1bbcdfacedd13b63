import { createHmac, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

/** Bytes of a new scan key: 256 bits, the size of an HMAC-SHA-256 output. */
const scanKeyBytes = 32;

/** The scan key file: `$XDG_CONFIG_HOME/writ/scan-key`, else `~/.config/writ/scan-key`. */
export function defaultScanKeyPath(): string {
  return join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "writ", "scan-key");
}

/**
 * Reads the installation's scan key, creating it with mode 0600 when missing. A key file readable by
 * group or others is rejected, because anyone holding the key can test guesses of a secret against
 * its fingerprint.
 */
export async function loadScanKey(path: string): Promise<Buffer> {
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0)
      throw new Error(`scan key file "${path}" is readable by others: run chmod 600 on it`);
    const key = Buffer.from((await readFile(path, "utf8")).trim(), "base64url");
    if (key.length < 16) throw new Error(`scan key file "${path}" holds fewer than 16 bytes`);
    return key;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const key = randomBytes(scanKeyBytes);
  const handle = await open(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    await handle.writeFile(`${key.toString("base64url")}\n`);
  } finally {
    await handle.close();
  }
  return key;
}

/**
 * Names a secret without revealing it: HMAC-SHA-256 under the scan key, 128 bits in hex. A plain
 * hash would let anyone who reads the report confirm a guessed low-entropy secret offline.
 */
export function fingerprint(key: Buffer, secret: string): string {
  return `hmac:${createHmac("sha256", key).update(secret).digest("hex").slice(0, 32)}`;
}
