import { createHash } from "node:crypto";
import type { Finding, WorkloadUse } from "../model.js";
import type { ScanResult } from "../scan.js";
import { formatMessage } from "./table.js";

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

const style = `body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
.critical{color:#a00;font-weight:bold}.high{color:#c40}.medium{color:#960}
svg{border:1px solid #ddd;background:#fff}.legend span{margin-right:1em}
${palette.map((color, index) => `.s${index}{color:${color}}`).join("")}`;

/**
 * Highlights a series when its legend entry is hovered. It reads nothing from the log: the series
 * are found by their `data-series` index.
 */
const script = `document.body.dataset.ready="1";for(const l of document.querySelectorAll("[data-legend]")){const s=document.querySelectorAll('[data-series="'+l.dataset.legend+'"]');l.addEventListener("mouseenter",()=>s.forEach(e=>e.setAttribute("stroke-width","4")));l.addEventListener("mouseleave",()=>s.forEach(e=>e.setAttribute("stroke-width","2")));}`;

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("base64");
}

/** One SVG polyline per workload: events per minute over the credential's window. */
function timeline(workloads: WorkloadUse[]): string {
  const width = 720;
  const height = 160;
  const times = workloads.flatMap((workload) => workload.timeline.map((point) => point.time));
  if (times.length === 0) return "";
  const start = Math.min(...times);
  const end = Math.max(...times);
  const peak = Math.max(1, ...workloads.flatMap((workload) => workload.timeline.map((point) => point.count)));
  const x = (time: number): number =>
    end === start ? width / 2 : ((time - start) / (end - start)) * (width - 20) + 10;
  const y = (count: number): number => height - 10 - (count / peak) * (height - 20);
  const series = workloads.map((workload, index) => {
    const points = workload.timeline.map(
      (point) => `${x(point.time).toFixed(1)},${y(point.count).toFixed(1)}`,
    );
    if (points.length === 1) points.push(points[0] as string);
    return `<polyline class="series" data-series="${index}" fill="none" stroke-width="2" stroke="${palette[index % palette.length]}" points="${points.join(" ")}"><title>${escapeHtml(workload.id)}</title></polyline>`;
  });
  const legend = workloads
    .map(
      (workload, index) =>
        `<span data-legend="${index}" class="s${index % palette.length}">&#9632; ${escapeHtml(workload.id)} (${workload.count})</span>`,
    )
    .join("");
  return `<svg role="img" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${series.join("")}</svg>
<div class="legend">${legend}</div><p>${escapeHtml(new Date(start).toISOString())} to ${escapeHtml(new Date(end).toISOString())}</p>`;
}

function findingSection(finding: Finding): string {
  const rows = finding.workloads
    .map(
      (workload) =>
        `<tr><td>${escapeHtml(workload.id)}</td><td>${workload.count}</td><td>${escapeHtml(new Date(workload.first).toISOString())}</td><td>${escapeHtml(new Date(workload.last).toISOString())}</td><td>${escapeHtml(`${workload.location.file}:${workload.location.line}`)}</td></tr>`,
    )
    .join("");
  const chart =
    finding.kind === "shared-credential" ? `<div class="chart">${timeline(finding.workloads)}</div>` : "";
  return `<section class="finding" data-kind="${escapeHtml(finding.kind)}">
<h3><span class="${escapeHtml(finding.severity)}">${escapeHtml(finding.severity)}</span> ${escapeHtml(finding.kind)} ${escapeHtml(finding.owasp.join(" "))}</h3>
<p>${escapeHtml(formatMessage(finding))}</p>
${rows === "" ? "" : `<table><tr><th>workload</th><th>events</th><th>first</th><th>last</th><th>first seen at</th></tr>${rows}</table>`}
${chart}</section>`;
}

/**
 * Renders a self-contained HTML report. Every log-derived value is escaped, and the
 * Content-Security-Policy admits only this file's own style and script, by hash, so markup that an
 * attacker placed in a log field can neither load nor run anything.
 */
export function renderHtml(result: ScanResult): string {
  const csp = `default-src 'none'; style-src 'sha256-${sha256(style)}'; script-src 'sha256-${sha256(script)}'; img-src 'none'; base-uri 'none'; form-action 'none'`;
  const malformed = result.malformed
    .map(
      (entry) =>
        `<li>${escapeHtml(`${entry.location.file}:${entry.location.line}`)}: ${escapeHtml(entry.reason)}</li>`,
    )
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">
<title>writ scan report</title><style>${style}</style></head>
<body><h1>writ scan report</h1>
<p>${result.findings.length} findings in ${result.records} records from ${result.files.length} files; ${result.malformedCount} malformed.</p>
${result.findings.map(findingSection).join("\n")}
${malformed === "" ? "" : `<h2>Malformed records</h2><ul>${malformed}</ul>`}
<script>${script}</script></body></html>
`;
}
