import type { CryptoKey } from "jose";
import * as oauth from "oauth4webapi";
import type { AgentCredentials } from "../client/index.js";

const tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";
export const accessTokenType = "urn:ietf:params:oauth:token-type:access_token";
export const delegationTicketType = "urn:writ:params:oauth:token-type:delegation-ticket";

/**
 * Sends a token exchange request (RFC 8693) with private_key_jwt client authentication and a DPoP
 * proof by `dpopKeys`, and returns the issued token: a delegation ticket or an access token. A
 * `use_dpop_nonce` response is retried once with the broker's nonce.
 */
export async function exchangeToken(
  credentials: AgentCredentials,
  dpopKeys: oauth.CryptoKeyPair,
  parameters: Record<string, string>,
): Promise<string> {
  const issuer = new URL(credentials.issuer);
  const options = { [oauth.allowInsecureRequests]: true } as const;
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { ...options, algorithm: "oauth2" }),
  );
  const client: oauth.Client = { client_id: credentials.clientId };
  const dpop = oauth.DPoP(client, dpopKeys);
  for (let attempt = 0; ; attempt += 1) {
    try {
      const response = await oauth.genericTokenEndpointRequest(
        as,
        client,
        oauth.PrivateKeyJwt({ key: credentials.privateKey as CryptoKey }),
        tokenExchangeGrant,
        parameters,
        { ...options, DPoP: dpop },
      );
      // A delegation ticket has token_type N_A (RFC 8693 section 2.2.1): it is no access token.
      const result = await oauth.processGenericTokenEndpointResponse(as, client, response, {
        recognizedTokenTypes: { n_a: noop },
      });
      return result.access_token;
    } catch (error) {
      if (attempt === 0 && oauth.isDPoPNonceError(error)) continue;
      throw error;
    }
  }
}

/** Sends a request with a token obtained by redeeming a ticket, with a DPoP proof by its key. */
export async function redeemedRequest(
  held: { accessToken: string; dpop: oauth.DPoPHandle },
  method: string,
  url: string,
  body: string | undefined,
): Promise<Response> {
  const headers = new Headers(body === undefined ? {} : { "content-type": "application/json" });
  try {
    return await oauth.protectedResourceRequest(
      held.accessToken,
      method,
      new URL(url),
      headers,
      body ?? null,
      {
        DPoP: held.dpop,
        [oauth.allowInsecureRequests]: true,
      },
    );
  } catch (error) {
    // oauth4webapi raises on a response with a WWW-Authenticate challenge; the response is the outcome.
    const response = (error as { response?: unknown }).response;
    if (response instanceof Response) return response;
    throw error;
  }
}

function noop(): void {}
