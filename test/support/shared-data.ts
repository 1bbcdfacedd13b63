import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repository = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * Returns the folder of the public data sets the tests read (each with its source and licence), which
 * lives beside the repository as `../shared/data`. It is looked for in `$WRIT_SHARED_DATA`, beside
 * this working tree, then beside the repository this tree was cloned from, so that a clone in a
 * temporary folder finds it too. Throws, naming every place tried, when none has it.
 */
export function sharedDataDir(): string {
  const candidates: string[] = [];
  if (process.env.WRIT_SHARED_DATA) candidates.push(process.env.WRIT_SHARED_DATA);
  candidates.push(join(repository, "..", "shared", "data"));
  const origin = cloneOrigin();
  if (origin !== undefined) candidates.push(join(origin, "..", "shared", "data"));
  const found = candidates.find((candidate) => existsSync(candidate));
  if (found === undefined) {
    throw new Error(
      `the shared test data is missing: looked in ${candidates.join(", ")}; set WRIT_SHARED_DATA`,
    );
  }
  return found;
}

/** Returns the local path this working tree was cloned from, if it was cloned from a folder. */
function cloneOrigin(): string | undefined {
  try {
    const url = execFileSync("git", ["config", "--get", "remote.origin.url"], {
      cwd: repository,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    const path = url.startsWith("file://") ? fileURLToPath(url) : url;
    return isAbsolute(path) && existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}
