import type { Command } from "commander";
import type { Lease } from "../../leases/leases.js";
import { emit, printable, table } from "../output.js";
import { run } from "../run.js";

/** Registers `writ leases list`. */
export function registerLeaseCommands(program: Command): void {
  program
    .command("leases")
    .description("inspect the per-task roles on systems")
    .command("list")
    .description("list leases, newest first; pending cleanups show their attempts and last error")
    .option("--state <state>", "only leases in this state: active, cleanup_pending or cleaned")
    .option("--task <id>", "only this task's leases")
    .action((flags: { state?: string; task?: string }) =>
      run(program, async (target, options) => {
        const query = new URLSearchParams();
        if (flags.state !== undefined) query.set("state", flags.state);
        if (flags.task !== undefined) query.set("task", flags.task);
        const { leases } = await target.client.call<{ leases: Lease[] }>(
          "GET",
          `/v1/leases?${query.toString()}`,
        );
        emit(options, { leases }, () =>
          table(
            ["ID", "SYSTEM", "ROLE", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"],
            leases.map((lease) => [
              lease.id,
              lease.system,
              lease.role,
              lease.state,
              lease.attempts,
              lease.state === "cleanup_pending" ? new Date(lease.next_attempt_at).toISOString() : "",
              printable(lease.last_error ?? ""),
            ]),
          ),
        );
      }),
    );
}
