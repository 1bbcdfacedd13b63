/** Whether a step's expected outcome happened, did not happen, or was not attempted. */
export type StepStatus = "passed" | "failed" | "skipped";

/** One step of the story, as printed: what was expected, whether it happened, and what was seen. */
export interface DemoStep {
  step: string;
  status: StepStatus;
  /** False only for a failed step; a skipped step does not fail the demo. */
  ok: boolean;
  detail: string;
}

/** An agent of the story: its name and SPIFFE ID. */
export interface DemoAgent {
  name: string;
  spiffe_id: string;
}

/** Everything the demo did and saw, as `writ demo --json` prints it. */
export interface DemoResult {
  ok: boolean;
  data_dir: string;
  /** Whether the data directory is still there after the run. */
  data_kept: boolean;
  /** The admin key that the commands under `explore` need; absent when it was removed. */
  admin_key_file?: string;
  steps: DemoStep[];
  /** Counted in the audit log after the run. */
  counts: { allowed: number; denied: number; tokens_issued: number; audit_events: number };
  agents: { a?: DemoAgent; b?: DemoAgent; sub?: DemoAgent };
  tasks: { a?: string; b?: string; delegated?: string };
  /** The call outside its task: who made it, on which tool, and the decision id the gateway returned. */
  denied_call?: { agent: string; tool: string; decision_id: string };
  /** The revocation of agent A and how long after it A's next call failed, in milliseconds. */
  revocation?: { agent: string; failed_after_ms: number };
  /** Agent B's per-task PostgreSQL role, and whether it was gone after the task; absent when skipped. */
  postgres?: { role: string; dropped: boolean };
  /** The MCP server processes the gateway started, and whether each exited by the end. */
  mcp_servers: { pid: number; task_id: string; tool: string; exited: boolean }[];
  /** Agent A's story from the audit log, as `writ audit task` prints it. */
  story?: {
    task_id: string;
    /** The task's status at the end: `revoked` for agent A. */
    status: string;
    events: { seq: number; kind: string; actor: string; task_id: string | null }[];
  };
  /** Commands that explore the kept data directory further. */
  explore: string[];
}

/** Collects the steps of a run in order and hands each to a listener as it happens. */
export class StepLog {
  readonly steps: DemoStep[] = [];
  private closed = false;

  constructor(private readonly onStep?: (step: DemoStep) => void) {}

  /** Records a step whose expected outcome happened when `ok` is true; returns `ok`. */
  check(step: string, ok: boolean, detail: string): boolean {
    this.add({ step, status: ok ? "passed" : "failed", ok, detail });
    return ok;
  }

  /** Records a step that was not attempted, with the reason in `detail`. */
  skip(step: string, detail: string): void {
    this.add({ step, status: "skipped", ok: true, detail });
  }

  /** Ignores every later step, such as those of a run that is being torn down. */
  close(): void {
    this.closed = true;
  }

  get ok(): boolean {
    return this.steps.every((step) => step.status !== "failed");
  }

  private add(step: DemoStep): void {
    if (this.closed) return;
    this.steps.push(step);
    this.onStep?.(step);
  }
}
