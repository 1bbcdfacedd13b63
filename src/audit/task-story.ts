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
  /** Events left out of the middle of a story longer than the largest one returned. */
  omitted: number;
}

/** The largest number of events a story returns; a longer one loses events from its middle. */
const maxStoryEvents = 10_000;
/** Events kept from the start of a story that is cut. */
const storyHeadEvents = 1_000;

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
  const ids = [task.id, ...delegated];
  const first = await context.store.db
    .selectFrom("audit_events")
    .selectAll()
    .where("task_id", "in", ids)
    .orderBy("seq")
    .limit(storyHeadEvents)
    .execute();
  const last = await context.store.db
    .selectFrom("audit_events")
    .selectAll()
    .where("task_id", "in", ids)
    .orderBy("seq", "desc")
    .limit(maxStoryEvents - storyHeadEvents)
    .execute();
  // A long story keeps how it began and how it ended. The middle is cut, and `omitted` counts it.
  const seen = new Set(first.map((row) => Number(row.seq)));
  const rows = [...first, ...last.reverse().filter((row) => !seen.has(Number(row.seq)))];
  let omitted = 0;
  if (rows.length === maxStoryEvents) {
    const counted = await context.store.db
      .selectFrom("audit_events")
      .select((eb) => eb.fn.countAll<number>().as("count"))
      .where("task_id", "in", ids)
      .executeTakeFirst();
    omitted = Number(counted?.count ?? 0) - rows.length;
  }
  return { task, delegated, events: rows.map(fromAuditRow), omitted };
}
