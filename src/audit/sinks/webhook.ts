import type { CheckpointSink } from "./sink.js";

/** How long one webhook delivery may take before it counts as failed, in milliseconds. */
const webhookTimeoutMs = 5000;

/**
 * POSTs each checkpoint's JWS to `url` as `application/jwt`; any status outside 2xx is a failure.
 * The JWS carries `seq`, `hash` and `time`, so the receiver needs nothing else to keep it.
 */
export function webhookSink(url: string): CheckpointSink {
  return {
    name: `webhook ${url}`,
    async write(checkpoint) {
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/jwt" },
        body: checkpoint.jws,
        redirect: "manual",
        signal: AbortSignal.timeout(webhookTimeoutMs),
      });
      await response.body?.cancel();
      if (response.status < 200 || response.status > 299) {
        throw new Error(`webhook ${url} returned status ${response.status}`);
      }
    },
    close: async () => {},
  };
}
