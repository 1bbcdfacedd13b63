import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { spiffeId } from "../../identity/spiffe.js";
import { getTask, type Task } from "../../tasks/tasks.js";

/** On whose behalf an identity acted: who started the work, whose authority it used, and through whom. */
export interface OnBehalfOf {
  /** The starter of the root task: a person's SPIFFE ID, `schedule:<name>`, or null when unknown. */
  initiator: string | null;
  /** The root task of the delegation chain, or null when no task is known. */
  root_task_id: string | null;
  /** The principal whose authority was used (the token's `sub`). */
  sub: string | null;
  /** The actors between `sub` and the acting identity, nearest first, as nested `act` claims list them. */
  actors: string[];
}

/** Parent links followed at most, so that a corrupt cycle of parent links cannot loop forever. */
const maxParentHops = 64;

/** Looks up tasks and their root initiators once per task, for results that name many events. */
export class TaskLookup {
  private readonly tasks = new Map<string, Promise<Task | undefined>>();

  constructor(private readonly context: BrokerContext) {}

  task(id: string): Promise<Task | undefined> {
    let found = this.tasks.get(id);
    if (found === undefined) {
      found = getTask(this.context, id);
      this.tasks.set(id, found);
    }
    return found;
  }

  /** Follows `parent_task_id` to the root task and returns it, or undefined when the task is unknown. */
  async rootOf(id: string): Promise<Task | undefined> {
    let task = await this.task(id);
    for (let hop = 0; hop < maxParentHops && task?.parent_task_id != null; hop++) {
      const parent = await this.task(task.parent_task_id);
      if (parent === undefined) break;
      task = parent;
    }
    return task;
  }

  /**
   * Builds the chain of an act within a task. `sub` and `actors` come from the event when it has them
   * (gateway decisions do), else from the task as its tokens carry them. The initiator is the root
   * task's.
   */
  async onBehalfOf(
    taskId: string | null,
    fromEvent: { sub?: string | undefined; actors?: string[] } = {},
  ): Promise<OnBehalfOf> {
    const task = taskId === null ? undefined : await this.task(taskId);
    const root = taskId === null ? undefined : await this.rootOf(taskId);
    let taskSub: string | null = null;
    let taskActors: string[] = [];
    if (task !== undefined) {
      const agent = spiffeId(this.context.config.trust_domain, "agent", task.agent_name);
      taskSub = task.subject ?? agent;
      // A delegated task's tokens name its agent as the current actor, then the earlier actors.
      if (task.subject !== null) taskActors = [agent, ...task.actor_chain];
    }
    return {
      initiator: root?.initiator ?? null,
      root_task_id: root?.id ?? null,
      sub: fromEvent.sub ?? taskSub,
      actors: fromEvent.actors ?? taskActors,
    };
  }
}

/** Returns the SPIFFE ID of an identity given by name or by SPIFFE ID, or throws `invalid_request`. */
export function identityOf(context: BrokerContext, kind: "agent", value: string): string {
  const prefix = `spiffe://${context.config.trust_domain}/${kind}/`;
  const name = value.startsWith(prefix) ? value.slice(prefix.length) : value;
  try {
    return spiffeId(context.config.trust_domain, kind, name);
  } catch {
    throw new WritError("invalid_request", `invalid ${kind} "${value}": give its name or its SPIFFE ID`);
  }
}
