import { writeFile } from "node:fs/promises";
import { stat } from "node:fs/promises";
import { createInterface } from "node:readline/promises";
import { InvalidArgumentError, type Command } from "commander";
import { loadConfig } from "../../config/config.js";
import { defaultScanKeyPath } from "../../scan/fingerprint.js";
import { logFormats, severities, severityRank, type LogFormat, type Severity } from "../../scan/model.js";
import { buildPlan, type PlanEntry } from "../../scan/plan.js";
import { renderHtml } from "../../scan/report/html.js";
import { renderJson } from "../../scan/report/json.js";
import { renderSarif } from "../../scan/report/sarif.js";
import { progressBar, renderTable } from "../../scan/report/table.js";
import { scan, type ScanResult } from "../../scan/scan.js";
import { readMappingFile, parseMapPairs } from "../../scan/sources/mapping-file.js";
import { listInputFiles } from "../../scan/sources/input.js";
import { emit, parseDuration, printable, collect } from "../output.js";
import { dataDirectory, type GlobalOptions } from "../target.js";
import { applyPlan } from "../../scan/apply.js";
import { writAuditRecords } from "../../scan/sources/writ-store.js";

interface ScanFlags {
  format?: string;
  map?: string[];
  mapping?: string;
  keyFile?: string;
  failOn: string;
  staleAfter: string;
  plan?: boolean;
  apply?: boolean;
  yes?: boolean;
  environment: string;
  sarif?: string;
  html?: string;
  writAudit?: boolean;
}

/** A usage error: exit code 2, like commander's own. */
class UsageError extends Error {}

/** Inputs past this size get a progress bar on a terminal. */
const progressThresholdBytes = 50 * 1024 * 1024;

function choice<T extends string>(allowed: readonly T[], name: string) {
  return (value: string): T => {
    if (!(allowed as readonly string[]).includes(value))
      throw new InvalidArgumentError(`invalid ${name} "${value}": use ${allowed.join(", ")}`);
    return value as T;
  };
}

/** Registers `writ scan`. */
export function registerScanCommand(program: Command): void {
  program
    .command("scan")
    .description("find credentials shared across workloads in audit logs, and plan per-agent identities")
    .argument("[inputs...]", "log files or folders; - for standard input")
    .option(
      "--format <format>",
      `the log format, instead of detecting it: ${logFormats.join(", ")}`,
      choice(logFormats, "format"),
    )
    .option(
      "--map <key=field>",
      "for generic JSON: which field holds credential, actor, source, user_agent, time, action, environment or host; repeat",
      collect,
    )
    .option("--mapping <file>", "for generic JSON: a JSON file mapping those keys to fields")
    .option(
      "--key-file <file>",
      "the HMAC key that fingerprints secret values (default ~/.config/writ/scan-key)",
    )
    .option("--fail-on <severity>", `exit 1 when a finding is at or above: ${severities.join(", ")}`, "high")
    .option(
      "--stale-after <duration>",
      "report credentials last used this long before the logs end, such as 90d",
      "90d",
    )
    .option("--plan", "propose one agent per workload, with its observed tools and a draft Cedar policy")
    .option("--apply", "register the plan's agents, tools and policies (with --plan)")
    .option("--yes", "apply without asking; required when standard input is not a terminal")
    .option("--environment <env>", "the environment of planned agents when the log names none", "default")
    .option("--sarif <file>", "also write a SARIF 2.1.0 log to this file")
    .option("--html <file>", "also write a self-contained HTML report to this file")
    .option("--writ-audit", "also scan the audit log of the data directory (--data)")
    .action(async (inputs: string[], flags: ScanFlags) => {
      const options = program.opts<GlobalOptions>();
      try {
        await runScan(inputs, flags, options);
      } catch (error) {
        process.stderr.write(`writ: ${printable((error as Error).message)}\n`);
        process.exitCode = error instanceof UsageError ? 2 : 1;
      }
    });
}

async function runScan(inputs: string[], flags: ScanFlags, options: GlobalOptions): Promise<void> {
  if (!(severities as readonly string[]).includes(flags.failOn))
    throw new UsageError(`invalid --fail-on "${flags.failOn}": use ${severities.join(", ")}`);
  if (flags.apply === true && flags.plan !== true) throw new UsageError("--apply needs --plan");
  if (inputs.length === 0 && flags.writAudit !== true)
    throw new UsageError("no input: give log files or folders, - for standard input, or --writ-audit");
  let staleAfterSeconds: number;
  try {
    staleAfterSeconds = parseDuration(flags.staleAfter);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  let mapping;
  try {
    mapping =
      flags.mapping !== undefined
        ? await readMappingFile(flags.mapping)
        : flags.map !== undefined
          ? parseMapPairs(flags.map)
          : undefined;
    await listInputFiles(inputs);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const format: LogFormat | undefined =
    (flags.format as LogFormat | undefined) ?? (mapping !== undefined ? "generic" : undefined);

  const totalBytes = await totalSize(inputs);
  const showProgress = process.stderr.isTTY && totalBytes > progressThresholdBytes;
  const result: ScanResult = await scan({
    inputs,
    keyFile: flags.keyFile ?? defaultScanKeyPath(),
    staleAfterMs: staleAfterSeconds * 1000,
    ...(format === undefined ? {} : { format }),
    ...(mapping === undefined ? {} : { mapping }),
    ...(flags.writAudit === true ? { records: writAuditRecords(dataDirectory(options)) } : {}),
    ...(showProgress
      ? { onProgress: (bytes: number) => process.stderr.write(progressBar(bytes, totalBytes)) }
      : {}),
  });
  if (showProgress) process.stderr.write("\n");

  let plan: PlanEntry[] | undefined;
  if (flags.plan === true) {
    const trustDomain = await loadConfig(dataDirectory(options)).then(
      (config) => config.trust_domain,
      () => "example.org",
    );
    plan = buildPlan(result.findings, { trustDomain, environment: flags.environment });
  }

  if (flags.sarif !== undefined)
    await writeFile(flags.sarif, `${JSON.stringify(renderSarif(result, "0.1.0"), null, 2)}\n`);
  if (flags.html !== undefined) await writeFile(flags.html, renderHtml(result));
  emit(options, renderJson(result, plan), () => [
    ...renderTable(result),
    ...(plan === undefined ? [] : planLines(plan)),
  ]);

  if (plan !== undefined && flags.apply === true) await confirmAndApply(plan, flags, options);

  const threshold = severityRank(flags.failOn as Severity);
  if (result.findings.some((finding) => severityRank(finding.severity) >= threshold)) process.exitCode = 1;
}

function planLines(plan: PlanEntry[]): string[] {
  const lines = ["", "plan:"];
  for (const entry of plan) {
    lines.push(`credential ${printable(entry.credential)}: ${entry.agents.length} agents`);
    for (const agent of entry.agents) {
      lines.push(`  agent ${agent.name} (env ${agent.environment}) for ${printable(agent.workload)}`);
      for (const tool of agent.tools)
        lines.push(`    tool ${tool.name}: ${printable(tool.actions.join(", "))}`);
    }
  }
  return lines;
}

async function confirmAndApply(plan: PlanEntry[], flags: ScanFlags, options: GlobalOptions): Promise<void> {
  const agents = plan.reduce((sum, entry) => sum + entry.agents.length, 0);
  if (flags.yes !== true) {
    if (!process.stdin.isTTY)
      throw new UsageError("--apply needs --yes when standard input is not a terminal");
    const prompt = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await prompt.question(`register ${agents} agents in ${dataDirectory(options)}? [y/N] `);
    prompt.close();
    if (!/^y(es)?$/i.test(answer.trim())) {
      process.stderr.write("nothing applied\n");
      return;
    }
  }
  const applied = await applyPlan(plan, options);
  process.stderr.write(
    `applied: ${applied.agents} agents, ${applied.tools} tools, ${applied.policies} policies\n`,
  );
}

async function totalSize(inputs: string[]): Promise<number> {
  let total = 0;
  for (const file of await listInputFiles(inputs)) if (file !== "-") total += (await stat(file)).size;
  return total;
}
