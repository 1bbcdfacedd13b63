import { headerMismatchCode } from "./headers.js";

/**
 * JSON-RPC error codes the gateway puts in MCP responses. The standard ones keep their JSON-RPC
 * meaning; the gateway's own lie in the implementation-defined range -32000 to -32099.
 */
export const mcpErrorCodes = {
  parseError: -32700,
  /** A batch, or a message that is not a JSON-RPC request, notification or response. */
  invalidRequest: -32600,
  /** Denied by policy, or a method the gateway does not relay; `data.decision_id` names the audit event. */
  denied: -32003,
  /** The upstream server failed, timed out or could not be started. */
  upstreamUnavailable: -32004,
  /** An `Mcp-Session-Id` that names no live session of this task and key; the client initializes again. */
  sessionNotFound: -32001,
  /** The 2026-07-28 revision's `HeaderMismatch`. */
  headerMismatch: headerMismatchCode,
} as const;
