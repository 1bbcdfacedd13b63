import type { BrokerContext } from "../broker/context.js";
import { requireTask, type Task } from "../tasks/tasks.js";
import type { AuditRecord } from "./chain.js";
import { fromAuditRow } from "./read.js";

/** A task's story: the task, the tasks delegated from it, and every event of any of them in order. */
export interface TaskStory {
  task: Task;
  /** Ids of the tasks delegated from it, at any depth. */
  delegated: string[];
  events: AuditRecord[];
}

/** The largest number of events a story returns; a longer one is cut, newest events last. */
const maxStoryEvents = 10_000;

/** Collects a task's story from the audit log: who started it, its tokens, calls, delegations and end. */
export async function taskStory(context: BrokerContext, taskId: string): Promise<TaskStory> {
  const task = await requireTask(context, taskId);
  const delegated: string[] = [];
  let frontier = [task.id];
  while (frontier.length > 0) {
    const children = await context.store.db
      .selectFrom("tasks")
      .select("id")
      .where("parent_task_id", "in", frontier)
      .execute();
    frontier = children.map((row) => row.id).filter((id) => !delegated.includes(id));
    delegated.push(...frontier);
  }
  const rows = await context.store.db
    .selectFrom("audit_events")
    .selectAll()
    .where("task_id", "in", [task.id, ...delegated])
    .orderBy("seq")
    .limit(maxStoryEvents)
    .execute();
  return { task, delegated, events: rows.map(fromAuditRow) };
}
