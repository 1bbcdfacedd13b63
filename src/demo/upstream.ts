import { randomBytes } from "node:crypto";
import { createServer, type ServerResponse } from "node:http";

/** The sample issue tracker API of the demo, with what it saw of each request. */
export interface SampleApi {
  url: string;
  /** The credential the API demands as `Authorization: Bearer`; the gateway injects it. */
  credential: string;
  /** Number of requests that reached the API. */
  requests(): number;
  /** Returns whether every request carried the API's own credential and no agent token or proof. */
  sawOnlyItsCredential(): boolean;
  close(): Promise<void>;
}

const issues: Record<string, { title: string; state: string }> = {
  "41": { title: "login page returns 500 after deploy", state: "open" },
  "42": { title: "nightly export misses the last hour", state: "open" },
  "43": { title: "typo in the billing e-mail", state: "closed" },
};

/**
 * Starts a small issue tracker on a free loopback port. It responds only to requests that carry its
 * own credential, a fresh random value for each run, and records the credentials it was sent.
 */
export async function startSampleApi(): Promise<SampleApi> {
  const credential = randomBytes(24).toString("base64url");
  const seen: { authorization: string | undefined; dpop: boolean }[] = [];
  const server = createServer((request, response) => {
    seen.push({ authorization: request.headers.authorization, dpop: request.headers.dpop !== undefined });
    request.resume();
    if (request.headers.authorization !== `Bearer ${credential}`) {
      response.writeHead(401, { "content-type": "application/json" }).end('{"error":"unauthorized"}');
      return;
    }
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const issue = /^\/issues\/(\d+)(\/comments)?$/.exec(path);
    if (request.method === "GET" && path === "/issues") {
      return json(
        response,
        200,
        Object.entries(issues).map(([id, entry]) => ({ id, ...entry })),
      );
    }
    if (request.method === "GET" && issue !== null && issue[2] === undefined && issues[issue[1] as string]) {
      return json(response, 200, { id: issue[1], ...issues[issue[1] as string] });
    }
    if (request.method === "POST" && issue !== null && issue[2] !== undefined) {
      return json(response, 201, { issue: issue[1], comment: "recorded" });
    }
    return json(response, 404, { error: "not found" });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    credential,
    requests: () => seen.length,
    sawOnlyItsCredential: () =>
      seen.length > 0 && seen.every((entry) => entry.authorization === `Bearer ${credential}` && !entry.dpop),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}
