import type { AuditRecord } from "../chain.js";
import {
  create,
  entityManagementClass,
  read,
  remove,
  text,
  update,
  type OcsfClassEvent,
} from "./ocsf-classes.js";
import { ocsfUser } from "./ocsf-identity.js";

/** Entity Management activities for the past-tense verb of an event kind. */
const entityActivities: Record<string, { id: number; name: string }> = {
  created: create,
  requested: create,
  started: create,
  delegated: create,
  released: read,
  updated: update,
  joined: update,
  voted: update,
  granted: update,
  rejected: update,
  used: update,
  noted: update,
  rotated: update,
  removed: remove,
  deleted: remove,
  enabled: { id: 8, name: "Enable" },
  disabled: { id: 9, name: "Disable" },
  activated: { id: 10, name: "Activate" },
  ended: { id: 11, name: "Deactivate" },
  expired: { id: 11, name: "Deactivate" },
  cancelled: { id: 11, name: "Deactivate" },
};

/**
 * Maps a change to something writ manages (an agent, person, gateway, tool, policy, secret, task,
 * approval, break-glass window and so on) to Entity Management (3004). The kind's verb picks the
 * activity and its noun the entity. Returns undefined for a verb without an activity.
 */
export function entityManagementEvent(record: AuditRecord): OcsfClassEvent | undefined {
  const dot = record.kind.lastIndexOf(".");
  const noun = record.kind.slice(0, dot);
  const activity = entityActivities[record.kind.slice(dot + 1)];
  if (dot < 1 || activity === undefined) return undefined;
  const comment = text(record.data.note) ?? text(record.data.reason);
  return {
    class: entityManagementClass,
    activity,
    // OCSF 1.3.0 gives Entity Management its `actor` through the host profile.
    profiles: ["host"],
    members: {
      entity: managedEntity(noun, record),
      actor: { user: ocsfUser(record.actor) },
      ...(comment === undefined ? {} : { comment }),
    },
  };
}

function managedEntity(noun: string, record: AuditRecord): Record<string, unknown> {
  const data = record.data;
  switch (noun) {
    case "agent":
    case "human": {
      const id = text(data[noun]) ?? record.actor;
      const user = ocsfUser(id);
      return { type_id: 2, type: "User", uid: id, name: user.name, user };
    }
    case "policy": {
      const id = text(data.policy_id) ?? "unknown";
      return { type_id: 5, type: "Policy", uid: id, name: id, policy: { uid: id, name: id } };
    }
    case "task":
      return other("Task", record.task_id ?? undefined);
    case "signing_key":
      return other("Signing key", text(data.kid));
    case "credential":
      return other("Secret", text(data.secret));
    case "breakglass":
      return other("Break-glass window", text(data.breakglass_id));
    default: {
      const label = noun.charAt(0).toUpperCase() + noun.slice(1).replaceAll("_", " ");
      return other(label, text(data[`${noun}_id`]) ?? text(data[noun]));
    }
  }
}

/** Describes a managed entity of a type OCSF has no id for. `type` names it, and `name` repeats the type when there is no id. */
function other(type: string, id: string | undefined): Record<string, unknown> {
  return id === undefined ? { type_id: 99, type, name: type } : { type_id: 99, type, uid: id, name: id };
}
