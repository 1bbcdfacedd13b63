import type { Clock } from "../clock.js";

/** Per-task behaviour the score is computed from, kept in this gateway's memory. */
interface TaskBehaviour {
  denials: number;
  /** Request times in milliseconds since the epoch, oldest first; those before `first` are dropped. */
  recent: number[];
  first: number;
  tools: Set<string>;
}

/** The window over which the request rate is counted. */
const rateWindowMs = 60_000;
/** Requests per window that count as normal; each one beyond adds a point. */
const normalRequestsPerWindow = 60;
const pointsPerDenial = 15;
const pointsFirstUseOfTool = 10;
const pointsOffHours = 10;
/** Hours (UTC) outside which a request counts as off-hours: before 06:00 or from 22:00. */
const workdayStartHour = 6;
const workdayEndHour = 22;
const maxTrackedTasks = 100_000;

/**
 * A heuristic risk score, 0 to 100, from a task's recent behaviour at this gateway: denials so far,
 * request rate over the last minute, first use of a tool, and time of day. Policies read it as
 * `context.risk_score`; it is an input to decisions, not a decision.
 */
export class RiskScorer {
  private readonly tasks = new Map<string, TaskBehaviour>();

  constructor(private readonly clock: Clock) {}

  /** Scores a request about to be decided, and counts it. */
  score(taskId: string, tool: string): number {
    return this.compute(taskId, tool, "count");
  }

  /**
   * Scores a request as `score` does but without counting it, for a request whose sender is still
   * being authenticated. Call `count` once it is authenticated.
   */
  preview(taskId: string, tool: string): number {
    return this.compute(taskId, tool, "preview");
  }

  /** Counts a request that `preview` scored. */
  count(taskId: string, tool: string): void {
    this.compute(taskId, tool, "count");
  }

  /**
   * Scores a request without counting it toward the rate or a tool's first use, for requests such as
   * MCP protocol methods that use no tool action.
   */
  peek(taskId: string, tool: string): number {
    return this.compute(taskId, tool, "peek");
  }

  /** Computes the score. `count` records the request, and `preview` includes it without recording it. */
  private compute(taskId: string, tool: string, mode: "count" | "preview" | "peek"): number {
    const now = this.clock.nowMs();
    const behaviour = this.behaviour(taskId);
    // Times arrive in order, so expired ones are skipped from the front in amortised constant time.
    while (
      behaviour.first < behaviour.recent.length &&
      now - (behaviour.recent[behaviour.first] as number) >= rateWindowMs
    ) {
      behaviour.first++;
    }
    if (behaviour.first > 1024 && behaviour.first * 2 > behaviour.recent.length) {
      behaviour.recent = behaviour.recent.slice(behaviour.first);
      behaviour.first = 0;
    }
    if (mode === "count") behaviour.recent.push(now);
    const inWindow = behaviour.recent.length - behaviour.first + (mode === "preview" ? 1 : 0);

    let score = behaviour.denials * pointsPerDenial;
    score += Math.max(0, inWindow - normalRequestsPerWindow);
    if (!behaviour.tools.has(tool)) {
      score += pointsFirstUseOfTool;
      if (mode === "count") behaviour.tools.add(tool);
    }
    const hour = new Date(now).getUTCHours();
    if (hour < workdayStartHour || hour >= workdayEndHour) score += pointsOffHours;
    return Math.min(100, score);
  }

  recordDenial(taskId: string): void {
    this.behaviour(taskId).denials++;
  }

  forget(taskId: string): void {
    this.tasks.delete(taskId);
  }

  private behaviour(taskId: string): TaskBehaviour {
    let behaviour = this.tasks.get(taskId);
    if (behaviour === undefined) {
      if (this.tasks.size >= maxTrackedTasks) this.tasks.clear();
      behaviour = { denials: 0, recent: [], first: 0, tools: new Set() };
      this.tasks.set(taskId, behaviour);
    }
    return behaviour;
  }
}
