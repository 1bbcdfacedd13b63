import { fork, type ChildProcess } from "node:child_process";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentReply, AgentRequest, CallOutcome, RepeatEvent } from "./agent-protocol.js";

/** Maximum wait for an agent's reply to one request, in milliseconds. Past it, the demo fails. */
const agentReplyTimeoutMs = 30_000;
/** Time a closing agent gets to exit before SIGKILL, in milliseconds. */
const agentExitGraceMs = 2_000;
/** Length of the tail of an agent's stderr kept for error messages, in characters. */
const stderrTailChars = 2_000;

/** A request without its id, which `request` assigns; one type per member of the union. */
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
type RequestBody = WithoutId<AgentRequest>;

/** The three agents of the story: A triages, B reports, and A delegates a subtask to the sub-agent. */
export interface Cast {
  a: AgentProcess;
  b: AgentProcess;
  sub: AgentProcess;
}

/** The operator's handle on one agent process: requests, their replies, and repeat events. */
export class AgentProcess {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private readonly repeatListeners: ((outcome: CallOutcome) => void)[] = [];
  private stderrTail = "";
  private exited = false;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-stderrTailChars);
    });
    child.on("message", (message: AgentReply | RepeatEvent) => this.receive(message));
    child.on("exit", (code, signal) => {
      this.exited = true;
      const reason = new Error(
        `agent ${name} exited (${signal ?? `code ${String(code)}`})${this.stderrTail === "" ? "" : `: ${this.stderrTail.trim()}`}`,
      );
      for (const waiter of this.pending.values()) waiter.reject(reason);
      this.pending.clear();
    });
  }

  /** Starts the agent program as a child process with an IPC channel. */
  static start(name: string): AgentProcess {
    const program = agentProgramPath();
    const child = fork(program, [], {
      // Run from the TypeScript sources (tests through tsx), the program needs the same loader.
      execArgv: program.endsWith(".ts") ? ["--import", "tsx"] : [],
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      serialization: "json",
    });
    return new AgentProcess(name, child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Sends one request and resolves with the agent's result, or rejects with its error. */
  request<T>(body: RequestBody): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`agent ${this.name} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new Error(`agent ${this.name} did not respond to "${body.op}" within ${agentReplyTimeoutMs} ms`),
        );
      }, agentReplyTimeoutMs);
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.send({ ...body, id } as AgentRequest);
    });
  }

  /** Has the agent call an MCP tool through the gateway. */
  mcpCall(tool: string, name: string, args: Record<string, unknown>): Promise<CallOutcome> {
    return this.request<CallOutcome>({ op: "mcp_call", tool, name, arguments: args });
  }

  /** Has the agent call an HTTP tool through the gateway; `path` is below the tool's URL. */
  httpCall(tool: string, method: string, path: string, body?: string): Promise<CallOutcome> {
    return this.request<CallOutcome>({
      op: "http_call",
      tool,
      method,
      path,
      ...(body === undefined ? {} : { body }),
    });
  }

  /** Registers a listener for the outcome of each call of a `repeat` run. */
  onRepeat(listener: (outcome: CallOutcome) => void): void {
    this.repeatListeners.push(listener);
  }

  /** Asks the agent to close its clients, then ends its process. */
  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    try {
      await this.request({ op: "close" });
    } catch {
      // An agent that cannot close its clients cleanly is still ended below.
    }
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), agentExitGraceMs);
    await exited;
    clearTimeout(timer);
  }

  private receive(message: AgentReply | RepeatEvent): void {
    if ("event" in message) {
      for (const listener of this.repeatListeners) listener(message.outcome);
      return;
    }
    const waiter = this.pending.get(message.id);
    if (waiter === undefined) return;
    this.pending.delete(message.id);
    if (message.ok) waiter.resolve(message.result);
    else waiter.reject(new Error(`agent ${this.name}: ${message.error}`));
  }
}

/** Returns the path of the agent program beside this module: `.js` when built, `.ts` in the sources. */
function agentProgramPath(): string {
  const own = fileURLToPath(import.meta.url);
  return fileURLToPath(new URL(`./agent-program${extname(own)}`, import.meta.url));
}
