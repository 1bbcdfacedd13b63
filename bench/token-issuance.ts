import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { decodeJwt, decodeProtectedHeader, type JWTHeaderParameters } from "jose";
import { generateIdentityKey } from "../src/identity/keys.js";
import type { AdminClient } from "../src/cli/admin-client.js";
import type { ClientJob, ClientReport, ClientStart } from "./token-issuance-client.js";
import { mainThreadCpuSeconds, processCpuSeconds } from "./lib/cpu.js";
import {
  measureJoseSigning,
  measureJoseSigningOnOneCore,
  type PinnedSigningBaseline,
} from "./lib/jose-baseline.js";
import type { Metric, MetricResult } from "./lib/metric.js";
import { formatNumber } from "./lib/report.js";
import { nonNegativeIntegerSetting, positiveIntegerSetting, positiveNumberSetting } from "./lib/settings.js";
import { percentile, roundSignificant, sortAscending } from "./lib/stats.js";
import { TokenRequestBuilder, type AgentCredentials } from "./lib/token-request.js";
import { startWritServer } from "./lib/writ-server.js";

const clientEntry = fileURLToPath(new URL("./token-issuance-client.ts", import.meta.url));

const toolName = "bench-tool";
const environment = "bench";
/** Long enough that no task ends during a run, short enough to be plainly a test value. */
const taskTtlSeconds = 3600;
/** Time for the load generators to start before the warm-up begins. */
const startSlackMs = 1000;

interface Settings {
  durationSeconds: number;
  warmupSeconds: number;
  concurrency: number;
  agents: number;
  clientProcesses: number;
  /** Requests the load generators sign before the load starts, shared between them. */
  stock: number;
  cpuProfileDir: string | undefined;
}

function readSettings(): Settings {
  const settings: Settings = {
    durationSeconds: positiveNumberSetting("WRIT_BENCH_DURATION_S", 10),
    warmupSeconds: positiveNumberSetting("WRIT_BENCH_WARMUP_S", 3),
    concurrency: positiveIntegerSetting("WRIT_BENCH_CONCURRENCY", 64),
    agents: positiveIntegerSetting("WRIT_BENCH_AGENTS", 20),
    clientProcesses: positiveIntegerSetting("WRIT_BENCH_CLIENT_PROCESSES", 1),
    stock: nonNegativeIntegerSetting("WRIT_BENCH_PRESIGNED", 30_000),
    cpuProfileDir: process.env.WRIT_BENCH_CPU_PROF || undefined,
  };
  if (settings.clientProcesses > settings.concurrency) {
    throw new Error(
      `invalid WRIT_BENCH_CLIENT_PROCESSES=${settings.clientProcesses}: it must not exceed ` +
        `WRIT_BENCH_CONCURRENCY, which is ${settings.concurrency}`,
    );
  }
  return settings;
}

/** Registers one tool and `count` agents, each with its own keys and one active task on the tool. */
async function registerAgents(
  admin: AdminClient,
  issuer: string,
  count: number,
): Promise<AgentCredentials[]> {
  await admin.call("POST", "/v1/tools", {
    name: toolName,
    kind: "http",
    environment,
    actions: [{ name: "read", spec: "GET /x/**" }],
  });
  const agents: AgentCredentials[] = [];
  for (let index = 0; index < count; index += 1) {
    const name = `bench-agent-${index}`;
    const clientKey = await generateIdentityKey("Ed25519");
    const dpopKey = await generateIdentityKey("Ed25519");
    const agent = await admin.call<{ spiffe_id: string }>("POST", "/v1/agents", {
      name,
      owner: "bench",
      environment,
      public_jwk: clientKey.publicJwk,
    });
    const task = await admin.call<{ id: string }>("POST", "/v1/tasks", {
      agent: name,
      actions: [`${toolName}:read`],
      intent: "measure token issuance",
      environment,
      ttl_seconds: taskTtlSeconds,
    });
    agents.push({
      clientId: agent.spiffe_id,
      clientJwk: clientKey.privateJwk,
      dpopJwk: dpopKey.privateJwk,
      taskId: task.id,
      resource: `${issuer}/tools/${toolName}`,
    });
  }
  return agents;
}

/** Requests one token, checks that it was issued, and returns its protected header and claims. */
async function requestSampleToken(
  issuer: string,
  agent: AgentCredentials,
): Promise<{ header: JWTHeaderParameters; payload: Record<string, unknown> }> {
  const message = new TokenRequestBuilder(issuer, agent).build();
  const response = await fetch(`${issuer}/oauth/token`, {
    method: "POST",
    headers: message.headers,
    body: message.body,
  });
  const text = await response.text();
  if (response.status !== 200) {
    throw new Error(`the sample token request failed with HTTP ${response.status}: ${text}`);
  }
  const token = (JSON.parse(text) as { access_token: string }).access_token;
  return { header: decodeProtectedHeader(token) as JWTHeaderParameters, payload: decodeJwt(token) };
}

/**
 * Starts the load-generator processes, splitting the concurrency and the stock between them. Once all
 * have signed their stock, it fixes the measured window, calls `onWindow` with it and starts the load.
 */
async function runClients(
  issuer: string,
  agents: AgentCredentials[],
  settings: Settings,
  onWindow: (window: ClientStart) => void,
): Promise<ClientReport[]> {
  const share = (total: number, index: number): number =>
    Math.floor(total / settings.clientProcesses) + (index < total % settings.clientProcesses ? 1 : 0);
  const children: ChildProcess[] = [];
  const readies: Promise<void>[] = [];
  const reports: Promise<ClientReport>[] = [];
  for (let index = 0; index < settings.clientProcesses; index += 1) {
    const child = fork(clientEntry, [], { serialization: "advanced" });
    children.push(child);
    const exited = new Promise<never>((_resolve, reject) => {
      child.once("exit", (code) =>
        reject(new Error(`token_issuance client ${index} exited with code ${code} before it reported`)),
      );
    });
    // Both are awaited below, after every child has started; until then a failure would go unhandled.
    exited.catch(() => undefined);
    let ready: () => void = () => undefined;
    const readied = new Promise<void>((resolve) => (ready = resolve));
    const reported = new Promise<ClientReport>((resolve) => {
      child.on("message", (message) => {
        if (message === "ready") ready();
        else resolve(message as ClientReport);
      });
    });
    readies.push(Promise.race([readied, exited]));
    reports.push(Promise.race([reported, exited]));
    const job: ClientJob = {
      issuer,
      agents,
      concurrency: share(settings.concurrency, index),
      index,
      stock: share(settings.stock, index),
    };
    child.send(job);
  }
  try {
    await Promise.all(readies);
    const measureFromMs = Date.now() + startSlackMs + settings.warmupSeconds * 1000;
    const window: ClientStart = {
      measureFromMs,
      measureUntilMs: measureFromMs + settings.durationSeconds * 1000,
    };
    onWindow(window);
    for (const child of children) child.send(window);
    return await Promise.all(reports);
  } finally {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = once(child, "exit");
          child.kill("SIGTERM");
          await exited;
        }
      }),
    );
  }
}

/** CPU seconds the server used inside the measured window. Each is NaN where /proc is missing. */
interface ServerCpu {
  /** All threads: JavaScript, libuv's thread pool (WebCrypto, file system), V8's helpers. */
  process: number;
  /** The JavaScript thread alone, whose saturation caps the server's throughput. */
  mainThread: number;
}

/** Samples the CPU time of process `pid` at the two given epoch milliseconds. */
function watchServerCpu(
  pid: number,
  window: { measureFromMs: number; measureUntilMs: number },
): { result: ServerCpu; cancel(): void } {
  const result: ServerCpu = { process: Number.NaN, mainThread: Number.NaN };
  let atStart: { process?: number; mainThread?: number } = {};
  const startTimer = setTimeout(() => {
    atStart = { process: processCpuSeconds(pid), mainThread: mainThreadCpuSeconds(pid) };
  }, window.measureFromMs - Date.now());
  const endTimer = setTimeout(() => {
    result.process = (processCpuSeconds(pid) ?? Number.NaN) - (atStart.process ?? Number.NaN);
    result.mainThread = (mainThreadCpuSeconds(pid) ?? Number.NaN) - (atStart.mainThread ?? Number.NaN);
  }, window.measureUntilMs - Date.now());
  return {
    result,
    cancel() {
      clearTimeout(startTimer);
      clearTimeout(endTimer);
    },
  };
}

async function measureTokenIssuance(): Promise<MetricResult> {
  const settings = readSettings();
  const server = await startWritServer(
    settings.cpuProfileDir === undefined ? {} : { cpuProfileDir: settings.cpuProfileDir },
  );
  let reports: ClientReport[];
  let serverCpu: ServerCpu;
  let sample: Awaited<ReturnType<typeof requestSampleToken>>;
  try {
    const agents = await registerAgents(server.admin, server.issuer, settings.agents);
    sample = await requestSampleToken(server.issuer, agents[0] as AgentCredentials);

    let cpuWatch: ReturnType<typeof watchServerCpu> | undefined;
    try {
      reports = await runClients(server.issuer, agents, settings, (window) => {
        cpuWatch = watchServerCpu(server.pid, window);
      });
    } finally {
      cpuWatch?.cancel();
    }
    serverCpu = (cpuWatch as ReturnType<typeof watchServerCpu>).result;
  } finally {
    await server.stop();
  }

  // The baselines run after the server stopped, so that neither competes with it for the CPU. The
  // ratio uses one core's signing rate; the rate on every core is reported beside it.
  const baselineOptions = {
    header: sample.header,
    payload: sample.payload,
    concurrency: settings.concurrency,
    warmupSeconds: 1,
    durationSeconds: settings.durationSeconds,
  };
  const baseline = await measureJoseSigningOnOneCore(baselineOptions);
  const everyCorePerSecond = await measureJoseSigning(baselineOptions);

  return summarise(settings, reports, serverCpu, baseline, everyCorePerSecond, sample.header.alg);
}

function summarise(
  settings: Settings,
  reports: ClientReport[],
  serverCpu: ServerCpu,
  baseline: PinnedSigningBaseline,
  everyCorePerSecond: number,
  algorithm: string,
): MetricResult {
  const baselinePerSecond = baseline.perSecond;
  const completed = reports.reduce((sum, report) => sum + report.completed, 0);
  const errors = reports.reduce((sum, report) => sum + report.errors, 0);
  const clientCpuSeconds = reports.reduce((sum, report) => sum + report.cpuSeconds, 0);
  const signedInLoop = reports.reduce((sum, report) => sum + report.signedInLoop, 0);
  const latencies = sortAscending(reports.flatMap((report) => report.latenciesMs));
  const perSecond = completed / settings.durationSeconds;

  const details: Record<string, number | string> = {
    issued: completed,
    errors,
    duration_s: settings.durationSeconds,
    warmup_s: settings.warmupSeconds,
    concurrency: settings.concurrency,
    agents: settings.agents,
    client_processes: settings.clientProcesses,
    requests_presigned: settings.stock,
    requests_signed_in_loop: signedInLoop,
    latency_p50_ms: roundSignificant(percentile(latencies, 50)),
    latency_p90_ms: roundSignificant(percentile(latencies, 90)),
    latency_p99_ms: roundSignificant(percentile(latencies, 99)),
    // CPU use in percent of one core; the machine's whole capacity is 100 times its core count.
    server_cpu_percent: roundSignificant((serverCpu.process / settings.durationSeconds) * 100),
    server_main_thread_cpu_percent: roundSignificant((serverCpu.mainThread / settings.durationSeconds) * 100),
    client_cpu_percent: roundSignificant((clientCpuSeconds / settings.durationSeconds) * 100),
    server_cpu_us_per_token: roundSignificant((serverCpu.process / completed) * 1e6),
    server_main_thread_cpu_us_per_token: roundSignificant((serverCpu.mainThread / completed) * 1e6),
    client_cpu_us_per_token: roundSignificant((clientCpuSeconds / completed) * 1e6),
    baseline_pinned_to_one_core: baseline.pinned ? "yes" : "no (taskset missing)",
    baseline_every_core_per_s: roundSignificant(everyCorePerSecond, 4),
    ratio_to_every_core_baseline: roundSignificant(perSecond / everyCorePerSecond),
  };
  const errorReasons = reports
    .flatMap((report) => Object.entries(report.errorSamples))
    .map(([reason, count]) => `${count} x ${reason}`);
  const errorText = errors === 0 ? "0 errors" : `${errors} errors: ${errorReasons.join("; ")}`;
  const notes =
    `${formatNumber(completed)} tokens in ${settings.durationSeconds} s after ${settings.warmupSeconds} s ` +
    `of warm-up, ${settings.concurrency} requests in flight over ${settings.agents} agents from ` +
    `${settings.clientProcesses} client process(es), ${formatNumber(settings.stock)} requests signed ` +
    `before the load and ${formatNumber(signedInLoop)} during it; ${errorText}; latency p50 ${details.latency_p50_ms} ms, ` +
    `p99 ${details.latency_p99_ms} ms; server CPU ${details.server_cpu_percent}% of one core ` +
    `(main thread ${details.server_main_thread_cpu_percent}%), clients ${details.client_cpu_percent}%. ` +
    `jose on every core signed ${formatNumber(details.baseline_every_core_per_s as number)}/s ` +
    `(ratio ${details.ratio_to_every_core_baseline}).`;

  return {
    name: tokenIssuance.name,
    value: roundSignificant(perSecond, 4),
    unit: "tokens/s",
    baseline: {
      name:
        `jose SignJWT, ${algorithm} key, claims of a real writ token, one process ` +
        `${baseline.pinned ? "held to one core" : "on every core (taskset missing)"}, ${settings.concurrency} in flight`,
      value: roundSignificant(baselinePerSecond, 4),
      unit: "tokens/s",
    },
    ratio: roundSignificant(perSecond / baselinePerSecond),
    target: "≥ 1,500/s on 2 cores and ratio ≥ 0.1",
    notes,
    errors,
    details,
  };
}

/**
 * Token issuances per second by `writ server` running as its own process on loopback. Each request
 * carries a fresh client assertion and DPoP proof signed by separate load-generator processes.
 */
export const tokenIssuance: Metric = {
  name: "token_issuance",
  summary: "tokens issued per second by a writ server process, against jose signing alone",
  run: measureTokenIssuance,
};
