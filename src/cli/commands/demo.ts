import { constants } from "node:os";
import { basename, relative, isAbsolute } from "node:path";
import type { Command } from "commander";
import { runDemo } from "../../demo/demo.js";
import { closingLines, Progress, shellQuote, stepLine } from "../../demo/output.js";
import { emit } from "../output.js";
import { fail } from "../run.js";
import type { GlobalOptions } from "../target.js";

/** Registers `writ demo`. */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "run the main job end to end on a temporary data directory (or --data); exits 1 if any expected outcome did not happen",
    )
    .option("--keep", "keep the temporary data directory, and the admin key beside it, after the run")
    .action(async (flags: { keep?: boolean }) => {
      const options = program.opts<GlobalOptions>();
      const json = options.json === true;
      const progress = new Progress(process.stderr);
      // SIGINT or SIGTERM stops the run: its servers and agents are closed and its temporary folder
      // is removed before the process exits.
      const controller = new AbortController();
      let stoppedBy: "SIGINT" | "SIGTERM" | undefined;
      const interrupt = (signal: "SIGINT" | "SIGTERM"): void => {
        stoppedBy = signal;
        controller.abort(new Error(`interrupted by ${signal}`));
      };
      process.once("SIGINT", interrupt);
      process.once("SIGTERM", interrupt);
      try {
        const result = await runDemo({
          signal: controller.signal,
          ...(options.data === undefined ? {} : { dataDir: options.data }),
          keep: flags.keep === true,
          cli: cliInvocation(),
          onProgress: (label) => (label === undefined ? progress.stop() : progress.start(label)),
          onStep: (step) => {
            if (!json) progress.around(() => process.stdout.write(`${stepLine(step)}\n`));
          },
        });
        emit(options, result, () => closingLines(result));
        // 128 plus the signal number is the shell's convention for a process stopped by a signal.
        if (stoppedBy !== undefined) process.exitCode = 128 + constants.signals[stoppedBy];
        else if (!result.ok) process.exitCode = 1;
      } catch (error) {
        progress.stop();
        fail(options, error);
      } finally {
        process.off("SIGINT", interrupt);
        process.off("SIGTERM", interrupt);
      }
    });
}

/** Returns how this process was started, so that printed commands can be pasted as they are. */
function cliInvocation(): string {
  const script = process.argv[1];
  if (script === undefined || basename(script) === "writ") return "writ";
  const fromHere = relative(process.cwd(), script);
  const path = fromHere.startsWith("..") || isAbsolute(fromHere) ? script : fromHere;
  return `node ${shellQuote(path)}`;
}
