/**
 * The servers around the gateway benchmarks, each run as its own process so that it does not share
 * a JavaScript thread with the load generator or with writ:
 *
 * - `node --import tsx bench/lib/gateway-peers.ts upstream` responds to every request with HTTP 200 and
 *   a small JSON body.
 * - `node --import tsx bench/lib/gateway-peers.ts proxy URL` forwards every request to URL with
 *   undici's `request` and relays the response: the bare proxy hop that the gateway is compared with.
 * - `node --import tsx bench/lib/gateway-peers.ts floor URL` forwards to URL after the steps every
 *   gateway must take per request (`enforcement-floor.ts`): what any gateway doing them could reach.
 *
 * Each listens on a free port of 127.0.0.1 and print that port on standard output.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { enforcementFloor } from "./enforcement-floor.js";

const thisFile = fileURLToPath(import.meta.url);
const startTimeoutMs = 15_000;
const upstreamBody = JSON.stringify({ id: 1, name: "item" });

/** A peer process and the origin it listens on. */
export interface PeerProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:PORT`, without a trailing slash. */
  origin: string;
  /** Stops the process with SIGTERM and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts this module as a child process in `mode` and resolves once it listens. */
export async function startPeer(
  mode: "upstream" | "proxy" | "floor",
  ...args: string[]
): Promise<PeerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", thisFile, mode, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    await exited;
  };
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const timer = setTimeout(() => child.kill("SIGKILL"), startTimeoutMs);
  try {
    for await (const line of lines) {
      if (/^\d+$/.test(line)) return { child, origin: `http://127.0.0.1:${line}`, stop };
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`the ${mode} process exited with code ${child.exitCode} before it listened`);
}

function answerUpstream(request: IncomingMessage, response: ServerResponse): void {
  request.resume();
  request.on("end", () => {
    response.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(upstreamBody),
    });
    response.end(upstreamBody);
  });
}

/** Returns a handler that forwards each request to `target` and relays status, headers and body. */
function forwardTo(target: string): (request: IncomingMessage, response: ServerResponse) => void {
  // Keep-alive connections to the upstream, as the gateway keeps its own.
  const dispatcher = new Agent({ connections: 128 });
  return (incoming, outgoing) => {
    const headers = { ...incoming.headers };
    delete headers.host;
    delete headers.connection;
    request(`${target}${incoming.url ?? "/"}`, {
      method: incoming.method as "GET",
      headers,
      body: incoming.method === "GET" || incoming.method === "HEAD" ? null : incoming,
      dispatcher,
    })
      .then(async (upstream) => {
        const body = Buffer.from(await upstream.body.arrayBuffer());
        const relayed: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(upstream.headers)) {
          if (value !== undefined && name !== "connection" && name !== "keep-alive") relayed[name] = value;
        }
        outgoing.writeHead(upstream.statusCode, relayed);
        outgoing.end(body);
      })
      .catch((error: unknown) => {
        console.error(`bench proxy: forwarding ${incoming.url ?? "/"} failed: ${(error as Error).message}`);
        if (!outgoing.headersSent) outgoing.writeHead(502);
        outgoing.end();
      });
  };
}

async function serve(mode: string, target: string | undefined): Promise<void> {
  let handler: (request: IncomingMessage, response: ServerResponse) => void;
  if (mode === "upstream") handler = answerUpstream;
  else if (mode === "proxy" && target !== undefined) handler = forwardTo(target);
  else if (mode === "floor" && target !== undefined) handler = enforcementFloor(target);
  else throw new Error(`usage: gateway-peers.ts upstream | proxy URL | floor URL (got "${mode}")`);

  const server = createServer({ keepAliveTimeout: 60_000 }, handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  console.log(String((server.address() as AddressInfo).port));
  process.on("SIGTERM", () => process.exit(0));
}

if (process.argv[1] === thisFile) await serve(process.argv[2] ?? "", process.argv[3]);
