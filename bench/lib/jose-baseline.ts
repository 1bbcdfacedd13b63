import { randomUUID } from "node:crypto";
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
