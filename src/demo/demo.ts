import { realpath } from "node:fs/promises";
import { AgentProcess, type Cast } from "./agents.js";
import { readAuditEvents } from "../audit/read.js";
import { checkAudit, countEvents, endTasks } from "./closing.js";
import { exploreCommands } from "./output.js";
import { PostgresStep } from "./postgres-step.js";
import { StepLog, type DemoResult, type DemoStep } from "./report.js";
import {
  prepareDemoPaths,
  registerAgent,
  registerTools,
  removeTemporaryRoot,
  startInstallation,
  writeSampleFolder,
  type DemoPaths,
  type Installation,
} from "./setup.js";
import { runStory, type Scene } from "./story.js";
import { startSampleApi, type SampleApi } from "./upstream.js";

export type { DemoResult, DemoStep } from "./report.js";

export interface DemoOptions {
  /** The data directory to create and keep; a temporary one by default. */
  dataDir?: string;
  /** Keeps the temporary data directory after the run. */
  keep?: boolean;
  /** The command that printed commands start with, such as `writ` or `node dist/cli/main.js`. */
  cli?: string;
  /** Receives each step as it happens. */
  onStep?: (step: DemoStep) => void;
  /** Receives what is being started while servers start, and undefined once they run. */
  onProgress?: (label: string | undefined) => void;
  /** Stops the run: what is running is closed, and the result reports the demo as interrupted. */
  signal?: AbortSignal;
}

/**
 * Runs the main job end to end on the embedded default: a broker and gateway on loopback over
 * SQLite, and three agents as separate processes with their own keys. The tools are real: the
 * filesystem and memory MCP servers, and an HTTP API that demands its own credential. Every expected
 * outcome is one step, and the result is `ok` only when none failed. Throws only when the data
 * directory cannot be used.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const paths = await prepareDemoPaths(options.dataDir);
  const log = new StepLog(options.onStep);
  const result: DemoResult = {
    ok: false,
    data_dir: paths.dataDir,
    data_kept: true,
    steps: log.steps,
    counts: { allowed: 0, denied: 0, tokens_issued: 0, audit_events: 0 },
    agents: {},
    tasks: {},
    mcp_servers: [],
    explore: [],
  };
  const running: Running = { agents: [] };
  const stopped = new Promise<never>((_, reject) => {
    const signal = options.signal;
    if (signal === undefined) return;
    const stop = (): void =>
      reject(signal.reason instanceof Error ? signal.reason : new Error("interrupted"));
    // The signal may have fired while the folders were prepared, before anyone listened.
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
  const work = play(paths, options, log, result, running);
  // Whichever of the two loses the race settles later, when no one awaits it any more.
  stopped.catch(noop);
  work.catch(noop);
  try {
    await Promise.race([work, stopped]);
  } catch (error) {
    options.onProgress?.(undefined);
    const serverErrors = running.installation?.serverLog.errors ?? [];
    log.check(
      "the demo ran to the end",
      false,
      `${(error as Error).message}${serverErrors.length === 0 ? "" : `; server errors: ${serverErrors.join("; ")}`}`,
    );
    // An interrupted story goes on failing in the background while everything closes, so later steps are dropped.
    log.close();
  } finally {
    await Promise.all(running.agents.map((agent) => agent.close()));
    if (running.installation !== undefined && result.counts.audit_events === 0) {
      // A run that stopped early reports the events its audit log contains so far.
      const store = running.installation.server.broker.context.store;
      result.counts = await readAuditEvents(store).then(countEvents, () => result.counts);
    }
    // Each part is stopped even when stopping another failed; a failure is one more failed step.
    const closers = [
      () => running.installation?.server.close(),
      () => running.api?.close(),
      () => running.postgres?.stop(),
    ];
    for (const close of closers) {
      try {
        await close();
      } catch (error) {
        log.check("everything the demo started was stopped", false, (error as Error).message);
      }
    }
  }

  if (paths.temporaryRoot !== undefined && options.keep !== true) {
    result.data_kept = !(await removeTemporaryRoot(paths));
  }
  if (result.data_kept) {
    result.admin_key_file = paths.adminKeyFile;
    result.explore = exploreCommands(options.cli ?? "writ", paths.dataDir, paths.adminKeyFile, result.tasks);
  }
  result.ok = log.ok;
  return result;
}

/** The servers and processes a run started, so that they can be stopped however the run ends. */
interface Running {
  api?: SampleApi;
  installation?: Installation;
  agents: AgentProcess[];
  postgres?: PostgresStep;
}

/** Plays the story from the start of the servers to the audit check, recording each step. */
async function play(
  paths: DemoPaths,
  options: DemoOptions,
  log: StepLog,
  result: DemoResult,
  running: Running,
): Promise<void> {
  options.onProgress?.("starting the broker, the gateway, the sample API and the agents");
  // The agents start first: they load while the broker is initialised, and wait for the operator.
  const cast: Cast = {
    a: AgentProcess.start("triage-bot"),
    b: AgentProcess.start("report-bot"),
    sub: AgentProcess.start("summary-bot"),
  };
  running.agents.push(cast.a, cast.b, cast.sub);
  running.postgres = PostgresStep.begin();
  const api = await startSampleApi();
  running.api = api;
  const installation = await startInstallation(paths);
  running.installation = installation;
  log.check("broker and gateway started on loopback", true, installation.issuer);

  await writeSampleFolder(paths.sampleDir);
  // The filesystem server and the gateway both resolve symbolic links, so the path given is the real one.
  const sampleDir = await realpath(paths.sampleDir);
  await registerTools(installation.admin, api, sampleDir);
  log.check(
    "tools registered: the filesystem and memory MCP servers, and an HTTP API whose credential only the gateway has",
    true,
    `files over ${sampleDir}, memory, tracker at ${api.url}`,
  );

  const [a, b, sub] = await Promise.all([
    registerAgent(installation.admin, cast.a, "team-support"),
    registerAgent(installation.admin, cast.b, "team-reporting"),
    registerAgent(installation.admin, cast.sub, "team-support"),
  ]);
  result.agents = {
    a: { name: cast.a.name, spiffe_id: a },
    b: { name: cast.b.name, spiffe_id: b },
    sub: { name: cast.sub.name, spiffe_id: sub },
  };
  options.onProgress?.(undefined);
  log.check(
    "three agents run as their own processes, each registered with a key it generated",
    true,
    running.agents.map((agent) => `${agent.name} pid ${agent.pid ?? "?"}`).join(", "),
  );
  await running.postgres.register(installation.admin, log);

  const scene: Scene = {
    installation,
    cast,
    api,
    sampleDir,
    postgres: running.postgres,
    log,
    result,
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
  };
  const tasks = await runStory(scene);
  await endTasks(scene, tasks, paths.adminKeyFile);
  await checkAudit(scene, tasks.a);
}

function noop(): void {}
