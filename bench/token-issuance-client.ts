/**
 * A load-generator process for the token_issuance benchmark, started by bench/token-issuance.ts with
 * `fork`. It receives one `ClientJob` over IPC, signs its stock of requests and sends `ready`. On the
 * `ClientStart` that follows, it runs the load, sends back one `ClientReport` and exits.
 */
import { Pool } from "undici";
import { runClosedLoop, type Outcome } from "./lib/closed-loop.js";
import { ownCpuSeconds } from "./lib/cpu.js";
import { TokenRequestBuilder, type AgentCredentials, type TokenRequestMessage } from "./lib/token-request.js";

export interface ClientJob {
  issuer: string;
  agents: AgentCredentials[];
  /** Requests this process keeps in flight, over as many keep-alive connections. */
  concurrency: number;
  /** Index of this process among the load generators, so processes start on different agents. */
  index: number;
  /** Requests signed before the load starts; once they are used up, each request is signed when sent. */
  stock: number;
}

/** Sent once every load generator is ready: the epoch milliseconds of the measured window. */
export interface ClientStart {
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
  /** Requests signed while the load ran, because the stock was used up. */
  signedInLoop: number;
}

/** Maximum length of the error body kept in a failure reason, in characters. */
const maxReasonLength = 200;

/**
 * Signs the stock of requests, agents taking turns, each with fresh `jti` values and the current
 * `iat`. A run lasts seconds, so the stock is used well within the server's 60 s limit on proof age.
 */
function signStock(job: ClientJob, builders: TokenRequestBuilder[]): TokenRequestMessage[] {
  const stock: TokenRequestMessage[] = [];
  for (let index = 0; index < job.stock; index += 1) {
    stock.push((builders[(job.index + index) % builders.length] as TokenRequestBuilder).build());
  }
  // Requests are taken from the end, so the first to be sent is the first signed.
  return stock.reverse();
}

async function runJob(
  job: ClientJob,
  start: ClientStart,
  stock: TokenRequestMessage[],
): Promise<ClientReport> {
  const builders = job.agents.map((agent) => new TokenRequestBuilder(job.issuer, agent));
  const pool = new Pool(job.issuer, { connections: job.concurrency, pipelining: 1 });
  let next = job.index + job.stock;
  let signedInLoop = 0;

  const send = async (): Promise<Outcome> => {
    // Agents take turns, so that no one agent's rows take all the load.
    let message = stock.pop();
    if (message === undefined) {
      // Past the stock, agents go on taking turns where the stock left off.
      message = (builders[next % builders.length] as TokenRequestBuilder).build();
      next += 1;
      signedInLoop += 1;
    }
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
  const startTimer = setTimeout(() => (cpuAtStart = ownCpuSeconds()), start.measureFromMs - Date.now());
  const endTimer = setTimeout(() => (cpuAtEnd = ownCpuSeconds()), start.measureUntilMs - Date.now());
  try {
    const result = await runClosedLoop({
      concurrency: job.concurrency,
      measureFromMs: start.measureFromMs,
      measureUntilMs: start.measureUntilMs,
      send,
    });
    // Every lane may have stopped before the timer at the window's end ran.
    if (Number.isNaN(cpuAtEnd)) cpuAtEnd = ownCpuSeconds();
    return { ...result, cpuSeconds: cpuAtEnd - cpuAtStart, signedInLoop };
  } finally {
    clearTimeout(startTimer);
    clearTimeout(endTimer);
    await pool.close();
  }
}

process.once("message", (job: ClientJob) => {
  const stock = signStock(
    job,
    job.agents.map((agent) => new TokenRequestBuilder(job.issuer, agent)),
  );
  process.once("message", (start: ClientStart) => {
    runJob(job, start, stock).then(
      (report) => process.send?.(report, () => process.disconnect()),
      (error: unknown) => {
        console.error(`token_issuance client ${job.index} failed:`, error);
        process.exitCode = 1;
        process.disconnect();
      },
    );
  });
  process.send?.("ready");
});
