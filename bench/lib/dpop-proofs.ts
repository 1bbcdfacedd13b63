import { createHash, createPrivateKey, randomUUID, type KeyObject } from "node:crypto";
import type { JWK } from "jose";
import { signEd25519Jws } from "./jws.js";

/**
 * Signs DPoP proofs for one access token and one request (method and URL). Each proof has a fresh
 * `jti`, so each is good for one request only. `presign` signs a stock ahead of a timed loop, so that
 * signing in the client does not count in the measured time. `next` takes from that stock and signs
 * a new proof when it is empty, which `signedOnDemand` counts.
 */
export class DpopProofSigner {
  private readonly key: KeyObject;
  private readonly publicJwk: { kty: unknown; crv: unknown; x: unknown };
  private readonly ath: string;
  private stock: string[] = [];
  signedOnDemand = 0;

  constructor(
    dpopPrivateJwk: JWK,
    accessToken: string,
    private readonly method: string,
    private readonly url: string,
  ) {
    this.key = createPrivateKey({ key: dpopPrivateJwk as Record<string, string>, format: "jwk" });
    this.publicJwk = { kty: dpopPrivateJwk.kty, crv: dpopPrivateJwk.crv, x: dpopPrivateJwk.x };
    this.ath = createHash("sha256").update(accessToken).digest("base64url");
  }

  /**
   * Replaces the stock with `count` new proofs. The gateway accepts a proof for 60 s after its `iat`
   * by default, so the stock must be used up within that time.
   */
  presign(count: number): void {
    this.stock = Array.from({ length: count }, () => this.sign());
  }

  next(): string {
    const proof = this.stock.pop();
    if (proof !== undefined) return proof;
    this.signedOnDemand += 1;
    return this.sign();
  }

  private sign(): string {
    return signEd25519Jws(
      { typ: "dpop+jwt", jwk: this.publicJwk },
      {
        htm: this.method,
        htu: this.url,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        ath: this.ath,
      },
      this.key,
    );
  }
}
