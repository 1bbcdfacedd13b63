import type { JWK } from "jose";

/**
 * The messages between the demo's operator and an agent process, sent over the Node.js IPC channel
 * as JSON. Each request carries an id, and the agent responds with one reply carrying the same id.
 * The agent's private key never crosses this channel. The delegation ticket and the agent's own
 * tokens do, so that the operator can hand a ticket to the sub-agent and introspect tokens at the end.
 */
export type AgentRequest =
  | { id: number; op: "identity" }
  | { id: number; op: "configure"; issuer: string; clientId: string; taskId: string }
  | { id: number; op: "mcp_call"; tool: string; name: string; arguments: Record<string, unknown> }
  | { id: number; op: "http_call"; tool: string; method: string; path: string; body?: string }
  | { id: number; op: "delegate"; tool: string; delegate: string; actions: string[]; intent: string }
  | { id: number; op: "redeem"; tool: string; ticket: string }
  | { id: number; op: "repeat"; tool: string; method: string; path: string; intervalMs: number }
  | { id: number; op: "postgres_query"; system: string; sql: string; reuseCredential: boolean }
  | { id: number; op: "tokens" }
  | { id: number; op: "close" };

export type AgentReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** The outcome of one tool call as the agent saw it. */
export interface CallOutcome {
  ok: boolean;
  /** The gateway's HTTP status; 0 when no response came back. */
  status: number;
  /** The decision id the gateway returned, in `writ-decision-id` or in a denial's body. */
  decisionId?: string;
  /** For MCP calls: the JSON-RPC error code of a failed call. */
  rpcCode?: number;
  /** A short excerpt of the result, or why the call failed. */
  detail: string;
  /** Epoch milliseconds at which the call started and ended, by the agent's clock. */
  startedAtMs: number;
  endedAtMs: number;
}

/** The outcome of one SQL query, made as the task's own role on a system. */
export interface SqlOutcome extends CallOutcome {
  /** The per-task role the query logged in as. */
  role: string;
}

/** An event an agent sends without a request: the outcome of each call of a `repeat` run. */
export interface RepeatEvent {
  event: "repeat";
  outcome: CallOutcome;
}

/** The reply to `identity`: the public half of the key the agent generated for itself. */
export interface IdentityResult {
  publicJwk: JWK;
}

/** The reply to `delegate`: the ticket for the sub-agent and the delegated task it names. */
export interface DelegationResult {
  ticket: string;
  taskId: string;
}
