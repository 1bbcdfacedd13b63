import type { IncomingHttpHeaders } from "node:http";
import { Transform, type Readable } from "node:stream";
import { Agent, request } from "undici";
import { WritError, isWritError } from "../../errors/writ-error.js";

/** Hop-by-hop fields (RFC 9110 section 7.6.1), never forwarded in either direction. */
const hopByHop = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Request fields the agent may not pass upstream: its own credentials, forwarding claims that a
 * client could forge, and method overrides that would change what was authorised.
 */
const strippedFromAgent = new Set([
  "authorization",
  "dpop",
  "host",
  "forwarded",
  "x-real-ip",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "cookie",
]);

export interface UpstreamRequest {
  /** The full upstream URL: upstream base, normalised path and the filtered query. */
  url: string;
  method: string;
  headers: IncomingHttpHeaders;
  /** Header fields the injection rules set, lowercased, with their values. */
  injected: Record<string, string>;
  body: Readable | null;
  timeoutMs: number;
  maxBodyBytes: number;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[]>;
  /** Body: a Buffer for a small body of declared length, else a stream. */
  body: Readable | Buffer;
}

/**
 * Largest response body, in bytes, that is read whole when its `Content-Length` is declared. Such a
 * body is sent in one write with the response head, which avoids the stream's per-chunk work.
 */
const wholeBodyMaxBytes = 64 * 1024;

/** Forwards requests upstream with undici: keep-alive connections, no redirects followed. */
export class Forwarder {
  private readonly agent = new Agent({ keepAliveTimeout: 10_000, connections: 128 });

  async forward(upstream: UpstreamRequest, secretValues: readonly string[]): Promise<UpstreamResponse> {
    const headers = upstreamHeaders(upstream.headers, upstream.injected);
    const declaredLength = Number(upstream.headers["content-length"] ?? 0);
    if (declaredLength > upstream.maxBodyBytes) {
      throw new WritError("invalid_request", `request body is larger than ${upstream.maxBodyBytes} bytes`);
    }
    let response;
    try {
      response = await request(upstream.url, {
        method: upstream.method as "GET",
        headers,
        body: upstream.body === null ? null : upstream.body.pipe(limitBytes(upstream.maxBodyBytes)),
        dispatcher: this.agent,
        headersTimeout: upstream.timeoutMs,
        bodyTimeout: upstream.timeoutMs,
      });
    } catch (error) {
      // A body over the limit fails the request stream with a WritError: a client error, not an upstream one.
      if (isWritError(error)) throw error;
      throw upstreamFailure(error);
    }
    const passed = responseHeaders(response.headers, secretValues);
    const declared = Number(response.headers["content-length"] ?? Number.NaN);
    if (Number.isInteger(declared) && declared <= Math.min(wholeBodyMaxBytes, upstream.maxBodyBytes)) {
      // undici reads exactly the declared length, and fails the read when the connection ends first.
      try {
        return {
          status: response.statusCode,
          headers: passed,
          body: Buffer.from(await response.body.arrayBuffer()),
        };
      } catch (error) {
        throw upstreamFailure(error);
      }
    }
    return {
      status: response.statusCode,
      headers: passed,
      body: response.body.pipe(limitBytes(upstream.maxBodyBytes)),
    };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Builds the error for an upstream that failed, timed out or closed its response early. */
function upstreamFailure(error: unknown): WritError {
  const code = (error as { code?: string }).code;
  const timedOut = code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT";
  return new WritError(
    "temporarily_unavailable",
    timedOut ? "the upstream timed out" : "the upstream is unreachable",
    {
      detail: `${code ?? "error"}: ${(error as Error).message}`,
      cause: error,
    },
  );
}

/** Builds the upstream request's fields: the agent's, less what must not pass, plus the injected ones. */
export function upstreamHeaders(
  incoming: IncomingHttpHeaders,
  injected: Record<string, string>,
): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (hopByHop.has(lower) || strippedFromAgent.has(lower) || named.has(lower)) continue;
    if (lower.startsWith("x-forwarded-") || lower in injected) continue;
    headers[lower] = value;
  }
  return { ...headers, ...injected };
}

/** Filters the upstream's response fields: hop-by-hop ones, and any that echo an injected secret. */
export function responseHeaders(
  incoming: IncomingHttpHeaders,
  secretValues: readonly string[],
): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (hopByHop.has(lower) || named.has(lower)) continue;
    const values = Array.isArray(value) ? value : [value];
    if (values.some((text) => secretValues.some((secret) => secret.length > 0 && text.includes(secret))))
      continue;
    headers[lower] = value;
  }
  return headers;
}

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(",") : (value ?? "");
  return new Set(
    text
      .split(",")
      .map((token) => token.trim().toLowerCase())
      .filter((token) => token !== ""),
  );
}

/** A pass-through stream that fails once more than `maxBytes` have gone through it. */
function limitBytes(maxBytes: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > maxBytes)
        callback(new WritError("invalid_request", `body is larger than ${maxBytes} bytes`));
      else callback(null, chunk);
    },
  });
}
