import type { AuditRecord } from "../chain.js";
import { ocsfUser, toolOfResource } from "./ocsf-identity.js";

/** The OCSF class and activity of one event, with the members specific to that class. */
export interface OcsfClassEvent {
  class: OcsfClass;
  activity: { id: number; name: string };
  /** OCSF profiles the class members rely on, listed in `metadata.profiles`. */
  profiles: string[];
  members: Record<string, unknown>;
}

export interface OcsfClass {
  class_uid: number;
  class_name: string;
  category_uid: number;
  category_name: string;
}

// Class and activity ids of OCSF 1.3.0 (events/iam/authentication.json, events/iam/entity_management.json,
// events/application/api.json and events/base_event.json).
export const authenticationClass: OcsfClass = {
  class_uid: 3002,
  class_name: "Authentication",
  category_uid: 3,
  category_name: "Identity & Access Management",
};
export const apiActivityClass: OcsfClass = {
  class_uid: 6003,
  class_name: "API Activity",
  category_uid: 6,
  category_name: "Application Activity",
};
export const entityManagementClass: OcsfClass = {
  class_uid: 3004,
  class_name: "Entity Management",
  category_uid: 3,
  category_name: "Identity & Access Management",
};
export const baseEventClass: OcsfClass = {
  class_uid: 0,
  class_name: "Base Event",
  category_uid: 0,
  category_name: "Uncategorized",
};

const logon = { id: 1, name: "Logon" };
const logoff = { id: 2, name: "Logoff" };
export const create = { id: 1, name: "Create" };
export const read = { id: 2, name: "Read" };
export const update = { id: 3, name: "Update" };
export const remove = { id: 4, name: "Delete" };

/** The OCSF `auth_protocol_id` of OAuth 2.0, the protocol of every writ token. */
const oauth2 = { auth_protocol_id: 6, auth_protocol: "OAUTH 2.0" };

/** The broker as the OCSF `service` a token is issued, refused or revoked by. */
const brokerService = { name: "writ" };

/** Returns `value` when it is a non-empty string, else undefined. */
export const text = (value: unknown): string | undefined =>
  typeof value === "string" && value !== "" ? value : undefined;

/**
 * Maps a token issuance, refusal or revocation, a task end or an agent revocation to Authentication
 * (3002): issued and refused tokens are Logon, the others Logoff. `user` is the identity whose
 * credential it is, `actor` the identity that acted. Returns undefined for any other kind.
 */
export function authenticationEvent(
  record: AuditRecord,
  taskSubject: (taskId: string) => string | undefined,
): OcsfClassEvent | undefined {
  const data = record.data;
  const actor = { user: ocsfUser(record.actor) };
  const event = (activity: typeof logon, user: string, members: Record<string, unknown>): OcsfClassEvent => ({
    class: authenticationClass,
    activity,
    profiles: [],
    members: { user: ocsfUser(user), actor, ...members },
  });

  switch (record.kind) {
    case "token.issued": {
      const audience = text(data.aud);
      return event(logon, record.actor, {
        ...oauth2,
        service:
          audience === undefined
            ? brokerService
            : { uid: audience, name: toolOfResource(audience) ?? "writ" },
        session: {
          uid: record.jti ?? undefined,
          created_time: record.time,
          expiration_time: typeof data.exp === "number" ? data.exp * 1000 : undefined,
          credential_uid: text(data.jkt),
        },
      });
    }
    case "token.refused":
      return event(logon, record.actor, { ...oauth2, service: brokerService });
    case "token.revoked":
      return event(logoff, text(data.subject) ?? record.actor, {
        ...oauth2,
        service: brokerService,
        ...(record.jti === null ? {} : { session: { uid: record.jti } }),
      });
    case "agent.revoked":
      return event(logoff, text(data.agent) ?? record.actor, { service: brokerService });
    case "task.ended":
    case "task.revoked":
    case "task.expired":
      return event(logoff, (record.task_id === null ? undefined : taskSubject(record.task_id)) ?? "unknown", {
        service: brokerService,
      });
    default:
      return undefined;
  }
}

/** Builds `src_endpoint` from what the decision recorded, or a `name` of `unknown` when it recorded nothing. */
function sourceEndpoint(ip: string | undefined, jkt: string | undefined): Record<string, string> {
  if (ip === undefined && jkt === undefined) return { name: "unknown" };
  return { ...(ip === undefined ? {} : { ip }), ...(jkt === undefined ? {} : { uid: jkt }) };
}

/**
 * Maps a gateway decision (`tool_call.allowed`, `denied`, `held` or `failed`) to API Activity
 * (6003). The activity follows the HTTP method, or the MCP method for an MCP tool.
 * `actor.authorizations` contains the decision, one entry per deciding policy.
 */
export function apiActivityEvent(record: AuditRecord): OcsfClassEvent | undefined {
  if (!record.kind.startsWith("tool_call.")) return undefined;
  const data = record.data;
  const tool = text(data.tool);
  const method = text(data.method);
  const mcpMethod = text(data.mcp_method);
  const path = text(data.path);
  const jkt = text(data.jkt);
  const decision = text(data.decision) ?? (record.kind === "tool_call.allowed" ? "allow" : "deny");
  const policies = Array.isArray(data.policies) ? data.policies.filter((id) => typeof id === "string") : [];

  const members: Record<string, unknown> = {
    actor: {
      user: ocsfUser(record.actor),
      authorizations:
        policies.length === 0
          ? [{ decision }]
          : policies.map((id) => ({ decision, policy: { uid: id, name: id, is_applied: true } })),
      ...(record.jti === null ? {} : { session: { uid: record.jti, credential_uid: jkt } }),
    },
    api: {
      operation: text(data.action) ?? mcpMethod ?? method ?? "unknown",
      ...(tool === undefined ? {} : { service: { name: tool } }),
      ...(text(data.decision_id) === undefined ? {} : { request: { uid: data.decision_id } }),
    },
    // The caller's socket address, recorded since decisions carried `client_ip`, and the thumbprint of
    // the DPoP key the request was bound to, when there was a token. Older events have neither or one.
    src_endpoint: sourceEndpoint(text(data.client_ip), jkt),
  };
  if (path !== undefined) {
    members.resources = [
      {
        name: path,
        type: mcpMethod === undefined ? "HTTP path" : "MCP target",
        ...(tool === undefined ? {} : { namespace: tool }),
      },
    ];
  }
  return { class: apiActivityClass, activity: apiActivity(method, mcpMethod), profiles: [], members };
}

function apiActivity(
  method: string | undefined,
  mcpMethod: string | undefined,
): { id: number; name: string } {
  if (mcpMethod !== undefined) {
    // Reading an MCP resource or prompt, and listing, are reads. Calling an MCP tool creates, updates
    // or deletes nothing that writ can tell, so it is Other.
    return mcpMethod === "tools/call" ? { id: 99, name: "Call" } : read;
  }
  switch (method?.toUpperCase()) {
    case "POST":
      return create;
    case "PUT":
    case "PATCH":
      return update;
    case "DELETE":
      return remove;
    case "GET":
    case "HEAD":
    case "OPTIONS":
      return read;
    default:
      return { id: 99, name: method ?? "Other" };
  }
}

/** Maps any other event to Base Event with activity Other, named by its kind. */
export function baseEvent(record: AuditRecord): OcsfClassEvent {
  return { class: baseEventClass, activity: { id: 99, name: record.kind }, profiles: [], members: {} };
}
