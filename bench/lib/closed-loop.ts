import { performance } from "node:perf_hooks";

/** The outcome of one request: success, or the reason it failed. */
export type Outcome = { ok: true } | { ok: false; error: string };

export interface ClosedLoopOptions {
  /** Requests kept in flight. Each lane sends its next request when its previous one has completed. */
  concurrency: number;
  /** Epoch milliseconds at which the warm-up ends and counting starts. */
  measureFromMs: number;
  /** Epoch milliseconds at which counting and sending stop. */
  measureUntilMs: number;
  /** Sends one request and resolves with its outcome. A rejection counts as a failed request. */
  send(lane: number): Promise<Outcome>;
}

export interface ClosedLoopResult {
  /** Successful requests that completed inside the measured window. */
  completed: number;
  /** Failed requests during the whole run, warm-up included. */
  errors: number;
  /** The first five distinct failure reasons, with their counts. */
  errorSamples: Record<string, number>;
  /** Latencies in milliseconds of the requests counted in `completed`, in completion order. */
  latenciesMs: number[];
}

const maxErrorSamples = 5;

/**
 * Drives a closed-loop load: `concurrency` lanes each send requests back to back from now until
 * `measureUntilMs`. Requests that complete before `measureFromMs` are the warm-up and are not counted,
 * except for failures, which are counted over the whole run. Resolves when every lane has stopped.
 */
export async function runClosedLoop(options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const result: ClosedLoopResult = { completed: 0, errors: 0, errorSamples: {}, latenciesMs: [] };

  const recordError = (reason: string): void => {
    result.errors += 1;
    if (reason in result.errorSamples) result.errorSamples[reason] = (result.errorSamples[reason] ?? 0) + 1;
    else if (Object.keys(result.errorSamples).length < maxErrorSamples) result.errorSamples[reason] = 1;
  };

  const lane = async (index: number): Promise<void> => {
    while (Date.now() < options.measureUntilMs) {
      const startedAt = performance.now();
      let outcome: Outcome;
      try {
        outcome = await options.send(index);
      } catch (error) {
        outcome = { ok: false, error: (error as Error).message };
      }
      const latencyMs = performance.now() - startedAt;
      const finishedAtMs = Date.now();
      if (!outcome.ok) {
        recordError(outcome.error);
      } else if (finishedAtMs >= options.measureFromMs && finishedAtMs < options.measureUntilMs) {
        result.completed += 1;
        result.latenciesMs.push(latencyMs);
      }
    }
  };

  await Promise.all(Array.from({ length: options.concurrency }, (_, index) => lane(index)));
  return result;
}
