import type { Command } from "commander";
import type { BlastRadius } from "../../audit/questions/blast-radius.js";
import type { EventPage } from "../../audit/questions/filters.js";
import {
  renderCsv,
  renderTable,
  terminalText,
  type OutputFormat,
  type Rows,
} from "../../audit/questions/format.js";
import { blastRadiusRows, eventRows, whoRows } from "../../audit/questions/rows.js";
import type { WhoAnswer } from "../../audit/questions/who.js";
import { run } from "../run.js";
import type { GlobalOptions } from "../target.js";

/** Characters of event data shown in the DETAIL column of terminal tables; CSV and JSON keep it whole. */
const tableDetailChars = 80;

/** Registers `writ audit events`, `writ audit who` and `writ audit blast-radius` under `writ audit`. */
export function registerAuditQuestionCommands(audit: Command): void {
  const program = audit.parent ?? audit;

  audit
    .command("events")
    .description("list audit events that match every given filter, oldest first")
    .option("--since <time>", "only events at or after this time: RFC 3339, or an age such as 1h")
    .option("--until <time>", "only events at or before this time: RFC 3339, or an age such as 10m")
    .option("--agent <name>", "only events this agent took part in (name or SPIFFE ID)")
    .option("--human <person>", "only events this person took part in (SPIFFE ID, id or unique display name)")
    .option("--task <id>", "only this task's events")
    .option("--tool <name>", "only decisions on this tool and tokens for it")
    .option("--decision <decision>", "only gateway decisions with this outcome: allow or deny")
    .option("--breakglass", "only break-glass events and calls made under a break-glass window")
    .option("--after <seq>", "only events after this sequence number, to continue a listing", "0")
    .option("--limit <n>", "at most this many events, 1 to 1000", "100")
    .option("--csv", "print CSV (RFC 4180) instead of a table")
    .action((flags: Record<string, string | boolean | undefined>) =>
      run(program, async (target, options) => {
        const format = outputFormat(options, flags.csv === true);
        const query = queryString(flags, [
          "since",
          "until",
          "agent",
          "human",
          "task",
          "tool",
          "decision",
          "after",
          "limit",
        ]);
        if (flags.breakglass === true) query.set("breakglass", "true");
        const page = await target.client.call<EventPage>("GET", `/v1/audit/events?${query.toString()}`);
        print(
          format,
          page,
          () => eventRows(page.events, format === "table" ? tableDetailChars : undefined),
          () =>
            page.next_after === null ? [] : [`more events match: continue with --after ${page.next_after}`],
        );
      }),
    );

  audit
    .command("who")
    .description(
      "list the identities that acted on a tool or resource, or held a shared account, with the chain on whose behalf",
    )
    .option("--tool <name>", "the tool that was called")
    .option("--action <name>", "only calls of this action of the tool")
    .option(
      "--resource <pattern>",
      "only calls whose target matches: a path such as /repos/*/issues/** or a full resource URI",
    )
    .option("--account <name>", "the shared account whose holders to name")
    .option(
      "--at <time>",
      "with --account: the instant to name the holder at (RFC 3339, or an age such as 2h)",
    )
    .option("--since <time>", "the start of the window: RFC 3339, or an age such as 24h")
    .option("--until <time>", "the end of the window: RFC 3339, or an age such as 1h")
    .option("--csv", "print CSV (RFC 4180) instead of a table")
    .action((flags: Record<string, string | boolean | undefined>) =>
      run(program, async (target, options) => {
        const format = outputFormat(options, flags.csv === true);
        const query = queryString(flags, ["tool", "action", "resource", "account", "at", "since", "until"]);
        const answer = await target.client.call<WhoAnswer>("GET", `/v1/audit/who?${query.toString()}`);
        print(
          format,
          answer,
          () => whoRows(answer),
          () => {
            const count = answer.kind === "account" ? answer.holders.length : answer.identities.length;
            return count === 0 ? ["no identity matches"] : [];
          },
        );
      }),
    );

  audit
    .command("blast-radius")
    .description(
      "show what an agent or one token could reach and did reach, and the revoke command that cuts off only it",
    )
    .option("--agent <name>", "the agent (name or SPIFFE ID)")
    .option("--token <jti>", "the token, by its jti")
    .option(
      "--since <time>",
      "only tasks, tokens and calls at or after this time: RFC 3339, or an age such as 24h",
    )
    .option(
      "--until <time>",
      "only tasks, tokens and calls at or before this time: RFC 3339, or an age such as 1h",
    )
    .option("--csv", "print CSV (RFC 4180) instead of a table")
    .action((flags: Record<string, string | boolean | undefined>) =>
      run(program, async (target, options) => {
        const format = outputFormat(options, flags.csv === true);
        const query = queryString(flags, ["agent", "token", "since", "until"]);
        const radius = await target.client.call<BlastRadius>(
          "GET",
          `/v1/audit/blast-radius?${query.toString()}`,
        );
        print(
          format,
          radius,
          () => blastRadiusRows(radius),
          () => [`cut off only this ${radius.subject.kind}: ${radius.revoke.command}`],
        );
      }),
    );
}

/** Picks the output format; `--json` and `--csv` together are rejected. */
function outputFormat(options: GlobalOptions, csv: boolean): OutputFormat {
  if (options.json === true && csv) throw new Error("give either --json or --csv, not both");
  if (options.json === true) return "json";
  return csv ? "csv" : "table";
}

function queryString(
  flags: Record<string, string | boolean | undefined>,
  names: readonly string[],
): URLSearchParams {
  const query = new URLSearchParams();
  for (const name of names) {
    const value = flags[name];
    if (typeof value === "string") query.set(name, value);
  }
  return query;
}

/** Prints a result: its JSON, its rows as CSV, or its rows as a table followed by `notes`. */
function print(format: OutputFormat, json: unknown, rows: () => Rows, notes: () => string[]): void {
  if (format === "json") {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  if (format === "csv") {
    process.stdout.write(renderCsv(rows()));
    return;
  }
  for (const line of [...renderTable(rows()), ...notes().map(terminalText)])
    process.stdout.write(`${line}\n`);
}
