import { randomBytes } from "node:crypto";

/** The binding of a session: the task, the key its tokens are bound to, and the tool. */
export interface SessionBinding {
  taskId: string;
  jkt: string;
  tool: string;
}

interface Session extends SessionBinding {
  /** Epoch seconds after which the session is forgotten. */
  expiresS: number;
}

/** The state of a presented session id, relative to the request that carries it. */
export type SessionCheck = "match" | "unknown" | "foreign" | "closed";

/** The maximum number of sessions per gateway; past it `initialize` returns no session id. */
const maxSessions = 100_000;
/** The maximum number of sessions per task; a task's oldest session is dropped for its newest. */
const maxSessionsPerTask = 32;
/** Seconds between two sweeps for expired sessions. */
const purgeIntervalS = 10;
/** Closed session ids remembered so that they get 404, oldest forgotten first. */
const maxClosedIds = 10_000;

/**
 * The MCP sessions of one gateway process. A session id names a task's conversation with one tool.
 * It grants nothing by itself, since every request is authenticated and decided again. A request may
 * present a session of this process only with a token of the same task and the same key. An id this
 * process never issued (after a restart, or from another gateway process) is served as if absent, so
 * neither costs a connected client anything.
 */
export class McpSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly perTask = new Map<string, string[]>();
  private readonly closed = new Set<string>();
  private purgedAtS = 0;

  /**
   * Opens a session that ends at `expiresS` (the task's deadline) and returns its id, or undefined when
   * the gateway holds as many as it may. A task's sessions never push out another task's.
   */
  open(binding: SessionBinding, expiresS: number, nowS: number): string | undefined {
    this.purge(nowS);
    const ids = this.perTask.get(binding.taskId) ?? [];
    while (ids.length >= maxSessionsPerTask) this.sessions.delete(ids.shift() as string);
    if (this.sessions.size >= maxSessions) return undefined;
    const id = randomBytes(18).toString("base64url");
    this.sessions.set(id, { ...binding, expiresS });
    ids.push(id);
    this.perTask.set(binding.taskId, ids);
    return id;
  }

  /** Tells whether `id` is a live session of this binding, another's, a closed one, or unknown here. */
  check(id: string, binding: SessionBinding, nowS: number): SessionCheck {
    if (this.closed.has(id)) return "closed";
    const session = this.sessions.get(id);
    if (session === undefined || session.expiresS <= nowS) return "unknown";
    return session.taskId === binding.taskId && session.jkt === binding.jkt && session.tool === binding.tool
      ? "match"
      : "foreign";
  }

  /** Ends a live session of this binding; false when `id` names none. */
  close(id: string, binding: SessionBinding, nowS: number): boolean {
    if (this.check(id, binding, nowS) !== "match") return false;
    this.sessions.delete(id);
    this.closed.add(id);
    if (this.closed.size > maxClosedIds) this.closed.delete(this.closed.values().next().value as string);
    return true;
  }

  /** Forgets expired sessions, at most once every `purgeIntervalS`. */
  private purge(nowS: number): void {
    if (nowS - this.purgedAtS < purgeIntervalS && this.sessions.size < maxSessions) return;
    this.purgedAtS = nowS;
    for (const [id, session] of this.sessions) if (session.expiresS <= nowS) this.sessions.delete(id);
    for (const [taskId, ids] of this.perTask) {
      const live = ids.filter((id) => this.sessions.has(id));
      if (live.length === 0) this.perTask.delete(taskId);
      else this.perTask.set(taskId, live);
    }
  }
}
