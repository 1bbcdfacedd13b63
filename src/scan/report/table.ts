import { printable, table } from "../../cli/output.js";
import type { Finding } from "../model.js";
import type { ScanResult } from "../scan.js";

/** Fills `{n}` placeholders with the finding's arguments. */
export function formatMessage(finding: Finding): string {
  return finding.message.replace(/\{(\d+)\}/g, (_, index: string) => finding.arguments[Number(index)] ?? "");
}

/**
 * Renders the findings as aligned lines for a terminal. Every log-derived value passes through
 * `printable`, which strips control characters, so a log line cannot drive the terminal.
 */
export function renderTable(result: ScanResult): string[] {
  const lines = table(
    ["SEVERITY", "KIND", "OWASP", "CREDENTIAL", "WORKLOADS", "LOCATION"],
    result.findings.map((finding) => [
      finding.severity,
      finding.kind,
      finding.owasp.join(","),
      finding.credential,
      finding.workloads.length,
      `${finding.location.file}:${finding.location.line}`,
    ]),
  );
  const details = result.findings.map((finding) => `- ${printable(formatMessage(finding))}`);
  const summary = `${result.findings.length} findings in ${result.records} records from ${result.files.length} files; ${result.malformedCount} malformed`;
  const malformed = result.malformed
    .slice(0, 20)
    .map(
      (entry) =>
        `malformed ${printable(entry.location.file)}:${entry.location.line}: ${printable(entry.reason)}`,
    );
  return [...lines, "", ...details, "", summary, ...malformed];
}

/** Draws a progress bar on standard error; used only when standard error is a terminal. */
export function progressBar(bytesRead: number, totalBytes: number): string {
  const width = 30;
  const fraction = totalBytes > 0 ? Math.min(1, bytesRead / totalBytes) : 0;
  const filled = Math.round(fraction * width);
  return `\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${(fraction * 100).toFixed(0)}% ${(bytesRead / 1e6).toFixed(1)} MB`;
}
