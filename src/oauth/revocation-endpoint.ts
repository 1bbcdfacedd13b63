import type { BrokerContext } from "../broker/context.js";
import { isWritError } from "../errors/writ-error.js";
import { logFields } from "../log/fields.js";
import { revokeToken } from "../revocation/revoke.js";
import { verifyAccessToken } from "../tokens/access-token.js";
import { authenticateCaller } from "./caller.js";
import { required } from "./params.js";

/**
 * Handles `POST /oauth/revoke` (RFC 7009). The client authenticates as itself and may revoke only
 * tokens issued to it. Unknown, invalid and other clients' tokens get the same empty 200, so the
 * endpoint tells nobody whether a token exists.
 */
export async function handleRevocation(context: BrokerContext, params: Map<string, string[]>): Promise<void> {
  const caller = await authenticateCaller(context, params);
  const token = required(params, "token");
  let jti: string;
  try {
    const claims = await verifyAccessToken(
      token,
      // Revoking an expired token is harmless, so the expiry check is relaxed to a day.
      { issuer: context.issuer, clockSkewSeconds: 24 * 3600 },
      context,
    );
    if (claims.client_id !== caller.clientId) {
      context.log.info(
        { [logFields.clientId]: caller.clientId, [logFields.jti]: claims.jti },
        "revocation of another client's token ignored",
      );
      return;
    }
    jti = claims.jti;
  } catch (error) {
    if (isWritError(error) && error.code === "invalid_token") return;
    throw error;
  }
  try {
    await revokeToken(context, caller.clientId, jti, caller.clientId);
  } catch (error) {
    if (isWritError(error) && error.code === "not_found") return;
    throw error;
  }
}
