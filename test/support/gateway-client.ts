import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import { SignJWT, exportJWK } from "jose";
import type { CryptoKeyPair } from "oauth4webapi";
import { Client } from "undici";
import type { AdminClient } from "../../src/cli/admin-client.js";

/** One request as the upstream received it. */
export interface SeenRequest {
  method: string;
  /** The request target exactly as it arrived, path and query. */
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** The credentials the upstream accepts. A request that presents none of them gets 401. */
export interface UpstreamCredentials {
  /** Accepted as `Authorization: Bearer <bearer>`. */
  bearer: string;
  /** Accepted as HTTP Basic authentication. */
  basic: { user: string; password: string };
  /** Accepted as the query parameter `name=value`. */
  query: { name: string; value: string };
}

/** A loopback HTTP server standing in for a tool's API. */
export interface RecordingUpstream {
  /** `http://127.0.0.1:<port>`, the upstream URL a tool registration names. */
  url: string;
  /** Every request received, in arrival order, including those rejected with 401. */
  seen: SeenRequest[];
  close(): Promise<void>;
}

/**
 * Starts an upstream that records every request and responds only to requests that carry one of its
 * credentials. `GET /moved/…` redirects with 302 to `/admin/after-redirect`, so a gateway that followed
 * redirects would show up as an `/admin` request. Every other path answers 200 with JSON naming the
 * method, target and SHA-256 of the body. The headers `x-echo-authorization` and `x-echo-url` echo
 * what arrived, `x-echo-upper` the authorization in upper case and `x-echo-base64` its base64, so
 * tests can check that the gateway strips echoed credentials. `GET /moved/truncated` and
 * `/moved/truncated-large` declare 100 and 1,000,000 bytes, send a few and close the connection.
 */
export async function startRecordingUpstream(credentials: UpstreamCredentials): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const basic = `Basic ${Buffer.from(`${credentials.basic.user}:${credentials.basic.password}`).toString("base64")}`;
  let origin = "";

  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const url = request.url ?? "/";
      const body = Buffer.concat(chunks);
      seen.push({ method: request.method ?? "", url, headers: request.headers, body });

      const authorization = request.headers.authorization;
      const query = new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "");
      const authorised =
        authorization === `Bearer ${credentials.bearer}` ||
        authorization === basic ||
        query.getAll(credentials.query.name).includes(credentials.query.value);
      if (!authorised) {
        response.writeHead(401, { "content-type": "application/json" });
        response.end(JSON.stringify({ error: "unauthorized" }));
        return;
      }
      if (url.startsWith("/moved/truncated")) {
        // Declares more bytes than it sends, then hangs up: a response broken off by the upstream.
        const declared = url.startsWith("/moved/truncated-large") ? "1000000" : "100";
        response.writeHead(200, { "content-type": "text/plain", "content-length": declared });
        response.write("short", () => response.socket?.destroy());
        return;
      }
      if (url.startsWith("/moved/")) {
        response.writeHead(302, { location: `${origin}/admin/after-redirect` });
        response.end();
        return;
      }
      response.writeHead(200, {
        "content-type": "application/json",
        "x-upstream": "ok",
        "x-echo-authorization": authorization ?? "",
        "x-echo-upper": (authorization ?? "").toUpperCase(),
        "x-echo-base64": Buffer.from(authorization ?? "").toString("base64"),
        "x-echo-url": url,
      });
      response.end(
        JSON.stringify({
          method: request.method,
          url,
          body_bytes: body.length,
          body_sha256: createHash("sha256").update(body).digest("hex"),
        }),
      );
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: origin,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Returns the request targets in `seen` whose path starts with `prefix`. */
export function targetsUnder(seen: readonly SeenRequest[], prefix: string): string[] {
  return seen.map((request) => request.url).filter((url) => url.startsWith(prefix));
}

/**
 * Signs a DPoP proof for a resource request with jose: `typ` `dpop+jwt`, ES256, the public JWK in
 * the header, `htm`, `htu`, a fresh `jti`, the current `iat` and `ath` = base64url(SHA-256(token)).
 */
export async function signResourceProof(
  keys: CryptoKeyPair,
  method: string,
  htu: string,
  accessToken: string,
  alg = "ES256",
): Promise<string> {
  return new SignJWT({
    htm: method,
    htu,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    ath: createHash("sha256").update(accessToken).digest("base64url"),
  })
    .setProtectedHeader({ alg, typ: "dpop+jwt", jwk: await exportJWK(keys.publicKey) })
    .sign(keys.privateKey);
}

/** A gateway request as a test builds it. */
export interface ToolCall {
  method?: string;
  /** The raw request target, `/tools/<tool>/…` with an optional query, sent unchanged. */
  target: string;
  /** The access token. Without it no `Authorization` field is sent. */
  token?: string;
  /** The key that signs the DPoP proof. Without it no proof is sent. */
  proofKeys?: CryptoKeyPair;
  /** The proof's JWS algorithm, ES256 unless given (a person's key is Ed25519). */
  proofAlg?: string;
  /** The `Authorization` scheme, `DPoP` unless given. */
  scheme?: string;
  /** Further header fields, each sent as its own field even when a name repeats. */
  headers?: [string, string][];
  /** The request body. A stream is sent with chunked transfer coding. */
  body?: Buffer | Readable;
}

/** A gateway response with its body read. */
export interface ToolResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): Record<string, unknown>;
}

/**
 * Sends one request to the gateway with undici's `Client.request`, which writes the target as given.
 * The top-level `undici.request`, `fetch` and oauth4webapi all pass the URL through WHATWG `URL`
 * first, which would resolve `..` and `%2e` before the gateway saw them.
 */
export async function callTool(issuer: string, call: ToolCall): Promise<ToolResponse> {
  const method = call.method ?? "GET";
  const queryAt = call.target.indexOf("?");
  const path = queryAt === -1 ? call.target : call.target.slice(0, queryAt);
  const headers: string[] = [];
  if (call.token !== undefined) headers.push("authorization", `${call.scheme ?? "DPoP"} ${call.token}`);
  if (call.token !== undefined && call.proofKeys !== undefined) {
    headers.push(
      "dpop",
      await signResourceProof(call.proofKeys, method, `${issuer}${path}`, call.token, call.proofAlg),
    );
  }
  for (const [name, value] of call.headers ?? []) headers.push(name, value);

  const client = new Client(new URL(issuer).origin);
  try {
    const response = await client.request({
      method: method as "GET",
      path: call.target,
      headers,
      body: call.body ?? null,
    });
    const text = await response.body.text();
    return {
      status: response.statusCode,
      headers: response.headers,
      text,
      json: () => JSON.parse(text) as Record<string, unknown>,
    };
  } finally {
    await client.close();
  }
}

/**
 * Registers HTTP tool `name` with one action, `read` (`GET /repos/**`), forwarding to `upstreamUrl`
 * with the secret `gh-token` as a bearer credential, and assigned to the gateways `assigned`.
 */
export async function registerReadTool(
  admin: AdminClient,
  name: string,
  upstreamUrl: string,
  assigned: string[],
): Promise<void> {
  await admin.call("POST", "/v1/tools", {
    name,
    kind: "http",
    environment: "prod",
    actions: [{ name: "read", spec: "GET /repos/**" }],
    config: {
      upstream: upstreamUrl,
      inject: ["header:Authorization=Bearer ${secret:gh-token}"],
      gateways: assigned,
    },
  });
}
