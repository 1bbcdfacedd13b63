import type { Command } from "commander";
import type { AuditRecord } from "../../audit/chain.js";
import type { TaskStory } from "../../audit/task-story.js";
import { emit, printable, table } from "../output.js";
import { run } from "../run.js";
import { registerAuditExportCommand } from "./audit-export.js";
import { registerAuditQuestionCommands } from "./audit-questions.js";
import { registerAuditJwksCommand, registerAuditVerifyCommand } from "./audit-verify.js";

/** Registers `writ audit list`, `task`, `verify` and `jwks`. */
export function registerAuditCommands(program: Command): void {
  const audit = program.command("audit").description("read and verify the audit log");

  audit
    .command("list")
    .description("list audit events in order")
    .option("--after <seq>", "only events after this sequence number", "0")
    .option("--limit <n>", "at most this many events (up to 1000)", "100")
    .option("--task <id>", "only this task's events")
    .action((flags: { after: string; limit: string; task?: string }) =>
      run(program, async (target, options) => {
        const query = new URLSearchParams({ after: flags.after, limit: flags.limit });
        if (flags.task !== undefined) query.set("task", flags.task);
        const { events } = await target.client.call<{ events: AuditRecord[] }>(
          "GET",
          `/v1/audit?${query.toString()}`,
        );
        emit(options, { events }, () =>
          table(
            ["SEQ", "TIME", "KIND", "ACTOR", "TASK", "DETAIL"],
            events.map((e) => [
              e.seq,
              new Date(e.time).toISOString(),
              e.kind,
              e.actor,
              e.task_id ?? "",
              summarise(e.data),
            ]),
          ),
        );
      }),
    );

  audit
    .command("task <id>")
    .description(
      "print a task's story: who started it and why, tokens, calls allowed and denied, delegations, joins, its end",
    )
    .action((id: string) =>
      run(program, async (target, options) => {
        const story = await target.client.call<TaskStory>("GET", `/v1/audit/tasks/${encodeURIComponent(id)}`);
        emit(options, story, () => [
          `task ${story.task.id} of agent ${story.task.agent_name}: ${printable(story.task.intent)}`,
          `started by ${printable(story.task.initiator)}, now ${story.task.status}`,
          ...(story.delegated.length === 0 ? [] : [`delegated tasks: ${story.delegated.join(", ")}`]),
          ...(story.omitted > 0
            ? [
                `${story.omitted} events from the middle of the story are left out; use writ audit events --task`,
              ]
            : []),
          "",
          ...table(
            ["SEQ", "TIME", "EVENT", "ACTOR", "TASK", "DETAIL"],
            story.events.map((e) => [
              e.seq,
              new Date(e.time).toISOString(),
              e.kind,
              e.actor,
              e.task_id === story.task.id ? "" : (e.task_id ?? ""),
              summarise(e.data),
            ]),
          ),
        ]);
      }),
    );

  registerAuditVerifyCommand(audit, program);
  registerAuditJwksCommand(audit, program);
  registerAuditQuestionCommands(audit);
  registerAuditExportCommand(audit);
}

function summarise(data: Record<string, unknown>): string {
  const text = printable(JSON.stringify(data));
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
