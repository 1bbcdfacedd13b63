import type { AdminClient } from "../cli/admin-client.js";
import type { SqlOutcome } from "./agent-protocol.js";
import type { AgentProcess } from "./agents.js";
import { detectPostgres } from "./postgres.js";
import { managementRole, readerGroup, startDemoCluster, type DemoCluster } from "./postgres-cluster.js";
import type { DemoResult, StepLog } from "./report.js";
import { demoEnvironment } from "./setup.js";

/** The name of the demo's PostgreSQL system in writ, and the template its task role is made from. */
const systemName = "reports";
const templateName = "reader";
const skippedStep = "PostgreSQL role for report-bot's task";

/**
 * The PostgreSQL part of the story: a throwaway cluster registered as a system, a role created for
 * agent B's task, a query as that role, and the role dropped when the task ends. Without PostgreSQL
 * server programs, or when the cluster does not start, the part is one skipped step.
 */
export class PostgresStep {
  private cluster: DemoCluster | undefined;
  private role: string | undefined;

  private constructor(private readonly starting: Promise<{ cluster: DemoCluster; source: string } | string>) {
    // The outcome is read in `register`; a run stopped earlier must not leave a rejection unhandled.
    starting.catch(() => undefined);
  }

  /** Looks for PostgreSQL and starts a cluster in the background, while the rest of the demo starts. */
  static begin(): PostgresStep {
    return new PostgresStep(
      (async () => {
        const detection = await detectPostgres();
        if (!detection.found) return `skipped: ${detection.reason}`;
        try {
          return { cluster: await startDemoCluster(detection.binDir), source: detection.source };
        } catch (error) {
          return `skipped: PostgreSQL found in ${detection.source}, but its cluster did not start: ${(error as Error).message}`;
        }
      })(),
    );
  }

  /** The actions that agent B's task gets on the system; none when the step is skipped. */
  get actions(): string[] {
    return this.cluster === undefined ? [] : [`${systemName}:${templateName}`];
  }

  /** Waits for the cluster and registers it with writ, with the template of B's role. */
  async register(admin: AdminClient, log: StepLog): Promise<void> {
    const started = await this.starting;
    if (typeof started === "string") {
      log.skip(skippedStep, started);
      return;
    }
    this.cluster = started.cluster;
    await admin.call("POST", "/v1/secrets/reports-manager", { value: started.cluster.managementPassword });
    await admin.call("POST", "/v1/systems", {
      name: systemName,
      kind: "postgres",
      dsn: started.cluster.dsn(managementRole),
      password_secret: "reports-manager",
      environment: demoEnvironment,
    });
    await admin.call("POST", `/v1/systems/${systemName}/templates`, {
      name: templateName,
      member_of: [readerGroup],
    });
    log.check(
      `PostgreSQL registered as system "${systemName}", managed by a role that may only create roles`,
      true,
      `cluster on 127.0.0.1:${started.cluster.port} from ${started.source}`,
    );
  }

  /** Has the agent fetch its task's own credential and read the reports database with it. */
  async read(agent: AgentProcess, log: StepLog, result: DemoResult): Promise<void> {
    if (this.cluster === undefined) return;
    const outcome = await agent.request<SqlOutcome>({
      op: "postgres_query",
      system: systemName,
      sql: "SELECT week, incidents FROM weekly.summaries",
      reuseCredential: false,
    });
    this.role = outcome.role;
    result.postgres = { role: outcome.role, dropped: false };
    log.check(
      `${agent.name} read the reports database as a PostgreSQL role of its own task`,
      outcome.ok && outcome.role.startsWith("writ_"),
      `role ${outcome.role}: ${outcome.detail}`,
    );
  }

  /** Checks that the task's role is gone from the cluster and that its credential no longer works. */
  async checkDropped(agent: AgentProcess, log: StepLog, result: DemoResult): Promise<void> {
    if (this.cluster === undefined || this.role === undefined) return;
    const exists = await this.cluster.roleExists(this.role);
    const retry = await agent.request<SqlOutcome>({
      op: "postgres_query",
      system: systemName,
      sql: "SELECT 1",
      reuseCredential: true,
    });
    result.postgres = { role: this.role, dropped: !exists };
    log.check(
      `${agent.name}'s PostgreSQL role was dropped with its task`,
      !exists && !retry.ok,
      `role ${this.role} ${exists ? "still exists" : "is gone"}; its login ${retry.ok ? "still works" : `fails: ${retry.detail}`}`,
    );
  }

  /** Stops the cluster, if one was started, and deletes its folder. */
  async stop(): Promise<void> {
    const started = await this.starting.catch(() => undefined);
    if (started !== undefined && typeof started !== "string") await started.cluster.stop();
  }
}
