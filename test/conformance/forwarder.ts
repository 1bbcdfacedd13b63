import { createHash, randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from "jose";
import { requestTaskToken, type AgentCredentials, type TaskToken } from "../../src/client/index.js";

/** Request headers of Streamable HTTP that the forwarder passes on to the gateway. */
const forwardedRequestHeaders = ["content-type", "accept", "last-event-id", "mcp-session-id"];
/** Response headers of the gateway that the forwarder passes back to the MCP client. */
const forwardedResponseHeaders = ["content-type", "mcp-session-id", "mcp-protocol-version", "allow"];
/** A token is renewed this long before its expiry, so no proof is signed for an expired token. */
const renewBeforeMs = 30_000;

export interface ForwarderOptions {
  /** The tool's endpoint at the gateway, `<issuer>/mcp/<tool>`, which is also the token's resource. */
  toolUrl: string;
  credentials: AgentCredentials;
  taskId: string;
}

/** A running forwarder: MCP clients connect to `url` without any writ credentials. */
export interface Forwarder {
  url: string;
  /** Requests that the forwarder could not pass on, such as a failed token request. */
  errors: Error[];
  close(): Promise<void>;
}

/**
 * Starts a loopback HTTP server that acts as one MCP tool of a writ gateway for a client
 * that only speaks plain MCP, such as the conformance runner. For each request it adds the task
 * token and a fresh DPoP proof with the gateway's current nonce, forwards it to the tool's endpoint
 * and streams the answer back. A `use_dpop_nonce` rejection is retried once with the new nonce.
 * It is a test fixture: it listens on 127.0.0.1 only and holds one agent's token for one task.
 */
export async function startForwarder(options: ForwarderOptions): Promise<Forwarder> {
  const target = new URL(options.toolUrl);
  const gatewayOrigin = target.origin;
  const keys = await generateKeyPair("ES256");
  const jwk = await exportJWK(keys.publicKey);
  const errors: Error[] = [];
  let token: Promise<TaskToken> | undefined;
  let nonce: string | undefined;
  let ownOrigin = "";

  async function accessToken(): Promise<string> {
    const cachedToken = token === undefined ? undefined : await token.catch(() => undefined);
    if (cachedToken !== undefined && cachedToken.expiresAtMs - renewBeforeMs > Date.now())
      return cachedToken.accessToken;
    token = requestTaskToken(options.credentials, {
      taskId: options.taskId,
      resource: options.toolUrl,
      dpopKeys: keys,
    });
    return (await token).accessToken;
  }

  async function send(method: string, headers: Headers, body: Buffer | undefined): Promise<Response> {
    for (let attempt = 0; ; attempt += 1) {
      const tokenValue = await accessToken();
      const proofHeaders = new Headers(headers);
      proofHeaders.set("authorization", `DPoP ${tokenValue}`);
      proofHeaders.set("dpop", await signProof(keys.privateKey, jwk, method, target, tokenValue, nonce));
      const response = await fetch(target, {
        method,
        headers: proofHeaders,
        ...(body === undefined ? {} : { body }),
      });
      const offered = response.headers.get("dpop-nonce");
      const nonceChanged = offered !== null && offered !== nonce;
      if (offered !== null) nonce = offered;
      const challenge = response.headers.get("www-authenticate") ?? "";
      if (
        response.status === 401 &&
        challenge.includes('error="use_dpop_nonce"') &&
        nonceChanged &&
        attempt === 0
      ) {
        await response.body?.cancel();
        continue;
      }
      return response;
    }
  }

  async function forward(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const method = request.method ?? "GET";

    const headers = new Headers();
    for (const [name, value] of Object.entries(request.headers)) {
      if (typeof value !== "string") continue;
      if (forwardedRequestHeaders.includes(name) || name.startsWith("mcp-")) headers.set(name, value);
    }
    // The forwarder plays the gateway's part for the client, as a reverse proxy would, so an Origin
    // naming the forwarder becomes the gateway's origin. Any other Origin passes unchanged, and the
    // gateway's own check decides it.
    const origin = request.headers.origin;
    if (origin !== undefined) headers.set("origin", origin === ownOrigin ? gatewayOrigin : origin);

    const answer = await send(method, headers, chunks.length === 0 ? undefined : Buffer.concat(chunks));
    response.statusCode = answer.status;
    for (const name of forwardedResponseHeaders) {
      const value = answer.headers.get(name);
      if (value !== null) response.setHeader(name, value);
    }
    if (answer.body === null) {
      response.end();
      return;
    }
    const stream = Readable.fromWeb(answer.body as import("node:stream/web").ReadableStream);
    stream.pipe(response);
    await once(stream, "end");
  }

  const server: Server = createServer((request, response) => {
    forward(request, response).catch((error: unknown) => {
      errors.push(error as Error);
      if (!response.headersSent) response.writeHead(502, { "content-type": "text/plain" });
      response.end(`forwarding to ${target.href} failed: ${(error as Error).message}`);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  ownOrigin = `http://127.0.0.1:${port}`;

  return {
    url: `${ownOrigin}/mcp`,
    errors,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

/** Signs an RFC 9449 proof for `method target`, bound to `accessToken`, with `nonce` when known. */
async function signProof(
  privateKey: CryptoKey,
  jwk: JWK,
  method: string,
  target: URL,
  accessToken: string,
  nonce: string | undefined,
): Promise<string> {
  return new SignJWT({
    htm: method,
    htu: `${target.origin}${target.pathname}`,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    ath: createHash("sha256").update(accessToken).digest("base64url"),
    ...(nonce === undefined ? {} : { nonce }),
  })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk })
    .sign(privateKey);
}
