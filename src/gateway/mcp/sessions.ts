import { randomBytes } from "node:crypto";

/** What a session is bound to: the task, the key its tokens are bound to, and the tool. */
export interface SessionBinding {
  taskId: string;
  jkt: string;
  tool: string;
}

interface Session extends SessionBinding {
  /** Epoch seconds after which the session is unknown. */
  expiresS: number;
}

/** Most sessions held at once per gateway; the oldest are dropped first when it is reached. */
const maxSessions = 10_000;

/**
 * The MCP sessions of one gateway process. A session id names a task's conversation with one tool.
 * It grants nothing by itself, since every request is authenticated and decided again. A request may
 * present it only with a token of the same task and the same key. Requests without a session id
 * are still served, so a gateway restart or a second gateway process costs the agent nothing but a
 * new `initialize`.
 */
export class McpSessions {
  private readonly sessions = new Map<string, Session>();

  /** Opens a session that ends at `expiresS` (the task's deadline) and returns its id. */
  open(binding: SessionBinding, expiresS: number, nowS: number): string {
    this.purge(nowS);
    while (this.sessions.size >= maxSessions) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    const id = randomBytes(18).toString("base64url");
    this.sessions.set(id, { ...binding, expiresS });
    return id;
  }

  /** Returns whether `id` is a live session of this task, key and tool. */
  matches(id: string, binding: SessionBinding, nowS: number): boolean {
    const session = this.sessions.get(id);
    if (session === undefined) return false;
    if (session.expiresS <= nowS) {
      this.sessions.delete(id);
      return false;
    }
    return session.taskId === binding.taskId && session.jkt === binding.jkt && session.tool === binding.tool;
  }

  /** Ends a session; false when no live session of this binding has that id. */
  close(id: string, binding: SessionBinding, nowS: number): boolean {
    if (!this.matches(id, binding, nowS)) return false;
    this.sessions.delete(id);
    return true;
  }

  private purge(nowS: number): void {
    for (const [id, session] of this.sessions) if (session.expiresS <= nowS) this.sessions.delete(id);
  }
}
