import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import { WritError } from "../errors/writ-error.js";
import { requireAgent } from "../identity/agents.js";
import { listHumans } from "../identity/humans.js";
import { isTaskLive, requireTask } from "../tasks/tasks.js";

/** The holder of a checked-out account, as audit events record it. */
export type Holder =
  { kind: "task"; task_id: string; agent: string } | { kind: "human"; human_id: string; spiffe_id: string };

/** A holder with the latest time its checkout may last to, in ms since the epoch. */
export interface ResolvedHolder {
  holder: Holder;
  /** The id stored in `account_checkouts.holder_id`: the task id or the human id. */
  id: string;
  /** A task's deadline caps its checkout; a person's checkout has no cap beyond `--for`. */
  notAfterMs: number;
}

/**
 * Resolves `--task ID` (a live task) or `--human NAME` (a person's id, SPIFFE ID or display name,
 * which must name exactly one person).
 */
export async function resolveHolder(
  context: BrokerContext,
  request: { task?: string; human?: string },
): Promise<ResolvedHolder> {
  if ((request.task === undefined) === (request.human === undefined)) {
    throw new WritError("invalid_request", "name exactly one holder: a task or a human");
  }
  if (request.task !== undefined) {
    const task = await requireTask(context, request.task);
    if (!isTaskLive(task, epochSeconds(context.clock))) {
      throw new WritError("conflict", `task "${task.id}" is not active`);
    }
    const agent = await requireAgent(context, task.agent_name);
    return {
      holder: { kind: "task", task_id: task.id, agent: agent.spiffe_id },
      id: task.id,
      notAfterMs: task.deadline_s * 1000,
    };
  }
  const name = request.human as string;
  const matches = (await listHumans(context)).filter(
    (human) => human.id === name || human.spiffe_id === name || human.display_name === name,
  );
  if (matches.length === 0) throw new WritError("not_found", `human "${name}" not found`);
  if (matches.length > 1) {
    throw new WritError("invalid_request", `"${name}" names ${matches.length} people: give the id instead`);
  }
  const human = matches[0] as (typeof matches)[number];
  if (human.status !== "active") throw new WritError("conflict", `human "${name}" is disabled`);
  return {
    holder: { kind: "human", human_id: human.id, spiffe_id: human.spiffe_id },
    id: human.id,
    notAfterMs: Number.MAX_SAFE_INTEGER,
  };
}
