import type { CallOutcome } from "./agent-protocol.js";
import type { Scene } from "./story.js";

/** Interval between two calls of agent A while the operator revokes it, in milliseconds. */
const workIntervalMs = 20;
/** Number of agent A's calls that succeed before the operator revokes it. */
const callsBeforeRevocation = 3;
/** Maximum wait for agent A's work to show its first success or its first failure, in milliseconds. */
const workWaitMs = 10_000;

/**
 * Lets A call the HTTP API in a loop, revokes A once some calls have succeeded, and measures how long
 * after the revocation request A's first failed call ended. A call that started after the revocation
 * returned and still succeeded fails the step.
 */
export async function revokeWhileWorking(scene: Scene): Promise<void> {
  const { installation, cast, log, result } = scene;
  const outcomes: CallOutcome[] = [];
  let onSuccess: () => void = () => {};
  let onFailure: (outcome: CallOutcome) => void = () => {};
  const succeeded = new Promise<void>((resolve) => (onSuccess = resolve));
  const failed = new Promise<CallOutcome>((resolve) => (onFailure = resolve));
  cast.a.onRepeat((outcome) => {
    outcomes.push(outcome);
    if (!outcome.ok) onFailure(outcome);
    else if (outcomes.length >= callsBeforeRevocation) onSuccess();
  });
  await cast.a.request({
    op: "repeat",
    tool: "tracker",
    method: "GET",
    path: "/issues/42",
    intervalMs: workIntervalMs,
  });
  await within(succeeded, workWaitMs, `${cast.a.name}'s calls did not succeed before the revocation`);

  const revokeStartedAtMs = Date.now();
  await installation.admin.call("POST", "/v1/revoke", { agent: cast.a.name });
  const revokeReturnedAtMs = Date.now();
  const failure = await within(
    failed,
    workWaitMs,
    `${cast.a.name}'s calls kept succeeding after the revocation`,
  );
  const lateSuccess = outcomes.some((outcome) => outcome.ok && outcome.startedAtMs >= revokeReturnedAtMs);
  const failedAfterMs = Math.max(0, failure.endedAtMs - revokeStartedAtMs);
  result.revocation = { agent: result.agents.a?.spiffe_id ?? "", failed_after_ms: failedAfterMs };
  log.check(
    `operator revoked ${cast.a.name} mid-run: its next call failed`,
    failure.status === 401 && !lateSuccess,
    `failed ${failedAfterMs} ms after the revocation request with gateway status ${failure.status} (${failure.detail}); ${outcomes.length - 1} of its calls were allowed before it`,
  );
}

/** Resolves with `promise`, or rejects with `message` when it takes longer than `timeoutMs`. */
async function within<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        // Unreferenced, so that a run stopped while waiting does not keep the process alive.
        timer = setTimeout(() => reject(new Error(message)), timeoutMs).unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
