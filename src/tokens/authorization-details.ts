import { WritError } from "../errors/writ-error.js";

/** The authorization details type writ issues and accepts (RFC 9396). */
export const agentTaskType = "agent_task";

/** A request for task authority: the task, and optionally a subset of its actions. */
export interface AgentTaskRequest {
  type: typeof agentTaskType;
  task_id: string;
  /** Action names of the requested tool to narrow the token to; all of the task's when absent. */
  actions?: string[];
}

/** The authorization details of an issued token. */
export interface AgentTaskGrant {
  type: typeof agentTaskType;
  task_id: string;
  locations: string[];
  actions: string[];
  environment: string;
}

/** The largest `authorization_details` parameter accepted, in characters. */
const maxLength = 8192;

/**
 * Parses the `authorization_details` parameter: a JSON array holding exactly one `agent_task` object.
 * Anything else is `invalid_authorization_details`.
 */
export function parseAgentTaskRequest(value: string | undefined): AgentTaskRequest {
  if (value === undefined) throw detailsError("authorization_details naming the task is required");
  if (value.length > maxLength)
    throw detailsError(`authorization_details is longer than ${maxLength} characters`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw detailsError("authorization_details is not valid JSON");
  }
  if (!Array.isArray(parsed)) throw detailsError("authorization_details must be a JSON array");
  if (parsed.length !== 1)
    throw detailsError("authorization_details must hold exactly one agent_task object");
  const entry = parsed[0] as Record<string, unknown>;
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw detailsError("authorization_details entries must be objects");
  }
  if (entry.type !== agentTaskType)
    throw detailsError(`unknown authorization_details type "${String(entry.type)}"`);
  if (typeof entry.task_id !== "string" || entry.task_id.length === 0 || entry.task_id.length > 128) {
    throw detailsError("agent_task needs a task_id string");
  }
  const allowed = new Set(["type", "task_id", "actions", "locations"]);
  const unknown = Object.keys(entry).find((key) => !allowed.has(key));
  if (unknown !== undefined) throw detailsError(`agent_task does not take "${unknown}"`);
  const request: AgentTaskRequest = { type: agentTaskType, task_id: entry.task_id };
  if (entry.actions !== undefined) {
    if (
      !Array.isArray(entry.actions) ||
      entry.actions.length === 0 ||
      !entry.actions.every((a) => typeof a === "string")
    ) {
      throw detailsError("agent_task actions must be a non-empty array of strings");
    }
    request.actions = [...new Set(entry.actions as string[])];
  }
  return request;
}

function detailsError(description: string): WritError {
  return new WritError("invalid_authorization_details", description);
}
