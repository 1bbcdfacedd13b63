import { readFile } from "node:fs/promises";
import { importJWK, type CryptoKey, type JWK } from "jose";
import * as oauth from "oauth4webapi";
import { algorithmOf } from "../attestation/client-assertion.js";

/** A fetch implementation: the global one, or one that hands requests to an in-process server. */
export type Fetch = (url: string, init: RequestInit) => Promise<Response>;

/** A private key file as `writ init` and `writ agent add` write it: a private JWK plus its client_id. */
export interface KeyFile extends JWK {
  client_id: string;
}

export interface LoadedKey {
  clientId: string;
  privateKey: CryptoKey;
  kid: string | undefined;
}

/** Reads a private key file; throws Error naming the file when it is not one. */
export async function readKeyFile(path: string): Promise<LoadedKey> {
  let parsed: KeyFile;
  try {
    parsed = JSON.parse(await readFile(path, "utf8")) as KeyFile;
  } catch (error) {
    throw new Error(`cannot read key file "${path}": ${(error as Error).message}`, { cause: error });
  }
  if (typeof parsed.client_id !== "string" || typeof parsed.d !== "string") {
    throw new Error(`"${path}" is not a writ private key file: it needs "client_id" and a private JWK`);
  }
  const { client_id: clientId, ...jwk } = parsed;
  const privateKey = (await importJWK(jwk, algorithmOf(jwk))) as CryptoKey;
  return { clientId, privateKey, kid: jwk.kid };
}

/** An error the API returned: its OAuth error code, description and HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly description: string,
    readonly requestId: string | undefined,
  ) {
    super(`${code}: ${description}`);
    this.name = "ApiError";
  }
}

/**
 * A person's client for the admin API. It obtains a short-lived DPoP-bound token with its own key
 * (private_key_jwt, through oauth4webapi) and signs a fresh proof for every call.
 */
export class AdminClient {
  private token: { value: string; expiresAtMs: number } | undefined;

  private constructor(
    private readonly issuer: string,
    private readonly key: LoadedKey,
    private readonly fetchImpl: Fetch,
    private readonly dpop: oauth.DPoPHandle,
    private readonly server: oauth.AuthorizationServer,
  ) {}

  static async connect(options: { issuer: string; key: LoadedKey; fetch?: Fetch }): Promise<AdminClient> {
    const fetchImpl = options.fetch ?? ((url, init) => fetch(url, init));
    const server: oauth.AuthorizationServer = {
      issuer: options.issuer,
      token_endpoint: `${options.issuer}/oauth/token`,
      introspection_endpoint: `${options.issuer}/oauth/introspect`,
      revocation_endpoint: `${options.issuer}/oauth/revoke`,
    };
    const client: oauth.Client = { client_id: options.key.clientId };
    const dpop = oauth.DPoP(client, await oauth.generateKeyPair("Ed25519"));
    return new AdminClient(options.issuer, options.key, fetchImpl, dpop, server);
  }

  /** Sends one authenticated request and returns the raw response, for streams such as the feed. */
  async open(
    method: "GET" | "POST",
    path: string,
    body?: unknown,
    accept = "application/json",
  ): Promise<Response> {
    const token = await this.accessToken();
    const headers = new Headers({ accept });
    if (body !== undefined) headers.set("content-type", "application/json");
    try {
      return await oauth.protectedResourceRequest(
        token,
        method,
        new URL(`${this.issuer}${path}`),
        headers,
        body === undefined ? null : JSON.stringify(body),
        this.options(),
      );
    } catch (error) {
      // oauth4webapi throws on a WWW-Authenticate challenge; the response it carries is the answer.
      const response = (error as { response?: unknown }).response;
      if (response instanceof Response) return response;
      throw error;
    }
  }

  /** Calls the API and returns its JSON answer; throws ApiError on an error answer. */
  async call<T = unknown>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
    const response = await this.open(method, path, body);
    const text = await response.text();
    const parsed = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
    if (!response.ok) {
      throw new ApiError(
        response.status,
        String(parsed.error ?? "server_error"),
        String(parsed.error_description ?? response.statusText),
        parsed.request_id as string | undefined,
      );
    }
    return parsed as T;
  }

  private async accessToken(): Promise<string> {
    if (this.token !== undefined && this.token.expiresAtMs - 10_000 > Date.now()) return this.token.value;
    const client: oauth.Client = { client_id: this.key.clientId };
    const auth = oauth.PrivateKeyJwt({
      key: this.key.privateKey,
      ...(this.key.kid === undefined ? {} : { kid: this.key.kid }),
    });
    const params = new URLSearchParams({ resource: `${this.issuer}/v1` });
    const request = () =>
      oauth.clientCredentialsGrantRequest(this.server, client, auth, params, this.options());
    let result: oauth.TokenEndpointResponse;
    try {
      result = await oauth.processClientCredentialsResponse(this.server, client, await request());
    } catch (error) {
      // A server that demands DPoP nonces answers the first request with one; retry once with it.
      if (!oauth.isDPoPNonceError(error)) throw asApiError(error);
      try {
        result = await oauth.processClientCredentialsResponse(this.server, client, await request());
      } catch (retryError) {
        throw asApiError(retryError);
      }
    }
    this.token = { value: result.access_token, expiresAtMs: Date.now() + (result.expires_in ?? 60) * 1000 };
    return result.access_token;
  }

  private options(): oauth.DPoPRequestOptions & {
    [oauth.customFetch]: Fetch;
    [oauth.allowInsecureRequests]: boolean;
  } {
    return {
      DPoP: this.dpop,
      [oauth.customFetch]: this.fetchImpl,
      // Plain http is accepted by writ only for loopback public URLs, where it cannot be intercepted.
      [oauth.allowInsecureRequests]: this.issuer.startsWith("http://"),
    };
  }
}

function asApiError(error: unknown): Error {
  if (error instanceof oauth.ResponseBodyError) {
    return new ApiError(error.status, error.error, error.error_description ?? error.error, undefined);
  }
  return error as Error;
}
