import { createHash, randomUUID } from "node:crypto";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SignJWT, exportJWK, generateKeyPair, type JWK } from "jose";
import { requestTaskToken, type AgentCredentials, type DpopKeyPair, type TaskToken } from "./task-token.js";

/** Default time before a token's expiry at which it is renewed, in seconds. */
export const defaultRenewBeforeSeconds = 30;

export interface McpTransportOptions extends AgentCredentials {
  /** The MCP tool's URL at the gateway, `<gateway>/mcp/<tool>`, which is also its resource URI. */
  url: string;
  taskId: string;
  /** The resource to request tokens for; the URL by default. */
  resource?: string;
  /** A DPoP key pair; an ES256 pair made for this transport by default. */
  dpopKeys?: DpopKeyPair;
  /** How long before expiry a token is renewed, in seconds; 30 by default. */
  renewBeforeSeconds?: number;
}

/**
 * Returns an MCP client transport to a writ gateway. It obtains a task token for the tool, renews it
 * before expiry, and signs a fresh DPoP proof (RFC 9449) for every HTTP request. A 401 asking for a
 * server nonce (`use_dpop_nonce`) is retried once with the nonce from `DPoP-Nonce`, and the latest
 * nonce is sent with later proofs.
 */
export function createMcpTransport(options: McpTransportOptions): StreamableHTTPClientTransport {
  return new StreamableHTTPClientTransport(new URL(options.url), { fetch: dpopFetch(options) });
}

/** Names the JWS algorithm of a DPoP key writ accepts: P-256 (ES256) or Ed25519 (EdDSA). */
function proofAlgorithm(jwk: JWK): string {
  if (jwk.kty === "EC" && jwk.crv === "P-256") return "ES256";
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return "EdDSA";
  throw new TypeError(`a DPoP key must be P-256 or Ed25519, not ${jwk.kty ?? "?"} ${jwk.crv ?? ""}`.trim());
}

/** Returns a fetch that adds `Authorization: DPoP` and a proof to each request; exported for other transports. */
export function dpopFetch(
  options: McpTransportOptions,
): (url: string | URL, init?: RequestInit) => Promise<Response> {
  const baseFetch = options.fetch ?? ((url: string, init?: RequestInit) => fetch(url, init));
  const renewBeforeMs = (options.renewBeforeSeconds ?? defaultRenewBeforeSeconds) * 1000;
  let keys: Promise<{ pair: DpopKeyPair; jwk: JWK; alg: string }> | undefined;
  let token: Promise<TaskToken> | undefined;
  let nonce: string | undefined;

  function dpopKeys(): Promise<{ pair: DpopKeyPair; jwk: JWK; alg: string }> {
    keys ??= (async () => {
      const pair = options.dpopKeys ?? (await generateKeyPair("ES256"));
      const jwk = await exportJWK(pair.publicKey);
      return { pair, jwk, alg: proofAlgorithm(jwk) };
    })();
    return keys;
  }

  async function currentToken(): Promise<string> {
    const held = token === undefined ? undefined : await token.catch(() => undefined);
    if (held === undefined || held.expiresAtMs - renewBeforeMs <= Date.now()) {
      const pair = (await dpopKeys()).pair;
      token = requestTaskToken(options, {
        taskId: options.taskId,
        resource: options.resource ?? options.url,
        dpopKeys: pair,
      });
      return (await token).accessToken;
    }
    return held.accessToken;
  }

  return async (url, init = {}) => {
    const target = new URL(url.toString());
    const method = init.method ?? "GET";
    let renewed = false;
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const accessToken = await currentToken();
      const { pair, jwk, alg } = await dpopKeys();
      const proof = await new SignJWT({
        htm: method,
        htu: `${target.origin}${target.pathname}`,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        ath: createHash("sha256").update(accessToken).digest("base64url"),
        ...(nonce === undefined ? {} : { nonce }),
      })
        .setProtectedHeader({ alg, typ: "dpop+jwt", jwk })
        .sign(pair.privateKey);
      const headers = new Headers(init.headers);
      headers.set("authorization", `DPoP ${accessToken}`);
      headers.set("dpop", proof);
      const response = await baseFetch(target.href, { ...init, headers });
      const offered = response.headers.get("dpop-nonce");
      const staleNonce = offered !== null && offered !== nonce;
      if (offered !== null) nonce = offered;
      if (response.status !== 401) return response;
      const challenge = response.headers.get("www-authenticate") ?? "";
      if (challenge.includes('error="use_dpop_nonce"') && staleNonce) continue;
      // A token revoked or expired early gets one renewal; the broker decides whether the task lives on.
      if (challenge.includes('error="invalid_token"') && !renewed) {
        renewed = true;
        token = undefined;
        continue;
      }
      return response;
    }
    throw new Error(`the gateway kept rejecting DPoP proofs for ${target.href}`);
  };
}
