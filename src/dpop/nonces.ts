import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "../clock.js";

/**
 * Server-provided DPoP nonces (RFC 9449 section 8). A fresh random nonce is minted every
 * `lifetimeSeconds`; the current and the previous one are accepted, so a client that fetched a nonce
 * just before a rotation is not refused.
 *
 * NOTE: nonces live in this process's memory, so brokers behind one URL each demand their own nonce;
 * a client retries once per broker it reaches.
 */
export class DpopNonces {
  private current = "";
  private previous = "";
  private mintedAtMs = -Infinity;

  constructor(
    private readonly clock: Clock,
    private readonly lifetimeSeconds: number,
  ) {}

  /** Returns the nonce to send in `DPoP-Nonce`. */
  issue(): string {
    this.rotateIfDue();
    return this.current;
  }

  /** Returns whether `nonce` is the current or the previous nonce. */
  accepts(nonce: unknown): boolean {
    this.rotateIfDue();
    if (typeof nonce !== "string") return false;
    return [this.current, this.previous].some((known) => known !== "" && constantTimeEqual(known, nonce));
  }

  private rotateIfDue(): void {
    const now = this.clock.nowMs();
    if (now - this.mintedAtMs < this.lifetimeSeconds * 1000) return;
    this.previous = now - this.mintedAtMs < 2 * this.lifetimeSeconds * 1000 ? this.current : "";
    this.current = randomBytes(24).toString("base64url");
    this.mintedAtMs = now;
  }
}

function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
