import type { Command } from "commander";
import { runDemo } from "../../demo/demo.js";
import { emit } from "../output.js";
import type { GlobalOptions } from "../target.js";

/** Registers `writ demo`. */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "run the main job end to end on a temporary data directory; exits 1 if any outcome did not happen",
    )
    .action(async () => {
      const options = program.opts<GlobalOptions>();
      const json = options.json === true;
      if (!json) process.stdout.write("starting the broker and gateway on loopback...\n");
      const result = await runDemo({
        ...(options.data === undefined ? {} : { dataDir: options.data }),
        onStep: (step) => {
          if (!json) process.stdout.write(`${step.ok ? "✓" : "✗"} ${step.step} (${step.detail})\n`);
        },
      });
      emit(options, result, () => [
        "",
        `${result.ok ? "all outcomes happened" : "some outcomes did not happen"}: ${result.counts.allowed} calls allowed, ${result.counts.denied} denied, ${result.counts.audit_events} audit events`,
        "explore further: writ --help, docs/cli.md",
      ]);
      if (!result.ok) process.exitCode = 1;
    });
}
