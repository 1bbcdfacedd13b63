import { fork, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { generateKeyPair, SignJWT, type JWTHeaderParameters, type JWTPayload } from "jose";

export interface SigningBaselineOptions {
  /** The protected header of every token. Its `alg` also selects the type of the generated key. */
  header: JWTHeaderParameters;
  /** The claims of every token. Each token gets a fresh `jti`. */
  payload: JWTPayload;
  /** Signatures kept in flight, as a server with that many open requests would. */
  concurrency: number;
  warmupSeconds: number;
  durationSeconds: number;
}

/** A baseline measured in a child process, and whether that process was held to one CPU. */
export interface PinnedSigningBaseline {
  perSecond: number;
  /** False where `taskset` is missing: the figure then comes from every CPU of the machine. */
  pinned: boolean;
}

/**
 * Measures how many JWTs jose's `SignJWT` signs per second in this process, with a fresh key of the
 * header's algorithm. This is the cost of producing a token with nothing else around it.
 */
export async function measureJoseSigning(options: SigningBaselineOptions): Promise<number> {
  const { privateKey } = await generateKeyPair(options.header.alg);
  const signOne = (): Promise<string> =>
    new SignJWT({ ...options.payload, jti: randomUUID() })
      .setProtectedHeader(options.header)
      .sign(privateKey);

  const measureFromMs = Date.now() + options.warmupSeconds * 1000;
  const measureUntilMs = measureFromMs + options.durationSeconds * 1000;
  let signed = 0;
  const lane = async (): Promise<void> => {
    while (Date.now() < measureUntilMs) {
      await signOne();
      const now = Date.now();
      if (now >= measureFromMs && now < measureUntilMs) signed += 1;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  return signed / options.durationSeconds;
}

const self = fileURLToPath(import.meta.url);

/**
 * Runs `measureJoseSigning` in a child process held to CPU 0 with `taskset`, so that the figure is
 * what one core signs: the process's thread pool, where WebCrypto signs, is held to that core too.
 * Without `taskset` the child runs on every CPU, and `pinned` in the result is false.
 */
export async function measureJoseSigningOnOneCore(
  options: SigningBaselineOptions,
): Promise<PinnedSigningBaseline> {
  const pinned = spawnSync("taskset", ["-c", "0", "true"]).status === 0;
  const execArgv = ["--import", "tsx"];
  const child = pinned
    ? fork(self, ["--child"], {
        execPath: "taskset",
        execArgv: ["-c", "0", process.execPath, ...execArgv],
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      })
    : fork(self, ["--child"], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = once(child, "exit");
  child.send(options);
  const [perSecond] = (await Promise.race([
    once(child, "message"),
    exited.then(([code]) => {
      throw new Error(`the signing baseline process exited with status ${String(code)}`);
    }),
  ])) as [number];
  await exited;
  return { perSecond, pinned };
}

if (process.argv[1] === self && process.argv[2] === "--child") {
  process.once("message", (options: SigningBaselineOptions) => {
    measureJoseSigning(options).then(
      (perSecond) => process.send?.(perSecond, () => process.disconnect()),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
}
