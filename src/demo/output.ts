import type { DemoResult, DemoStep, StepStatus } from "./report.js";

const marks: Record<StepStatus, string> = { passed: "✓", failed: "✗", skipped: "–" };
/** Frames of the progress indicator, and the interval between two of them in milliseconds. */
const spinnerFrames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const spinnerIntervalMs = 80;

/** Formats one step as one line: its mark, what was expected, and what was seen. */
export function stepLine(step: DemoStep): string {
  return `${marks[step.status]} ${step.step} (${printable(step.detail)})`;
}

/**
 * A progress indicator on a terminal while servers start. It draws only when the stream is a TTY,
 * so piped and redirected output stays clean.
 */
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private label = "";
  private frame = 0;
  private readonly enabled: boolean;

  constructor(private readonly stream: NodeJS.WriteStream) {
    this.enabled = stream.isTTY === true;
  }

  /** Shows `label` with a spinner until `stop`. */
  start(label: string): void {
    this.label = label;
    if (!this.enabled || this.timer !== undefined) return;
    this.timer = setInterval(() => this.draw(), spinnerIntervalMs);
    this.draw();
  }

  /** Clears the indicator's line, so that other output can be written. */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.stream.write("\r\u001b[K");
  }

  /** Runs `write` with the indicator's line cleared, then draws it again if it was showing. */
  around(write: () => void): void {
    const showing = this.timer !== undefined;
    this.stop();
    write();
    if (showing) this.start(this.label);
  }

  private draw(): void {
    const frame = spinnerFrames[this.frame++ % spinnerFrames.length] ?? "";
    this.stream.write(`\r\u001b[K${frame} ${this.label}`);
  }
}

/**
 * Formats the closing part of the human output: agent A's story from the audit log, the
 * counts, and the commands to explore further or what became of the data directory.
 */
export function closingLines(result: DemoResult): string[] {
  const lines: string[] = [];
  if (result.story !== undefined) {
    lines.push(
      "",
      `${result.agents.a?.name ?? "agent A"}'s story in the audit log (task ${result.story.task_id}):`,
    );
    for (const event of result.story.events) {
      const task = event.task_id === result.story.task_id ? "" : `  (delegated task ${event.task_id ?? ""})`;
      lines.push(`  ${String(event.seq).padStart(3)}  ${event.kind.padEnd(18)} ${event.actor}${task}`);
    }
  }
  const failed = result.steps.filter((step) => step.status === "failed").length;
  lines.push(
    "",
    result.ok
      ? "every expected outcome happened."
      : `${failed} of ${result.steps.length} expected outcomes did not happen.`,
    `${result.counts.allowed} calls allowed, ${result.counts.denied} denied, ` +
      `${result.counts.tokens_issued} tokens issued, ${result.counts.audit_events} audit events.`,
  );
  if (result.explore.length > 0) {
    lines.push("", "explore further:");
    for (const command of result.explore) lines.push(`  ${command}`);
  } else {
    lines.push(
      "",
      `the temporary data directory ${result.data_dir} was ${result.data_kept ? "kept" : "removed"}; ` +
        "run writ demo --keep, or give --data DIR, to keep it and explore it.",
    );
  }
  return lines;
}

/**
 * Returns the commands that explore a kept data directory, as `cli` (`writ`, or how this process
 * was started) followed by their arguments.
 */
export function exploreCommands(
  cli: string,
  dataDir: string,
  adminKeyFile: string,
  tasks: DemoResult["tasks"],
): string[] {
  const data = `--data ${shellQuote(dataDir)}`;
  const admin = `${data} --admin-key ${shellQuote(adminKeyFile)}`;
  return [
    `${cli} ${data} audit verify`,
    ...(tasks.a === undefined ? [] : [`${cli} ${admin} audit task ${tasks.a}`]),
    ...(tasks.b === undefined ? [] : [`${cli} ${admin} audit list --task ${tasks.b}`]),
    `${cli} ${admin} task list`,
    `${cli} ${admin} tool list`,
  ];
}

/** Quotes a value for a POSIX shell when it contains anything but safe characters. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`;
}

function printable(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f-\u009f]/g, "");
}
