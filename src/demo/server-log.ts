import { Writable } from "node:stream";
import { createLogger, type Logger } from "../log/logger.js";

/** An MCP server process that the gateway started for one task, as its log line reported it. */
export interface McpServerProcess {
  pid: number;
  taskId: string;
  tool: string;
}

/** Interval between two checks of whether a process is still running, in milliseconds. */
const exitPollMs = 50;

/**
 * Reads the embedded server's operational log in memory instead of printing it: the demo learns
 * from it which MCP server processes the gateway started, and keeps the errors for its report.
 */
export class ServerLog {
  readonly mcpServers: McpServerProcess[] = [];
  readonly errors: string[] = [];
  private partial = "";

  private readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      const lines = (this.partial + chunk.toString("utf8")).split("\n");
      this.partial = lines.pop() ?? "";
      for (const line of lines) this.read(line);
      done();
    },
  });

  /** Creates the logger to hand to the server. */
  logger(): Logger {
    return createLogger({ level: "info", destination: this.stream });
  }

  private read(line: string): void {
    let record: { level?: number; msg?: string; pid?: unknown; task_id?: unknown; tool?: unknown };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      return;
    }
    if (
      record.msg === "mcp upstream started" &&
      typeof record.pid === "number" &&
      typeof record.task_id === "string" &&
      typeof record.tool === "string"
    ) {
      this.mcpServers.push({ pid: record.pid, taskId: record.task_id, tool: record.tool });
    }
    // pino level 50 is error.
    if ((record.level ?? 0) >= 50 && record.msg !== undefined) this.errors.push(record.msg);
  }
}

/** Returns whether a process with this id is running (or not yet reaped). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Waits until none of `pids` runs, for at most `timeoutMs`; returns those still running. */
export async function waitForExit(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let running = pids.filter(isRunning);
  while (running.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, exitPollMs));
    running = running.filter(isRunning);
  }
  return running;
}
