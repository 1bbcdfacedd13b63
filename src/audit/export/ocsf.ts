import { createRequire } from "node:module";
import type { AuditRecord } from "../chain.js";
import { apiActivityEvent, authenticationEvent, baseEvent, type OcsfClassEvent } from "./ocsf-classes.js";
import { entityManagementEvent } from "./ocsf-entities.js";

/**
 * The OCSF schema version every exported event declares in `metadata.version`. The JSON Schemas in
 * test/data/ocsf/<version>/ are compiled for this version, and a change of version needs new ones.
 */
export const ocsfVersion = "1.3.0";

/** One OCSF event as a JSON object. */
export type OcsfEvent = Record<string, unknown>;

/** Returns the SPIFFE ID of the identity whose authority a task uses, when the task is known. */
export type TaskSubjectLookup = (taskId: string) => string | undefined;

// package.json is three levels up from both src/audit/export/ and dist/audit/export/.
const packageVersion = (createRequire(import.meta.url)("../../../package.json") as { version: string })
  .version;

const product = { name: "writ", vendor_name: "writ", version: packageVersion };

/** OCSF `severity_id` values (OCSF 1.3.0 base event). */
const severities = {
  informational: { severity_id: 1, severity: "Informational" },
  low: { severity_id: 2, severity: "Low" },
  high: { severity_id: 4, severity: "High" },
} as const;

/**
 * Converts one audit event to an OCSF event. Every event carries the OCSF version, the product, and
 * the writ sequence number as `metadata.sequence`, so a consumer can resume after it. The event hash
 * is `metadata.uid` and the task id `metadata.correlation_uid`. The whole stored event is under
 * `unmapped.writ`, so the mapping loses nothing of the audit record.
 */
export function toOcsfEvent(record: AuditRecord, taskSubject: TaskSubjectLookup): OcsfEvent {
  const mapped: OcsfClassEvent =
    authenticationEvent(record, taskSubject) ??
    apiActivityEvent(record) ??
    entityManagementEvent(record) ??
    baseEvent(record);
  const outcome = outcomeOf(record);
  const error = typeof record.data.error === "string" ? record.data.error : undefined;
  // A refused token explains itself in `description`, a decision in `reason`.
  const detail = [record.data.description, record.data.reason].find((value) => typeof value === "string");

  return {
    activity_id: mapped.activity.id,
    activity_name: mapped.activity.name,
    category_uid: mapped.class.category_uid,
    category_name: mapped.class.category_name,
    class_uid: mapped.class.class_uid,
    class_name: mapped.class.class_name,
    type_uid: mapped.class.class_uid * 100 + mapped.activity.id,
    type_name: `${mapped.class.class_name}: ${mapped.activity.name}`,
    time: record.time,
    ...severityOf(record, outcome),
    ...outcome,
    ...(error === undefined ? {} : { status_code: error }),
    ...(detail === undefined ? {} : { status_detail: detail }),
    message: `${record.kind} by ${record.actor}`,
    metadata: {
      version: ocsfVersion,
      product,
      uid: record.hash,
      sequence: record.seq,
      log_name: "audit",
      logged_time: record.time,
      ...(record.task_id === null ? {} : { correlation_uid: record.task_id }),
      ...(mapped.profiles.length === 0 ? {} : { profiles: mapped.profiles }),
    },
    ...mapped.members,
    unmapped: { writ: record },
  };
}

type Outcome = { status_id: number; status: string };

function outcomeOf(record: AuditRecord): Outcome {
  if (record.kind === "tool_call.held") return { status_id: 99, status: "Held" };
  if (
    record.kind === "token.refused" ||
    record.kind === "tool_call.denied" ||
    record.kind.endsWith(".failed")
  ) {
    return { status_id: 2, status: "Failure" };
  }
  return { status_id: 1, status: "Success" };
}

/** Break-glass activity is High, failures and held calls Low, everything else Informational. */
function severityOf(record: AuditRecord, outcome: Outcome): (typeof severities)[keyof typeof severities] {
  const breakglass =
    record.kind.startsWith("breakglass.") ||
    (record.kind === "tool_call.allowed" && typeof record.data.breakglass_id === "string");
  if (breakglass) return severities.high;
  return outcome.status_id === 1 ? severities.informational : severities.low;
}
