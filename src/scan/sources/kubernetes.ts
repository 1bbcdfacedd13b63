import type { PrincipalKind, UsageEvent } from "../model.js";
import { parseLogTime } from "../time.js";
import { toolchainOf } from "../toolchain.js";
import { field, text, type LogParser, type LogRecord } from "./parser.js";

/**
 * Reads one `user.extra` entry. kube-apiserver writes keys such as
 * `authentication.kubernetes.io/credential-id`; some log pipelines rewrite `.` and `/` as
 * `_` and `_slash_`, so both spellings are accepted.
 */
function extra(record: LogRecord, name: string): string | undefined {
  const extras = field(record, "user.extra");
  if (extras === null || typeof extras !== "object") return undefined;
  const entries = extras as Record<string, unknown>;
  const value =
    entries[`authentication.kubernetes.io/${name}`] ?? entries[`authentication_kubernetes_io_slash_${name}`];
  return Array.isArray(value) ? text(value[0]) : text(value);
}

const serviceAccountPattern = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** Control-plane identities (nodes, controllers, the API server, EKS managers) are the cluster acting on itself. */
function isControlPlane(username: string): boolean {
  if (username.startsWith("eks:")) return true;
  return username.startsWith("system:") && !serviceAccountPattern.test(username);
}

/**
 * Kubernetes audit events (`audit.k8s.io/v1`). A service-account token is keyed by its JTI
 * (`user.extra["authentication.kubernetes.io/credential-id"]`, Kubernetes 1.29 and later), else by
 * the service account. The pod a token is bound to comes from `authentication.kubernetes.io/pod-name`.
 */
export const kubernetesParser: LogParser = {
  format: "kubernetes",

  matches(record) {
    return (
      record.kind === "Event" &&
      (String(record.apiVersion ?? "").startsWith("audit.k8s.io/") ||
        typeof record.auditID === "string" ||
        typeof record.verb === "string")
    );
  },

  normalise(record, location) {
    const username = text(field(record, "user.username"));
    if (username === undefined) return "Kubernetes audit event without user.username";
    if (username === "system:anonymous") return undefined;

    // An event without a time still shows who used which token; only the time-based checks skip it.
    const time = parseLogTime(record.requestReceivedTimestamp ?? record.stageTimestamp ?? record.timestamp);

    const credentialId = extra(record, "credential-id");
    const serviceAccount = serviceAccountPattern.exec(username);
    const pod = extra(record, "pod-name");
    const sources = field(record, "sourceIPs");
    const source = Array.isArray(sources) ? text(sources[0]) : undefined;
    const userAgent = text(record.userAgent);
    const principalKind: PrincipalKind = isControlPlane(username)
      ? "service"
      : serviceAccount !== null
        ? "workload"
        : "human";

    const event: UsageEvent = {
      format: "kubernetes",
      credential: credentialId !== undefined ? `k8s:${credentialId}` : `k8s:${username}`,
      naming: "id",
      credentialKind: serviceAccount !== null ? "k8s-service-account-token" : "k8s-user-credential",
      // A service-account token without a JTI or a bound pod is a legacy secret-based token, which
      // does not expire.
      longLived: serviceAccount !== null && credentialId === undefined && pod === undefined,
      principal: username,
      principalKind,
      userAgent,
      toolchain: toolchainOf(userAgent),
      time,
      internal: principalKind === "service",
      location,
    };
    if (typeof record.verb === "string") event.action = record.verb;
    if (source !== undefined) event.source = source;
    if (pod !== undefined) event.boundTo = pod;
    const namespace = text(field(record, "objectRef.namespace")) ?? serviceAccount?.[1];
    if (namespace !== undefined) event.namespace = namespace;
    const resource = text(field(record, "objectRef.resource"));
    const subresource = text(field(record, "objectRef.subresource"));
    if (resource !== undefined)
      event.service = `k8s-${subresource === undefined ? resource : `${resource}-${subresource}`}`;
    return event;
  },
};
