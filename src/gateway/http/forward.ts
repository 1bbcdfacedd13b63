import type { IncomingHttpHeaders } from "node:http";
import { pipeline, Transform, type Readable } from "node:stream";
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
 * Request fields the agent may not pass upstream. These are its own credentials, and forwarding and
 * client-address claims that a client could forge. Some upstream frameworks honour method and path
 * overrides, which would change what was authorised. The decision id is the gateway's to set.
 * `expect` is handled by the gateway's HTTP server, which sends `100 Continue` itself, and undici
 * rejects a request that carries it.
 */
const strippedFromAgent = new Set([
  "authorization",
  "dpop",
  "host",
  "cookie",
  "expect",
  "forwarded",
  "x-real-ip",
  "true-client-ip",
  "client-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  "cf-connecting-ip",
  "fastly-client-ip",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-method",
  "x-original-url",
  "x-original-uri",
  "x-rewrite-url",
  "x-override-url",
  "x-original-host",
  "x-host",
  "writ-decision-id",
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

  async forward(upstream: UpstreamRequest, echoForms: readonly string[]): Promise<UpstreamResponse> {
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
        body: upstream.body === null ? null : limited(upstream.body, upstream.maxBodyBytes),
        dispatcher: this.agent,
        headersTimeout: upstream.timeoutMs,
        bodyTimeout: upstream.timeoutMs,
      });
    } catch (error) {
      // A body over the limit fails the request stream with a WritError: a client error, not an upstream one.
      if (isWritError(error)) throw error;
      throw upstreamFailure(error);
    }
    const passed = responseHeaders(response.headers, echoForms);
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
      body: limited(response.body, upstream.maxBodyBytes),
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

/**
 * Filters the upstream's response fields: hop-by-hop ones, and any that echo an injected secret.
 * `echoForms` are the secrets' wire forms, lowercased and not empty (see `Injection.echoForms`).
 */
export function responseHeaders(
  incoming: IncomingHttpHeaders,
  echoForms: readonly string[],
): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (hopByHop.has(lower) || named.has(lower)) continue;
    // Compared without case, since an upstream may echo a value in other case. Base64 forms then
    // match more than they should, which removes a header too many rather than one too few.
    const values = (Array.isArray(value) ? value : [value]).map((text) => text.toLowerCase());
    if (values.some((text) => echoForms.some((form) => text.includes(form)))) continue;
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

/**
 * Returns `source` through a stream that fails once more than `maxBytes` have gone through it. An
 * error of `source` (the peer closed early, a body timeout) fails the returned stream too. Its reader
 * then sees that the body was cut short, instead of waiting for an end that never comes.
 */
function limited(source: Readable, maxBytes: number): Readable {
  return pipeline(source, limitBytes(maxBytes), () => {
    // Errors reach the returned stream's readers; pipeline has already destroyed both streams.
  });
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
