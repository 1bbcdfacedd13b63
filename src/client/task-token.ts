import type { CryptoKey } from "jose";
import * as oauth from "oauth4webapi";

/** The fetch that the client SDK calls; the global `fetch` by default. */
export type Fetch = (url: string, init?: RequestInit) => Promise<Response>;

/** An agent's OAuth client: its SPIFFE ID (the client_id) and the private key of its registered JWK. */
export interface AgentCredentials {
  /** The broker's issuer URL. */
  issuer: string;
  clientId: string;
  privateKey: CryptoKey;
  /** Permits plain http to the broker; meant for a broker on loopback, as in tests. */
  allowInsecureHttp?: boolean;
  fetch?: Fetch;
}

/** A DPoP key pair; every token obtained with it is bound to its public key (`cnf.jkt`). */
export interface DpopKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** A DPoP-bound access token and its expiry. */
export interface TaskToken {
  accessToken: string;
  /** Epoch milliseconds, from `expires_in` as the broker returned it. */
  expiresAtMs: number;
}

const discovered = new Map<string, Promise<oauth.AuthorizationServer>>();

/**
 * Obtains a task token for one resource with the client credentials grant: private_key_jwt client
 * authentication and a DPoP proof by `dpopKeys`. A `use_dpop_nonce` response is retried once with
 * the broker's nonce, which oauth4webapi keeps for later requests.
 */
export async function requestTaskToken(
  agent: AgentCredentials,
  request: { taskId: string; resource: string; dpopKeys: DpopKeyPair },
): Promise<TaskToken> {
  const options = {
    ...(agent.allowInsecureHttp === true ? { [oauth.allowInsecureRequests]: true } : {}),
    ...(agent.fetch === undefined ? {} : { [oauth.customFetch]: agent.fetch }),
  };
  const as = await discover(agent.issuer, options);
  const client: oauth.Client = { client_id: agent.clientId };
  const dpop = oauth.DPoP(client, request.dpopKeys);
  const parameters = {
    authorization_details: JSON.stringify([{ type: "agent_task", task_id: request.taskId }]),
    resource: request.resource,
  };
  const startedAtMs = Date.now();
  for (let attempt = 0; ; attempt += 1) {
    try {
      const response = await oauth.clientCredentialsGrantRequest(
        as,
        client,
        oauth.PrivateKeyJwt({ key: agent.privateKey }),
        parameters,
        { ...options, DPoP: dpop },
      );
      const result = await oauth.processClientCredentialsResponse(as, client, response);
      return { accessToken: result.access_token, expiresAtMs: startedAtMs + (result.expires_in ?? 0) * 1000 };
    } catch (error) {
      if (attempt === 0 && oauth.isDPoPNonceError(error)) continue;
      throw error;
    }
  }
}

function discover(
  issuer: string,
  options: oauth.DiscoveryRequestOptions,
): Promise<oauth.AuthorizationServer> {
  let metadata = discovered.get(issuer);
  if (metadata === undefined) {
    const url = new URL(issuer);
    metadata = oauth
      .discoveryRequest(url, { ...options, algorithm: "oauth2" })
      .then((response) => oauth.processDiscoveryResponse(url, response));
    metadata.catch(() => discovered.delete(issuer));
    discovered.set(issuer, metadata);
  }
  return metadata;
}
