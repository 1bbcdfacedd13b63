import { randomBytes } from "node:crypto";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { aesKeyBytes } from "./envelope.js";

/** The environment variable that may carry the master key, base64-encoded, instead of a file. */
export const masterKeyVariable = "WRIT_MASTER_KEY";
export const masterKeyFileName = "master.key";

/**
 * Loads the master key that seals every stored secret: from `WRIT_MASTER_KEY` when set, else from the
 * key file, which must be readable by its owner alone. Throws Error with what to fix otherwise.
 */
export async function loadMasterKey(file: string): Promise<Buffer> {
  const fromEnvironment = process.env[masterKeyVariable];
  if (fromEnvironment !== undefined && fromEnvironment !== "")
    return decodeKey(fromEnvironment, masterKeyVariable);

  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (error) {
    throw new Error(`master key file "${file}" not found; set ${masterKeyVariable} or restore the file`, {
      cause: error,
    });
  }
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `master key file "${file}" is readable by others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`,
    );
  }
  const handle = await open(file, "r");
  try {
    return decodeKey((await handle.readFile("utf8")).trim(), file);
  } finally {
    await handle.close();
  }
}

/** Creates a new master key file with mode 0600; an existing file is an error. */
export async function createMasterKeyFile(dataDir: string): Promise<string> {
  const file = join(dataDir, masterKeyFileName);
  const handle = await open(file, "wx", 0o600);
  try {
    await handle.writeFile(`${randomBytes(aesKeyBytes).toString("base64")}\n`);
  } finally {
    await handle.close();
  }
  return file;
}

function decodeKey(encoded: string, source: string): Buffer {
  const key = Buffer.from(encoded, "base64");
  if (key.length !== aesKeyBytes) {
    throw new Error(`invalid master key in ${source}: expected ${aesKeyBytes} bytes, base64-encoded`);
  }
  return key;
}
