import { randomUUID } from "node:crypto";
import { importJWK, type CryptoKey, type JWK } from "jose";
import type { BrokerContext } from "../broker/context.js";
import { generateIdentityKey, type KeyAlgorithm } from "../identity/keys.js";

/** The prefix of alert key ids, so that nothing mistakes the alert key for a token key. */
export const alertKidPrefix = "alert-";

/** The JOSE header `typ` of alerts; receivers require it so that no other writ JWT passes as an alert. */
export const alertType = "writ-alert+jwt";

export interface AlertKey {
  kid: string;
  alg: KeyAlgorithm;
  publicJwk: JWK;
  privateKey: CryptoKey;
}

const loaded = new WeakMap<BrokerContext, AlertKey>();

/**
 * Loads the broker's alert signing key, creating it on first use. Brokers sharing a store may race
 * to create one; all of them then use the oldest, so the JWKS names one alert key.
 *
 * NOTE: like the token signing keys, the private key is stored as JWK text, not yet sealed under
 * the master key; there is no rotation command for it yet.
 */
export async function loadAlertKey(context: BrokerContext): Promise<AlertKey> {
  const oldest = () =>
    context.store.db
      .selectFrom("alert_signing_keys")
      .selectAll()
      .orderBy("created_at")
      .orderBy("kid")
      .executeTakeFirst();
  let row = await oldest();
  if (row === undefined) {
    const alg = context.config.signing_alg;
    const generated = await generateIdentityKey(alg);
    const kid = `${alertKidPrefix}${randomUUID()}`;
    await context.queue.write((trx) =>
      trx
        .insertInto("alert_signing_keys")
        .values({
          kid,
          alg,
          public_jwk: JSON.stringify({ ...generated.publicJwk, kid }),
          private_jwk: JSON.stringify({ ...generated.privateJwk, kid }),
          created_at: context.clock.nowMs(),
        })
        .execute(),
    );
    row = await oldest();
  }
  if (row === undefined) throw new Error("the alert signing key could not be created");
  const key: AlertKey = {
    kid: row.kid,
    alg: row.alg as KeyAlgorithm,
    publicJwk: JSON.parse(row.public_jwk) as JWK,
    privateKey: (await importJWK(JSON.parse(row.private_jwk) as JWK, row.alg)) as CryptoKey,
  };
  loaded.set(context, key);
  return key;
}

/** Returns the loaded alert key, or undefined before `loadAlertKey` finished. */
export function currentAlertKey(context: BrokerContext): AlertKey | undefined {
  return loaded.get(context);
}

/** Returns the public alert key as a JWKS entry, or nothing before it is loaded. */
export function alertJwks(context: BrokerContext): JWK[] {
  const key = loaded.get(context);
  if (key === undefined) return [];
  const { d: _private, ...publicJwk } = key.publicJwk;
  return [{ ...publicJwk, kid: key.kid, alg: key.alg, use: "sig" }];
}
