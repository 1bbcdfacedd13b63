/** The log formats the scanner reads. */
export const logFormats = ["cloudtrail", "kubernetes", "github", "writ", "generic"] as const;
export type LogFormat = (typeof logFormats)[number];

/** Where an event sits in its input: file path (or `-` for standard input) and 1-based line. */
export interface Location {
  file: string;
  line: number;
}

/**
 * How a credential is named in findings: by the log's public identifier (`id`) or, when the log only
 * holds a secret-like value, by an HMAC-SHA-256 fingerprint under the installation's scan key.
 */
export type CredentialNaming = "id" | "fingerprint";

/** Who a credential belongs to, as far as the log tells. */
export type PrincipalKind = "human" | "workload" | "service" | "unknown";

/** One use of one credential, normalised from any log format. */
export interface UsageEvent {
  format: LogFormat;
  /** Stable key of the credential, such as `aws:AKIA…` or `k8s:jti:…`; never a secret. */
  credential: string;
  naming: CredentialNaming;
  /** What kind of credential: `aws-access-key`, `aws-session`, `k8s-token`, `github-token`, … */
  credentialKind: string;
  /** True for keys that do not expire on their own, such as AWS AKIA keys. */
  longLived: boolean;
  principal: string;
  principalKind: PrincipalKind;
  /** The source address, absent for the cloud's own internal callers. */
  source?: string;
  userAgent?: string;
  /** The tool family derived from the user agent, such as `terraform` or `aws-cli`. */
  toolchain?: string;
  host?: string;
  namespace?: string;
  repository?: string;
  environment?: string;
  /** Pod or instance the credential was issued to, when the log names it. */
  boundTo?: string;
  /** Milliseconds since the Unix epoch; NaN when the event has no usable time. */
  time: number;
  /** The service or tool called, such as `s3.amazonaws.com` or `pods`. */
  service?: string;
  action?: string;
  /** True when the caller is the cloud provider itself, which is never counted as a workload. */
  internal: boolean;
  location: Location;
}

export const severities = ["info", "low", "medium", "high", "critical"] as const;
export type Severity = (typeof severities)[number];

/** The OWASP Non-Human Identities Top 10 (2025) items the scanner can evidence. */
export const owaspNhi = {
  NHI1: "NHI1:2025 Improper Offboarding",
  NHI7: "NHI7:2025 Long-Lived Secrets",
  NHI8: "NHI8:2025 Environment Isolation",
  NHI9: "NHI9:2025 NHI Reuse",
  NHI10: "NHI10:2025 Human Use of NHI",
} as const;
export type OwaspNhiId = keyof typeof owaspNhi;

export const findingKinds = [
  "shared-credential",
  "credential-outside-workload",
  "human-credential-automation",
  "automation-credential-interactive",
  "long-lived-credential",
  "cross-environment-credential",
  "unused-credential",
] as const;
export type FindingKind = (typeof findingKinds)[number];

/** A count with the first and last time a value was seen. */
export interface Seen {
  value: string;
  count: number;
  first: number;
  last: number;
}

/** One workload's use of a credential: the evidence behind findings and plans. */
export interface WorkloadUse {
  id: string;
  toolchain: string;
  source?: string;
  namespace?: string;
  repository?: string;
  environment?: string;
  count: number;
  first: number;
  last: number;
  /** `service action` pairs seen, with counts. */
  actions: Seen[];
  location: Location;
  /** Events per minute, for the timeline chart; `time` is the minute's start in ms. */
  timeline: { time: number; count: number }[];
}

export interface Finding {
  kind: FindingKind;
  severity: Severity;
  owasp: OwaspNhiId[];
  credential: string;
  naming: CredentialNaming;
  credentialKind: string;
  principal: string;
  /** One line without log-derived markup; values are in `arguments`. */
  message: string;
  /** Log-derived values that the message refers to, in order. */
  arguments: string[];
  workloads: WorkloadUse[];
  location: Location;
}

/** A line or record that could not be read, counted and reported but never fatal. */
export interface Malformed {
  location: Location;
  reason: string;
}

export function severityRank(severity: Severity): number {
  return severities.indexOf(severity);
}
