/**
 * `scan_throughput`: how fast `writ scan` reads CloudTrail, in MB/s, against `JSON.parse` of the same
 * bytes in the same run, and the scanner's peak RSS at two input sizes to show that memory stays flat.
 * The input is the Invictus CloudTrail set, hard-linked (or copied) into a temporary folder until it
 * reaches WRIT_BENCH_SCAN_MB megabytes (default 500). The small run uses a fifth of that.
 */
import { fork } from "node:child_process";
import { once } from "node:events";
import { copyFile, link, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Metric, MetricResult } from "./lib/metric.js";
import { positiveIntegerSetting } from "./lib/settings.js";
import { roundSignificant } from "./lib/stats.js";
import { sharedDataDir } from "../test/support/shared-data.js";

const invictus = join(sharedDataDir(), "invictus-aws-dataset", "CloudTrail");
const self = fileURLToPath(import.meta.url);
const megabyte = 1_000_000;

interface ChildReport {
  bytes: number;
  seconds: number;
  records: number;
  maxRssBytes: number;
}

/** Fills `folder` with copies of the Invictus files until it contains at least `targetBytes`. */
async function buildInput(folder: string, targetBytes: number): Promise<number> {
  await mkdir(folder, { recursive: true });
  const names = (await readdir(invictus)).filter((name) => name.endsWith(".json")).sort();
  let total = 0;
  for (let copy = 0; total < targetBytes; copy += 1) {
    for (const name of names) {
      const source = join(invictus, name);
      const target = join(folder, `${String(copy).padStart(4, "0")}-${name}`);
      await link(source, target).catch(() => copyFile(source, target));
      total += (await stat(source)).size;
    }
  }
  return total;
}

/** Reads and parses every file of `folder` whole, the baseline a streaming scanner is held to. */
async function jsonParseSeconds(folder: string): Promise<number> {
  const files = (await readdir(folder)).sort();
  const started = process.hrtime.bigint();
  let records = 0;
  for (const file of files) {
    const parsed = JSON.parse(await readFile(join(folder, file), "utf8")) as { Records: unknown[] };
    records += parsed.Records.length;
  }
  if (records === 0) throw new Error("the benchmark input has no records");
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Scans `folder` in a fresh process, so its peak RSS belongs to this scan alone. */
async function scanInChild(folder: string): Promise<ChildReport> {
  const child = fork(self, ["--child", folder], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const [report] = (await once(child, "message")) as [ChildReport];
  await once(child, "exit");
  return report;
}

async function childMain(folder: string): Promise<void> {
  const { scan } = await import("../src/scan/scan.js");
  const started = process.hrtime.bigint();
  const result = await scan({ inputs: [folder], keyFile: join(tmpdir(), "writ-bench-unused-scan-key") });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const report: ChildReport = {
    bytes: result.bytesRead,
    seconds,
    records: result.records,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  process.send?.(report);
}

export const scanThroughput: Metric = {
  name: "scan_throughput",
  summary: "writ scan over repeated Invictus CloudTrail, MB/s against JSON.parse, and peak RSS",
  async run(): Promise<MetricResult> {
    const largeBytes = positiveIntegerSetting("WRIT_BENCH_SCAN_MB", 500) * megabyte;
    const root = await mkdtemp(join(tmpdir(), "writ-bench-scan-"));
    try {
      const small = await buildInput(join(root, "small"), largeBytes / 5);
      const large = await buildInput(join(root, "large"), largeBytes);
      const baselineSeconds = await jsonParseSeconds(join(root, "large"));
      const smallRun = await scanInChild(join(root, "small"));
      const largeRun = await scanInChild(join(root, "large"));
      const scanRate = largeRun.bytes / megabyte / largeRun.seconds;
      const parseRate = large / megabyte / baselineSeconds;
      return {
        name: "scan_throughput",
        value: roundSignificant(scanRate),
        unit: "MB/s",
        baseline: { name: "JSON.parse of whole files", value: roundSignificant(parseRate), unit: "MB/s" },
        ratio: roundSignificant(scanRate / parseRate),
        target: ">= 0.5 of JSON.parse, peak RSS flat from the small to the large input",
        details: {
          large_input_mb: roundSignificant(large / megabyte),
          small_input_mb: roundSignificant(small / megabyte),
          records: largeRun.records,
          peak_rss_small_mib: roundSignificant(smallRun.maxRssBytes / 2 ** 20),
          peak_rss_large_mib: roundSignificant(largeRun.maxRssBytes / 2 ** 20),
        },
      };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  },
};

if (process.argv[2] === "--child" && import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await childMain(process.argv[3] as string);
}
