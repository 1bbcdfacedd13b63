import type { Command } from "commander";
import { ApiError } from "./admin-client.js";
import { printable } from "./output.js";
import { connect, type GlobalOptions, type Target } from "./target.js";

/**
 * Runs one command against the API: connects, calls `action`, and always disconnects. Errors become
 * one line on standard error (and a JSON error document with `--json`) and exit code 1.
 */
export async function run(
  program: Command,
  action: (target: Target, options: GlobalOptions) => Promise<void>,
): Promise<void> {
  const options = program.opts<GlobalOptions>();
  let target: Target | undefined;
  try {
    target = await connect(options);
    await action(target, options);
  } catch (error) {
    fail(options, error);
  } finally {
    await target?.close();
  }
}

/** Reports an error the way every command does, and sets exit code 1. */
export function fail(options: GlobalOptions, error: unknown): void {
  const code = error instanceof ApiError ? error.code : "error";
  const description = error instanceof ApiError ? error.description : (error as Error).message;
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify({ error: code, error_description: description })}\n`);
  }
  const requestId =
    error instanceof ApiError && error.requestId !== undefined ? ` (request ${error.requestId})` : "";
  process.stderr.write(`writ: ${printable(description)}${requestId}\n`);
  process.exitCode = 1;
}
