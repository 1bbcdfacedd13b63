import { randomUUID } from "node:crypto";
import { importJWK, type CryptoKey, type JWK } from "jose";
import type { Clock } from "../clock.js";
import { generateIdentityKey, type KeyAlgorithm } from "../identity/keys.js";
import type { Transaction } from "kysely";
import type { Database } from "../store/schema.js";
import type { Store } from "../store/store.js";

export interface SigningKey {
  kid: string;
  alg: KeyAlgorithm;
  publicJwk: JWK;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  createdAt: number;
  retiredAt: number | null;
}

/**
 * The broker's token signing keys. The newest key signs; retired keys stay published in the JWKS for
 * verification until every token they signed has expired, then they are dropped.
 *
 * NOTE: private signing keys are stored as JWK text in the store; encrypting them under the master
 * key of the secret store is still to come.
 */
export class SigningKeyRing {
  private keys: SigningKey[] = [];

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly maxTokenLifetimeSeconds: number,
  ) {}

  /** Loads the keys, creating the first one of type `alg` when there is none. */
  async load(alg: KeyAlgorithm): Promise<void> {
    let rows = await this.store.db.selectFrom("signing_keys").selectAll().orderBy("created_at").execute();
    if (rows.length === 0) {
      await this.rotate(alg);
      rows = await this.store.db.selectFrom("signing_keys").selectAll().orderBy("created_at").execute();
    }
    const keys: SigningKey[] = [];
    for (const row of rows) {
      const publicJwk = JSON.parse(row.public_jwk) as JWK;
      const privateJwk = JSON.parse(row.private_jwk) as JWK;
      keys.push({
        kid: row.kid,
        alg: row.alg as KeyAlgorithm,
        publicJwk,
        privateKey: (await importJWK(privateJwk, row.alg)) as CryptoKey,
        publicKey: (await importJWK(publicJwk, row.alg)) as CryptoKey,
        createdAt: row.created_at,
        retiredAt: row.retired_at,
      });
    }
    this.keys = keys;
  }

  /** Returns the key that signs new tokens. */
  current(): SigningKey {
    const key = this.keys.findLast((candidate) => candidate.retiredAt === null);
    if (key === undefined) throw new Error("no active signing key; run `writ keys rotate`");
    return key;
  }

  /** Returns the key with `kid`, including retired keys that still verify. */
  find(kid: string): SigningKey | undefined {
    return this.published().find((key) => key.kid === kid);
  }

  /** Returns the keys published in the JWKS: the current one and retired ones whose tokens may live. */
  published(): SigningKey[] {
    const horizon = this.clock.nowMs() - this.maxTokenLifetimeSeconds * 1000;
    return this.keys.filter((key) => key.retiredAt === null || key.retiredAt > horizon);
  }

  /**
   * Creates a new signing key and retires the current one, which keeps verifying its tokens. `within`
   * runs in the same transaction, so that a write it makes (the audit event) commits with the key.
   */
  async rotate(
    alg: KeyAlgorithm,
    within?: (trx: Transaction<Database>, rotated: { kid: string; retired: string[] }) => Promise<unknown>,
  ): Promise<{ kid: string; retired: string[] }> {
    const generated = await generateIdentityKey(alg);
    const kid = `${alg.toLowerCase()}-${randomUUID()}`;
    const now = this.clock.nowMs();
    const retired = await this.store.transaction(async (trx) => {
      const active = await trx
        .selectFrom("signing_keys")
        .select("kid")
        .where("retired_at", "is", null)
        .execute();
      await trx
        .updateTable("signing_keys")
        .set({ retired_at: now })
        .where("retired_at", "is", null)
        .execute();
      await trx
        .insertInto("signing_keys")
        .values({
          kid,
          alg,
          public_jwk: JSON.stringify({ ...generated.publicJwk, kid }),
          private_jwk: JSON.stringify({ ...generated.privateJwk, kid }),
          created_at: now,
          retired_at: null,
        })
        .execute();
      const retiredKids = active.map((row) => row.kid);
      if (within !== undefined) await within(trx, { kid, retired: retiredKids });
      return retiredKids;
    });
    return { kid, retired };
  }

  /** Returns the JWKS document: public keys only. */
  jwks(): { keys: JWK[] } {
    return {
      keys: this.published().map((key) => ({ ...key.publicJwk, kid: key.kid, alg: key.alg, use: "sig" })),
    };
  }
}
