#!/usr/bin/env node
import { CommanderError } from "commander";
import { buildProgram } from "./program.js";
import { fail } from "./run.js";
import type { GlobalOptions } from "./target.js";

// A reader that closes standard output early (`writ audit list | head`) has read what it wanted, so
// the command ends with status 0 instead of an EPIPE stack trace. A command that streams its output
// adds its own listener and ends its work itself.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
  if (process.stdout.listenerCount("error") === 1) process.exit(0);
});

const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else {
    fail(program.opts<GlobalOptions>(), error);
  }
}
