import { runAccountUpkeep } from "../accounts/upkeep.js";
import type { BrokerContext } from "../broker/context.js";
import { runDueCleanups } from "./worker.js";

const running = new WeakMap<BrokerContext, Promise<void>>();

/**
 * Runs one pass of the work writ owes to registered systems: due lease cleanups (including those a
 * crash interrupted) and shared-account expiries and rotations. A call during a pass returns that
 * pass. A pass never throws, because it runs from the broker's timer and may reach servers that are
 * down.
 */
export function runSystemUpkeep(context: BrokerContext): Promise<void> {
  const current = running.get(context);
  if (current !== undefined) return current;
  const pass = (async () => {
    try {
      // Both run at once, so that cleanups waiting on an unreachable server do not delay rotations.
      const outcomes = await Promise.allSettled([runDueCleanups(context), runAccountUpkeep(context)]);
      for (const [index, outcome] of outcomes.entries()) {
        if (outcome.status === "rejected") {
          context.log.error(
            { err: outcome.reason, upkeep: index === 0 ? "lease cleanups" : "shared accounts" },
            "system upkeep failed; retrying at the next interval",
          );
        }
      }
    } finally {
      running.delete(context);
    }
  })();
  running.set(context, pass);
  return pass;
}
