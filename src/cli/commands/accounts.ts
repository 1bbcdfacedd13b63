import type { Command } from "commander";
import type { Account } from "../../accounts/accounts.js";
import type { Checkout } from "../../accounts/checkout.js";
import type { Holder } from "../../accounts/holders.js";
import { emit, parseDuration, printable, table } from "../output.js";
import { run } from "../run.js";

/** Registers `writ account …`. */
export function registerAccountCommands(program: Command): void {
  const account = program
    .command("account")
    .description("legacy shared accounts: exclusive checkout, rotation after every use");

  account
    .command("add <name>")
    .description("register an existing shared role; writ sets a password that only checkouts reveal")
    .requiredOption("--kind <kind>", "the account kind: postgres")
    .requiredOption("--system <name>", "the system the role is on")
    .requiredOption("--role <role>", "the shared role, such as legacy_etl")
    .option("--rotate-every <duration>", "also rotate on this schedule when unused, such as 24h")
    .action((name: string, flags: { kind: string; system: string; role: string; rotateEvery?: string }) =>
      run(program, async (target, options) => {
        const added = await target.client.call<Account>("POST", "/v1/accounts", {
          name,
          kind: flags.kind,
          system: flags.system,
          role: flags.role,
          ...(flags.rotateEvery === undefined ? {} : { rotate_every_s: parseDuration(flags.rotateEvery) }),
        });
        emit(options, added, () => [
          `account ${added.name} added for role ${printable(added.role)} on ${added.system}`,
        ]);
      }),
    );

  account
    .command("list")
    .description("list shared accounts and whether each is checked out")
    .action(() =>
      run(program, async (target, options) => {
        const { accounts } = await target.client.call<{ accounts: Account[] }>("GET", "/v1/accounts");
        emit(options, { accounts }, () =>
          table(
            ["NAME", "SYSTEM", "ROLE", "CHECKED OUT", "ROTATED", "ROTATION DUE"],
            accounts.map((entry) => [
              entry.name,
              entry.system,
              entry.role,
              entry.checkout_id === null ? "no" : "yes",
              new Date(entry.rotated_at).toISOString(),
              entry.rotation_due ?? "",
            ]),
          ),
        );
      }),
    );

  account
    .command("checkout <name>")
    .description("check the account out to one holder and print its current password")
    .option("--task <id>", "the holder is this task (its deadline caps the checkout)")
    .option("--human <name>", "the holder is this person: id, SPIFFE ID or display name")
    .option("--for <duration>", "how long the checkout lasts, such as 15m", "15m")
    .option("--wait [duration]", "wait for a held account instead of failing, up to this long (default 5m)")
    .action((name: string, flags: { task?: string; human?: string; for: string; wait?: string | boolean }) =>
      run(program, async (target, options) => {
        const waitS =
          flags.wait === undefined
            ? 0
            : flags.wait === true
              ? parseDuration("5m")
              : parseDuration(String(flags.wait));
        const checkout = await target.client.call<Checkout>(
          "POST",
          `/v1/accounts/${encodeURIComponent(name)}/checkout`,
          {
            ...(flags.task === undefined ? {} : { task: flags.task }),
            ...(flags.human === undefined ? {} : { human: flags.human }),
            duration_s: parseDuration(flags.for),
            wait_s: waitS,
          },
        );
        emit(options, checkout, () => [
          `account ${checkout.account} checked out to ${describeHolder(checkout.holder)}`,
          `role      ${printable(checkout.role)} on ${checkout.system}`,
          `expires   ${new Date(checkout.expires_at).toISOString()}`,
          `password  ${checkout.password}`,
        ]);
      }),
    );

  account
    .command("checkin <name>")
    .description("return the account; its password is rotated and its sessions are ended")
    .action((name: string) =>
      run(program, async (target, options) => {
        const result = await target.client.call<{ account: string; holder: Holder; rotated: boolean }>(
          "POST",
          `/v1/accounts/${encodeURIComponent(name)}/checkin`,
        );
        emit(options, result, () => [
          `account ${result.account} checked in from ${describeHolder(result.holder)}`,
          result.rotated ? "password rotated" : "rotation failed; it is retried before the next checkout",
        ]);
      }),
    );
}

function describeHolder(holder: Holder): string {
  return holder.kind === "task" ? `task ${holder.task_id} (${holder.agent})` : `person ${holder.spiffe_id}`;
}
