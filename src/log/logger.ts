import { pino, type Logger, type LoggerOptions } from "pino";
import { redactedPaths } from "./fields.js";

export type { Logger } from "pino";

/** Creates the operational logger. The audit log is a separate channel and never goes through here. */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const config: LoggerOptions = {
    level: options.level ?? process.env.WRIT_LOG_LEVEL ?? "info",
    base: { service: "writ" },
    redact: { paths: redactedPaths, censor: "[redacted]" },
  };
  return options.destination === undefined ? pino(config) : pino(config, options.destination);
}

/** A logger that writes nothing, for commands and tests that do not want operational logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
