/**
 * The `mcp_tools_call_latency` metric: how much latency the gateway adds to an MCP `tools/call`.
 *
 * One server-everything process serves Streamable HTTP on loopback. The same run calls its `echo`
 * tool directly with the SDK client (the baseline) and through a `writ server` whose MCP tool has
 * that server as its `--upstream`, with the writ client transport (task token, DPoP proof per
 * request, server nonce). Both clients run in this process, one call at a time, in alternating
 * rounds so that drift of the machine's load hits both alike.
 *
 * A third path measures the minimum that any relay built on the SDK adds. A bare relay process,
 * made of the SDK's Streamable HTTP server transport in front and the SDK client behind, passes
 * `tools/call` to the same server with no authentication, policy or audit. Its added latency is
 * reported beside the gateway's.
 *
 * Run as `node --import tsx bench/mcp-latency.ts serve-everything`, this module is instead the
 * server-everything host that the metric starts as a child process, and as `... serve-relay URL` the
 * bare relay in front of URL.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { importJWK, type CryptoKey } from "jose";
import { createMcpTransport } from "../src/client/index.js";
import { generateIdentityKey } from "../src/identity/keys.js";
import type { Metric, MetricResult } from "./lib/metric.js";
import { formatNumber } from "./lib/report.js";
import { positiveIntegerSetting } from "./lib/settings.js";
import { percentile, roundSignificant, sortAscending } from "./lib/stats.js";
import { startWritServer } from "./lib/writ-server.js";

const thisFile = fileURLToPath(import.meta.url);
const serveCommand = "serve-everything";
const relayCommand = "serve-relay";
const toolName = "bench-everything";
const environment = "bench";
/** Long enough that the task outlives any run. */
const taskTtlSeconds = 3600;
const childStartTimeoutMs = 15_000;

interface Settings {
  calls: number;
  warmupCalls: number;
  rounds: number;
  cpuProfileDir: string | undefined;
}

function readSettings(): Settings {
  const settings: Settings = {
    calls: positiveIntegerSetting("WRIT_BENCH_MCP_CALLS", 500),
    warmupCalls: positiveIntegerSetting("WRIT_BENCH_MCP_WARMUP_CALLS", 100),
    rounds: positiveIntegerSetting("WRIT_BENCH_MCP_ROUNDS", 5),
    cpuProfileDir: process.env.WRIT_BENCH_CPU_PROF || undefined,
  };
  if (settings.calls % settings.rounds !== 0) {
    throw new Error("WRIT_BENCH_MCP_CALLS must be a multiple of WRIT_BENCH_MCP_ROUNDS");
  }
  return settings;
}

/** Connects a new MCP server, such as one SDK `Server`, to a session's transport. */
type ConnectServer = (transport: StreamableHTTPServerTransport) => Promise<void>;

/**
 * Serves MCP over Streamable HTTP on 127.0.0.1, one session per `initialize`, each with a server
 * that `connectServer` connects, and prints the listening port on standard output.
 */
async function serveSessions(label: string, connectServer: ConnectServer): Promise<void> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      void (async () => {
        const body =
          chunks.length === 0 ? undefined : (JSON.parse(Buffer.concat(chunks).toString()) as unknown);
        const sessionId = request.headers["mcp-session-id"];
        let transport = typeof sessionId === "string" ? sessions.get(sessionId) : undefined;
        if (transport === undefined) {
          const created: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
            sessionIdGenerator: () => randomUUID(),
            onsessioninitialized: (id): void => {
              sessions.set(id, created);
            },
          });
          await connectServer(created);
          transport = created;
        }
        await transport.handleRequest(request, response, body);
      })().catch((error: unknown) => {
        console.error(`${label}: request failed: ${(error as Error).message}`);
        if (!response.headersSent) response.writeHead(500);
        response.end();
      });
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  console.log(String((server.address() as AddressInfo).port));
  process.on("SIGTERM", () => process.exit(0));
}

/**
 * Serves server-everything's MCP server on loopback. The package's own `streamableHttp` entry
 * listens on every interface, which a benchmark has no need for.
 */
async function serveEverything(): Promise<void> {
  const everything = (await import(
    "@modelcontextprotocol/server-everything/dist/server/index.js" as string
  )) as { createServer(): { server: { connect(transport: unknown): Promise<void> } } };
  await serveSessions("server-everything host", (transport) =>
    everything.createServer().server.connect(transport),
  );
}

/**
 * Serves a bare MCP relay on loopback. Each session's SDK server forwards `tools/list` and
 * `tools/call` to `upstreamUrl` through one SDK client and returns the results.
 */
async function serveRelay(upstreamUrl: string): Promise<void> {
  const upstream = new Client({ name: "bench-relay", version: "1" });
  await upstream.connect(new StreamableHTTPClientTransport(new URL(upstreamUrl)));
  await serveSessions("bare relay", async (transport) => {
    const relay = new Server({ name: "bench-relay", version: "1" }, { capabilities: { tools: {} } });
    relay.setRequestHandler(ListToolsRequestSchema, () => upstream.listTools());
    relay.setRequestHandler(CallToolRequestSchema, (call) => upstream.callTool(call.params));
    await relay.connect(transport);
  });
}

/** Starts `serveEverything` in a child process and resolves with it and its MCP endpoint. */
async function startEverything(): Promise<{ child: ChildProcess; url: string }> {
  return startChild([serveCommand], "server-everything host");
}

/** Starts `serveRelay` in front of `upstreamUrl` in a child process. */
async function startRelay(upstreamUrl: string): Promise<{ child: ChildProcess; url: string }> {
  return startChild([relayCommand, upstreamUrl], "bare relay");
}

/** Starts this module with `args` and resolves with the child and the MCP endpoint it printed. */
async function startChild(args: string[], label: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", thisFile, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const timer = setTimeout(() => child.kill("SIGKILL"), childStartTimeoutMs);
  try {
    for await (const line of lines) {
      if (/^\d+$/.test(line)) return { child, url: `http://127.0.0.1:${line}/mcp` };
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`the ${label} exited with code ${child.exitCode} before it listened`);
}

/** Calls `echo` `count` times, one after another, and returns each call's latency in milliseconds. */
async function timeEchoCalls(client: Client, count: number, into: number[]): Promise<void> {
  for (let index = 0; index < count; index += 1) {
    const start = performance.now();
    await client.callTool({ name: "echo", arguments: { message: `call ${index}` } });
    into.push(performance.now() - start);
  }
}

function latencyFigures(latencies: number[]): { p50: number; p90: number; p99: number } {
  const sorted = sortAscending(latencies);
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99) };
}

async function measure(): Promise<MetricResult> {
  const settings = readSettings();
  const everything = await startEverything();
  const relay = await startRelay(everything.url).catch((error: unknown) => {
    everything.child.kill("SIGTERM");
    throw error;
  });
  const writ = await startWritServer(
    settings.cpuProfileDir === undefined ? {} : { cpuProfileDir: settings.cpuProfileDir },
  );
  const clients: Client[] = [];
  try {
    const clientKey = await generateIdentityKey("Ed25519");
    const agent = await writ.admin.call<{ spiffe_id: string }>("POST", "/v1/agents", {
      name: "bench-mcp-agent",
      owner: "bench",
      environment,
      public_jwk: clientKey.publicJwk,
    });
    await writ.admin.call("POST", "/v1/tools", {
      name: toolName,
      kind: "mcp",
      environment,
      actions: [{ name: "echo" }],
      config: { upstream: everything.url },
    });
    const task = await writ.admin.call<{ id: string }>("POST", "/v1/tasks", {
      agent: "bench-mcp-agent",
      actions: [`${toolName}:echo`],
      intent: "measure MCP call latency",
      environment,
      ttl_seconds: taskTtlSeconds,
    });

    const direct = new Client({ name: "bench-direct", version: "1" });
    clients.push(direct);
    await direct.connect(new StreamableHTTPClientTransport(new URL(everything.url)));
    const relayed = new Client({ name: "bench-relayed", version: "1" });
    clients.push(relayed);
    await relayed.connect(new StreamableHTTPClientTransport(new URL(relay.url)));
    const gateway = new Client({ name: "bench-gateway", version: "1" });
    clients.push(gateway);
    await gateway.connect(
      createMcpTransport({
        url: `${writ.issuer}/mcp/${toolName}`,
        issuer: writ.issuer,
        clientId: agent.spiffe_id,
        privateKey: (await importJWK(clientKey.privateJwk, "Ed25519")) as CryptoKey,
        taskId: task.id,
        allowInsecureHttp: true,
      }),
    );

    await timeEchoCalls(direct, settings.warmupCalls, []);
    await timeEchoCalls(relayed, settings.warmupCalls, []);
    await timeEchoCalls(gateway, settings.warmupCalls, []);
    const directLatencies: number[] = [];
    const relayLatencies: number[] = [];
    const gatewayLatencies: number[] = [];
    const perRound = settings.calls / settings.rounds;
    for (let round = 0; round < settings.rounds; round += 1) {
      await timeEchoCalls(direct, perRound, directLatencies);
      await timeEchoCalls(relayed, perRound, relayLatencies);
      await timeEchoCalls(gateway, perRound, gatewayLatencies);
    }
    return result(
      settings,
      latencyFigures(directLatencies),
      latencyFigures(relayLatencies),
      latencyFigures(gatewayLatencies),
    );
  } finally {
    for (const client of clients) await client.close().catch(() => undefined);
    await writ.stop();
    relay.child.kill("SIGTERM");
    everything.child.kill("SIGTERM");
  }
}

function result(
  settings: Settings,
  direct: ReturnType<typeof latencyFigures>,
  relay: ReturnType<typeof latencyFigures>,
  gateway: ReturnType<typeof latencyFigures>,
): MetricResult {
  const addedP50 = roundSignificant(gateway.p50 - direct.p50);
  const addedP99 = roundSignificant(gateway.p99 - direct.p99);
  const relayAddedP50 = roundSignificant(relay.p50 - direct.p50);
  const ms = (value: number): string => `${formatNumber(value, 3)} ms`;
  return {
    name: "mcp_tools_call_latency",
    value: addedP50,
    unit: "ms",
    baseline: {
      name: "p50 of the same echo call sent straight to the same server-everything process (SDK client, Streamable HTTP)",
      value: roundSignificant(direct.p50),
      unit: "ms",
    },
    ratio: roundSignificant(addedP50 / direct.p50),
    target: "added p50 < 1 ms on 2 cores",
    notes:
      `added latency of a tools/call (server-everything echo) through the gateway: p50 ${ms(addedP50)}, ` +
      `p99 ${ms(addedP99)}. ${settings.calls} sequential calls each way after ${settings.warmupCalls} ` +
      `warm-up calls, in ${settings.rounds} alternating rounds. Baseline: the SDK client calls one ` +
      "server-everything process over Streamable HTTP on loopback; the gateway path is the writ client " +
      "transport (task token, a DPoP proof signed per request) to `writ server`, which verifies the proof, " +
      "decides the call with Cedar and relays it to that same process as its Streamable HTTP upstream. " +
      `The ratio is the added p50 over the direct p50. A bare relay built on the SDK alone (its ` +
      `Streamable HTTP server transport in front, its client behind, nothing else) adds p50 ` +
      `${ms(relayAddedP50)} on the same calls.`,
    errors: 0,
    details: {
      calls: settings.calls,
      warmup_calls: settings.warmupCalls,
      rounds: settings.rounds,
      direct_p50_ms: roundSignificant(direct.p50),
      direct_p90_ms: roundSignificant(direct.p90),
      direct_p99_ms: roundSignificant(direct.p99),
      gateway_p50_ms: roundSignificant(gateway.p50),
      gateway_p90_ms: roundSignificant(gateway.p90),
      gateway_p99_ms: roundSignificant(gateway.p99),
      added_p50_ms: addedP50,
      added_p99_ms: addedP99,
      bare_relay_p50_ms: roundSignificant(relay.p50),
      bare_relay_p99_ms: roundSignificant(relay.p99),
      bare_relay_added_p50_ms: relayAddedP50,
      bare_relay_added_p99_ms: roundSignificant(relay.p99 - direct.p99),
    },
  };
}

export const mcpToolsCallLatency: Metric = {
  name: "mcp_tools_call_latency",
  summary: "latency a tools/call gains through the MCP gateway (p50, p99) against a direct call",
  run: measure,
};

if (process.argv[1] === thisFile && process.argv[2] === serveCommand) await serveEverything();
if (process.argv[1] === thisFile && process.argv[2] === relayCommand) await serveRelay(process.argv[3] ?? "");
