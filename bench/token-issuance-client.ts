/**
 * A load-generator process for the token_issuance benchmark, started by bench/token-issuance.ts with
 * `fork`. It receives one `ClientJob` over IPC, runs it, sends back one `ClientReport` and exits.
 */
import { Pool } from "undici";
import { runClosedLoop, type Outcome } from "./lib/closed-loop.js";
import { ownCpuSeconds } from "./lib/cpu.js";
import { TokenRequestBuilder, type AgentCredentials } from "./lib/token-request.js";

export interface ClientJob {
  issuer: string;
  agents: AgentCredentials[];
  /** Requests this process keeps in flight, over as many keep-alive connections. */
  concurrency: number;
  /** Index of this process among the load generators, so processes start on different agents. */
  index: number;
  measureFromMs: number;
  measureUntilMs: number;
}

export interface ClientReport {
  completed: number;
  errors: number;
  errorSamples: Record<string, number>;
  latenciesMs: number[];
  /** CPU seconds this process used inside the measured window. */
  cpuSeconds: number;
}

/** Maximum length of the error body kept in a failure reason, in characters. */
const maxReasonLength = 200;

async function runJob(job: ClientJob): Promise<ClientReport> {
  const builders = job.agents.map((agent) => new TokenRequestBuilder(job.issuer, agent));
  const pool = new Pool(job.issuer, { connections: job.concurrency, pipelining: 1 });
  let next = job.index;

  const send = async (): Promise<Outcome> => {
    // Agents take turns, so that no one agent's rows take all the load.
    const builder = builders[next % builders.length] as TokenRequestBuilder;
    next += 1;
    const message = builder.build();
    const response = await pool.request({
      method: "POST",
      path: "/oauth/token",
      headers: message.headers,
      body: message.body,
    });
    const text = await response.body.text();
    if (response.statusCode === 200) return { ok: true };
    return { ok: false, error: `HTTP ${response.statusCode}: ${text.slice(0, maxReasonLength)}` };
  };

  let cpuAtStart = Number.NaN;
  let cpuAtEnd = Number.NaN;
  const startTimer = setTimeout(() => (cpuAtStart = ownCpuSeconds()), job.measureFromMs - Date.now());
  const endTimer = setTimeout(() => (cpuAtEnd = ownCpuSeconds()), job.measureUntilMs - Date.now());
  try {
    const result = await runClosedLoop({
      concurrency: job.concurrency,
      measureFromMs: job.measureFromMs,
      measureUntilMs: job.measureUntilMs,
      send,
    });
    // Every lane may have stopped before the timer at the window's end ran.
    if (Number.isNaN(cpuAtEnd)) cpuAtEnd = ownCpuSeconds();
    return { ...result, cpuSeconds: cpuAtEnd - cpuAtStart };
  } finally {
    clearTimeout(startTimer);
    clearTimeout(endTimer);
    await pool.close();
  }
}

process.once("message", (job: ClientJob) => {
  runJob(job).then(
    (report) => process.send?.(report, () => process.disconnect()),
    (error: unknown) => {
      console.error(`token_issuance client ${job.index} failed:`, error);
      process.exitCode = 1;
      process.disconnect();
    },
  );
});
