import type { BrokerContext } from "../broker/context.js";
import { authenticateClient } from "../attestation/client-assertion.js";
import { WritError } from "../errors/writ-error.js";
import { describeClient, findClientKey, importClientKey, type ClientIdentity } from "./clients.js";
import { single, type FormParams } from "./params.js";

/** Authenticates the caller of an OAuth endpoint by its private_key_jwt client assertion. */
export async function authenticateCaller(
  context: BrokerContext,
  params: FormParams,
): Promise<ClientIdentity> {
  const { clientId } = await authenticateClient(
    {
      clientAssertion: single(params, "client_assertion"),
      clientAssertionType: single(params, "client_assertion_type"),
      clientId: single(params, "client_id"),
    },
    {
      issuer: context.issuer,
      maxLifetimeSeconds: context.config.client_assertion_max_lifetime_seconds,
      clockSkewSeconds: context.config.clock_skew_seconds,
    },
    {
      clock: context.clock,
      replay: context.replay,
      findClient: (id) => findClientKey(context, id),
      importKey: importClientKey,
    },
  );
  const identity = await describeClient(context, clientId);
  if (identity === undefined) throw new WritError("invalid_client", "client authentication failed");
  return identity;
}

/** Returns whether an identity may read token state: introspection and the revocation feed. */
export function mayReadTokenState(identity: ClientIdentity): boolean {
  return identity.kind === "gateway" || (identity.kind === "human" && identity.roles.includes("admin"));
}
