import type { Logger } from "pino";

/** Stops a long-running service on SIGINT or SIGTERM, then exits 0, or 1 when stopping failed. */
export function closeOnSignals(log: Logger, close: () => Promise<void>): void {
  const stop = (signal: string): void => {
    log.info({ signal }, "shutdown requested");
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
}
