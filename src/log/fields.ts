/** Field names of structured log lines, so that every module logs the same ids under the same keys. */
export const logFields = {
  requestId: "request_id",
  taskId: "task_id",
  agentId: "agent_id",
  clientId: "client_id",
  jti: "jti",
  decisionId: "decision_id",
  auditKind: "audit_kind",
  auditSeq: "audit_seq",
  errorCode: "error_code",
  detail: "detail",
} as const;

/**
 * Paths that pino replaces with `[redacted]`: credentials that must never reach a log line even when a
 * whole request or object is logged by mistake.
 */
export const redactedPaths = [
  "req.headers.authorization",
  "req.headers.dpop",
  "req.headers.cookie",
  "headers.authorization",
  "headers.dpop",
  "body.client_assertion",
  "body.assertion",
  "body.subject_token",
  "body.actor_token",
  "body.token",
  "access_token",
  "private_jwk",
  "privateJwk",
  "*.d",
  "*.password",
  "*.secret",
];
