import { findingKinds, owaspNhi, type Finding, type Severity } from "../model.js";
import type { ScanResult } from "../scan.js";

const levels: Record<Severity, "error" | "warning" | "note"> = {
  critical: "error",
  high: "error",
  medium: "warning",
  low: "note",
  info: "note",
};

/** The `security-severity` score code-scanning dashboards sort by (0.0 to 10.0). */
const scores: Record<Severity, string> = {
  critical: "9.5",
  high: "8.0",
  medium: "5.5",
  low: "3.0",
  info: "0.0",
};

const descriptions: Record<(typeof findingKinds)[number], string> = {
  "shared-credential": "One credential is used by several distinct workloads.",
  "credential-outside-workload": "A credential bound to one instance or pod is used outside it.",
  "human-credential-automation": "A person's credential drives automation.",
  "automation-credential-interactive": "An automation credential is used interactively by a person.",
  "long-lived-credential": "A credential that does not expire is used by automation.",
  "cross-environment-credential": "One credential is used in several environments.",
  "unused-credential": "A credential has not been used for a long time.",
};

function artifactUri(file: string): string {
  return file === "-" ? "stdin" : file.split("/").map(encodeURIComponent).join("/");
}

function result(finding: Finding): unknown {
  return {
    ruleId: finding.kind,
    level: levels[finding.severity],
    // Log-derived values travel as arguments, never inside the message text, so no viewer renders
    // them as markdown or links.
    message: { text: finding.message, arguments: finding.arguments },
    locations: [
      {
        physicalLocation: {
          artifactLocation: { uri: artifactUri(finding.location.file) },
          region: { startLine: Math.max(1, finding.location.line) },
        },
      },
    ],
    partialFingerprints: { credentialKind: `${finding.kind}/${finding.credential}` },
    properties: {
      severity: finding.severity,
      "security-severity": scores[finding.severity],
      owasp: finding.owasp.map((id) => owaspNhi[id]),
    },
  };
}

/** Renders a SARIF 2.1.0 log with one rule per finding kind and one result per finding. */
export function renderSarif(scanResult: ScanResult, version: string): unknown {
  return {
    $schema: "https://json.schemastore.org/sarif-2.1.0.json",
    version: "2.1.0",
    runs: [
      {
        tool: {
          driver: {
            name: "writ scan",
            version,
            informationUri: "https://owasp.org/www-project-non-human-identities-top-10/",
            rules: findingKinds.map((kind) => ({
              id: kind,
              shortDescription: { text: descriptions[kind] },
            })),
          },
        },
        results: scanResult.findings.map(result),
      },
    ],
  };
}
