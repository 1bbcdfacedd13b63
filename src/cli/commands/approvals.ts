import type { Command } from "commander";
import type { Approval } from "../../approvals/approvals.js";
import type { Breakglass } from "../../breakglass/breakglass.js";
import { emit, parseDuration, printable, table } from "../output.js";
import { run } from "../run.js";

/** Registers `writ approve`, `writ reject`, `writ approval …` and `writ breakglass …`. */
export function registerApprovalCommands(program: Command): void {
  for (const decision of ["approve", "reject"] as const) {
    program
      .command(`${decision} <id>`)
      .description(`${decision} an approval request (a held tool call or a break-glass window)`)
      .action((id: string) =>
        run(program, async (target, options) => {
          const decided = await target.client.call<Approval>(
            "POST",
            `/v1/approvals/${encodeURIComponent(id)}/${decision}`,
          );
          emit(options, decided, () => [`approval ${decided.id} is ${decided.status}`]);
        }),
      );
  }

  const approval = program.command("approval").description("list and inspect approval requests");
  approval
    .command("list")
    .description("list approval requests, newest first")
    .option(
      "--status <status>",
      "only requests in this state: pending, granted, rejected, used, expired or cancelled",
    )
    .action((flags: { status?: string }) =>
      run(program, async (target, options) => {
        const query = flags.status === undefined ? "" : `?status=${encodeURIComponent(flags.status)}`;
        const { approvals } = await target.client.call<{ approvals: Approval[] }>(
          "GET",
          `/v1/approvals${query}`,
        );
        emit(options, { approvals }, () =>
          table(
            ["ID", "KIND", "STATUS", "REQUESTER", "SUBJECT"],
            approvals.map((entry) => [
              entry.id,
              entry.kind,
              entry.status,
              entry.requester,
              printable(describeSubject(entry)),
            ]),
          ),
        );
      }),
    );
  approval
    .command("show <id>")
    .description("show one approval request, its rule and its votes")
    .action((id: string) =>
      run(program, async (target, options) => {
        const shown = await target.client.call<Approval>("GET", `/v1/approvals/${encodeURIComponent(id)}`);
        emit(options, shown, () => [
          `id        ${shown.id}`,
          `kind      ${shown.kind}`,
          `status    ${shown.status}`,
          `requester ${shown.requester}`,
          `subject   ${printable(describeSubject(shown))}`,
          `rule      ${shown.rule.count} of roles [${shown.rule.roles.join(",")}] or people [${shown.rule.people.join(",")}]`,
          `expires   ${new Date(shown.expires_at).toISOString()}`,
          ...shown.votes.map((vote) => `vote      ${vote.decision} by ${vote.approver}`),
        ]);
      }),
    );

  registerBreakglassCommands(program);
}

function registerBreakglassCommands(program: Command): void {
  const breakglass = program
    .command("breakglass")
    .description("request, end and annotate emergency access windows");

  breakglass
    .command("request")
    .description("request a break-glass window; it opens once other people approve it")
    .option("--agent <name>", "the agent the window is for")
    .option("--human <name>", "a person the window is for (not supported yet; rejected)")
    .requiredOption("--tools <list>", "comma-separated TOOL:ACTION entries the window allows")
    .requiredOption("--reason <text>", "why the window is needed; becomes the task's intent")
    .requiredOption("--for <duration>", "how long the window stays open once approved, such as 30m")
    .action((flags: { agent?: string; human?: string; tools: string; reason: string; for: string }) =>
      run(program, async (target, options) => {
        const requested = await target.client.call<Breakglass>("POST", "/v1/breakglass", {
          ...(flags.agent === undefined ? {} : { agent: flags.agent }),
          ...(flags.human === undefined ? {} : { human: flags.human }),
          actions: flags.tools
            .split(",")
            .map((entry) => entry.trim())
            .filter((entry) => entry !== ""),
          reason: flags.reason,
          duration_s: parseDuration(flags.for),
        });
        emit(options, requested, () => [
          `break-glass ${requested.id} requested; approval ${requested.approval_id} is pending`,
          `approve it with: writ approve ${requested.approval_id}`,
        ]);
      }),
    );

  breakglass
    .command("list")
    .description("list break-glass windows, newest first")
    .option(
      "--status <status>",
      "only windows in this state: pending, active, ended, expired, rejected or cancelled",
    )
    .action((flags: { status?: string }) =>
      run(program, async (target, options) => {
        const query = flags.status === undefined ? "" : `?status=${encodeURIComponent(flags.status)}`;
        const { breakglass: windows } = await target.client.call<{ breakglass: Breakglass[] }>(
          "GET",
          `/v1/breakglass${query}`,
        );
        emit(options, { breakglass: windows }, () =>
          table(
            ["ID", "STATUS", "AGENT", "ACTIONS", "ENDS"],
            windows.map((entry) => [
              entry.id,
              entry.status,
              entry.target,
              entry.actions.join(","),
              entry.ends_at_s === null ? "-" : new Date(entry.ends_at_s * 1000).toISOString(),
            ]),
          ),
        );
      }),
    );

  breakglass
    .command("show <id>")
    .description("show one break-glass window")
    .action((id: string) =>
      run(program, async (target, options) => {
        const shown = await target.client.call<Breakglass>("GET", `/v1/breakglass/${encodeURIComponent(id)}`);
        emit(options, shown, () => [
          `id        ${shown.id}`,
          `status    ${shown.status}`,
          `agent     ${shown.target}`,
          `actions   ${shown.actions.join(",")}`,
          `reason    ${printable(shown.reason)}`,
          `requester ${shown.requester}`,
          `approval  ${shown.approval_id}`,
          `task      ${shown.task_id ?? "-"}`,
          `ends      ${shown.ends_at_s === null ? "-" : new Date(shown.ends_at_s * 1000).toISOString()}`,
          `note      ${shown.note === null ? "-" : printable(shown.note)}`,
        ]);
      }),
    );

  breakglass
    .command("end <id>")
    .description("end a window early, revoking its task and tokens, or cancel a pending request")
    .action((id: string) =>
      run(program, async (target, options) => {
        const ended = await target.client.call<Breakglass>(
          "POST",
          `/v1/breakglass/${encodeURIComponent(id)}/end`,
        );
        emit(options, ended, () => [`break-glass ${ended.id} is ${ended.status}`]);
      }),
    );

  breakglass
    .command("note <id>")
    .description("attach a post-incident note to a finished window")
    .requiredOption("--text <text>", "the note")
    .action((id: string, flags: { text: string }) =>
      run(program, async (target, options) => {
        const noted = await target.client.call<Breakglass>(
          "POST",
          `/v1/breakglass/${encodeURIComponent(id)}/note`,
          {
            text: flags.text,
          },
        );
        emit(options, noted, () => [`note attached to break-glass ${noted.id}`]);
      }),
    );
}

function describeSubject(approval: Approval): string {
  const subject = approval.subject;
  if (approval.kind === "step_up") {
    return `${String(subject.tool)}:${String(subject.action)} ${String(subject.method)} ${String(subject.target)}`;
  }
  return `break-glass for ${String(subject.agent)}: ${String(subject.reason)}`;
}
