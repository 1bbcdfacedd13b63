/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) by self time, per area and per function. An area is
 * a package, a folder of writ's build, Node.js internals, garbage collection or idle time. A third
 * table charges each sample to the innermost writ function on its stack. Time after an `await` inside
 * a package has no writ frame on the stack, so that table lists it as "(outside writ)".
 *
 *   node --import tsx bench/profile-summary.ts FILE.cpuprofile [rows]
 */
import { readFile } from "node:fs/promises";
import { formatNumber } from "./lib/report.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  /** Microseconds between consecutive samples. */
  timeDeltas: number[];
}

const packagePattern = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/;
const buildPattern = /\/dist\/(.*)$/;

/** Names the area a script URL belongs to: a package, a folder of writ's build, or Node.js itself. */
function areaOf(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return "node internals";
  const packageMatch = packagePattern.exec(url);
  if (packageMatch !== null) return packageMatch[1] as string;
  const buildMatch = buildPattern.exec(url);
  if (buildMatch !== null) return `writ ${(buildMatch[1] as string).split("/")[0]}`;
  return url;
}

/** Returns true for a frame of writ's own build, as opposed to a package or Node.js. */
function isWritFrame(url: string): boolean {
  return !packagePattern.test(url) && buildPattern.test(url);
}

/** Labels a frame as `function file:line`, with the file relative to its package or to dist. */
function labelOf(frame: ProfileNode["callFrame"]): string {
  const name = frame.functionName || "(anonymous)";
  if (frame.url === "") return name;
  const packageMatch = packagePattern.exec(frame.url);
  const buildMatch = buildPattern.exec(frame.url);
  const file =
    packageMatch !== null
      ? `${packageMatch[1]}/${packageMatch[2]}`
      : buildMatch !== null
        ? `dist/${buildMatch[1]}`
        : frame.url;
  return `${name} ${file}:${frame.lineNumber + 1}`;
}

function addTo(totals: Map<string, number>, key: string, micros: number): void {
  totals.set(key, (totals.get(key) ?? 0) + micros);
}

function printTop(title: string, totals: Map<string, number>, totalMicros: number, rows: number): void {
  console.log(`\n${title}`);
  const sorted = [...totals].sort((a, b) => b[1] - a[1]).slice(0, rows);
  for (const [key, micros] of sorted) {
    const share = ((micros / totalMicros) * 100).toFixed(1).padStart(5);
    console.log(`${share}%  ${formatNumber(micros / 1000).padStart(7)} ms  ${key}`);
  }
}

async function main(): Promise<void> {
  const [path, rowsText] = process.argv.slice(2);
  if (path === undefined) {
    console.error("usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [rows]");
    process.exitCode = 2;
    return;
  }
  const rows = rowsText === undefined ? 25 : Number(rowsText);
  const profile = JSON.parse(await readFile(path, "utf8")) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);

  // The innermost writ function on each node's stack, which is the code of writ that requested the work.
  const writCallers = new Map<number, string>();
  const writCallerOf = (id: number): string => {
    const known = writCallers.get(id);
    if (known !== undefined) return known;
    const node = nodes.get(id);
    let caller: string;
    if (node === undefined) caller = "(outside writ)";
    else if (isWritFrame(node.callFrame.url)) caller = labelOf(node.callFrame);
    else {
      const parent = parents.get(id);
      caller = parent === undefined ? "(outside writ)" : writCallerOf(parent);
    }
    writCallers.set(id, caller);
    return caller;
  };

  const byArea = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const byWritCaller = new Map<string, number>();
  let totalMicros = 0;
  profile.samples.forEach((id, index) => {
    const micros = profile.timeDeltas[index] ?? 0;
    const frame = nodes.get(id)?.callFrame;
    if (frame === undefined) return;
    totalMicros += micros;
    const area = areaOf(frame.url, frame.functionName);
    addTo(byArea, area, micros);
    addTo(byFunction, labelOf(frame), micros);
    addTo(byWritCaller, writCallerOf(id), micros);
  });

  const busyMicros = totalMicros - (byArea.get("(idle)") ?? 0);
  console.log(
    `${path}: ${formatNumber(totalMicros / 1000)} ms sampled, ${formatNumber(busyMicros / 1000)} ms not idle`,
  );
  printTop("self time by area", byArea, totalMicros, rows);
  printTop("self time by function", byFunction, totalMicros, rows);
  printTop("time by the innermost writ function on the stack", byWritCaller, totalMicros, rows);
}

await main();
