import { spawn, type ChildProcess } from "node:child_process";
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

/** How long a stopped server gets between SIGTERM and SIGKILL. */
const killGraceMs = 2_000;

/** How a stdio server process is started: argv, the whole environment, and optionally another user. */
export interface ChildProcessParameters {
  argv: string[];
  /** The complete environment of the process; nothing is inherited from the gateway. */
  env: Record<string, string>;
  cwd: string;
  uid?: number;
  gid?: number;
  /** Receives each line the server writes to stderr. */
  onStderr(line: string): void;
}

/**
 * A client transport over a child process's stdin and stdout, framed as the MCP stdio transport
 * frames messages. Unlike the SDK's own stdio transport it takes a complete environment, a user id,
 * and its own process group, so that stopping it also stops whatever the server started.
 */
export class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private child: ChildProcess | undefined;
  private readonly buffer = new ReadBuffer();
  private exited = false;

  constructor(private readonly parameters: ChildProcessParameters) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const [command, ...args] = this.parameters.argv;
    const child = spawn(command as string, args, {
      env: this.parameters.env,
      cwd: this.parameters.cwd,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
      shell: false,
      ...(this.parameters.uid === undefined ? {} : { uid: this.parameters.uid }),
      ...(this.parameters.gid === undefined ? {} : { gid: this.parameters.gid }),
    });
    this.child = child;
    let stderrTail = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      const lines = (stderrTail + chunk).split("\n");
      stderrTail = lines.pop() ?? "";
      for (const line of lines) if (line !== "") this.parameters.onStderr(line);
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      this.buffer.append(chunk);
      for (;;) {
        let message: JSONRPCMessage | null;
        try {
          message = this.buffer.readMessage();
        } catch (error) {
          this.onerror?.(error as Error);
          continue;
        }
        if (message === null) break;
        this.onmessage?.(message);
      }
    });
    child.stdin?.on("error", (error) => this.onerror?.(error));
    child.on("close", () => {
      this.exited = true;
      this.buffer.clear();
      this.onclose?.();
    });
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    child.on("error", (error) => this.onerror?.(error));
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (stdin === undefined || stdin === null || this.exited)
      throw new Error("the upstream process is not running");
    await new Promise<void>((resolve, reject) => {
      stdin.write(serializeMessage(message), (error) =>
        error === null || error === undefined ? resolve() : reject(error),
      );
    });
  }

  /** Stops the server's whole process group: SIGTERM, then SIGKILL after a grace period. */
  async close(): Promise<void> {
    const child = this.child;
    if (child === undefined || this.exited || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    signalGroup(child.pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(child.pid as number, "SIGKILL"), killGraceMs);
    await exited;
    clearTimeout(timer);
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}
