import type { UsageEvent } from "../model.js";
import { parseLogTime } from "../time.js";
import { toolchainOf } from "../toolchain.js";
import { field, text, type LogParser } from "./parser.js";

/** Source addresses that are the cloud itself acting, never a workload's address. */
export function isAwsInternalSource(source: string | undefined): boolean {
  return source === undefined || source === "AWS Internal" || source.endsWith(".amazonaws.com");
}

/** User agents of the cloud calling on a caller's behalf; the AWS consoles are a person, not this. */
function isAwsInternalAgent(userAgent: string | undefined): boolean {
  if (userAgent === undefined) return false;
  return (
    userAgent === "AWS Internal" ||
    (/^[a-z0-9.-]+\.amazonaws\.com$/.test(userAgent) && !userAgent.startsWith("console."))
  );
}

/** An EC2 instance id, which AWS uses as the session name of instance-profile credentials. */
const instanceIdPattern = /^i-[0-9a-fA-F]{8,17}$/;

/**
 * AWS CloudTrail events. The credential is `userIdentity.accessKeyId`: AKIA keys are long-term, ASIA
 * keys are session keys. Instance-profile sessions get a new key every few hours, so they are keyed
 * by role and session name (the instance id) instead.
 */
export const cloudTrailParser: LogParser = {
  format: "cloudtrail",

  matches(record) {
    return typeof record.eventSource === "string" && typeof record.eventName === "string";
  },

  normalise(record, location) {
    const identity = record.userIdentity;
    if (identity === null || typeof identity !== "object") return "CloudTrail event without userIdentity";
    const type = text(field(identity, "type"));
    const accessKeyId = text(field(identity, "accessKeyId"));
    if (accessKeyId === undefined || type === "AWSService") return undefined;

    const arn = text(field(identity, "arn")) ?? "";
    const source = text(record.sourceIPAddress);
    const userAgent = text(record.userAgent);
    const time = parseLogTime(record.eventTime ?? record["@timestamp"]);
    if (Number.isNaN(time)) return "CloudTrail event without a valid eventTime or @timestamp";

    const roleSession = /:assumed-role\/([^/]+)\/(.+)$/.exec(arn);
    const instance =
      roleSession !== null && instanceIdPattern.test(roleSession[2] ?? "") ? roleSession : null;
    const principal =
      roleSession !== null
        ? `${roleSession[1]}/${roleSession[2]}`
        : (text(field(identity, "userName")) ?? (arn || accessKeyId));

    const event: UsageEvent = {
      format: "cloudtrail",
      credential: instance !== null ? `aws:instance-session:${principal}` : `aws:${accessKeyId}`,
      naming: "id",
      credentialKind:
        instance !== null
          ? "aws-instance-session"
          : accessKeyId.startsWith("AKIA")
            ? "aws-access-key"
            : "aws-session",
      longLived: accessKeyId.startsWith("AKIA"),
      principal,
      principalKind: type === "Root" ? "human" : type === "AssumedRole" ? "workload" : "unknown",
      userAgent,
      toolchain: toolchainOf(userAgent),
      time,
      internal:
        isAwsInternalSource(source) ||
        isAwsInternalAgent(userAgent) ||
        field(identity, "invokedBy") !== undefined,
      location,
    };
    if (!isAwsInternalSource(source) && source !== undefined) event.source = source;
    if (instance !== null) event.boundTo = instance[2] as string;
    const service = text(record.eventSource);
    const action = text(record.eventName);
    if (service !== undefined) event.service = service;
    if (action !== undefined) event.action = action;
    return event;
  },
};
