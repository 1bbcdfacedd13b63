import type { Command } from "commander";
import { generateKeyPair } from "jose";
import { fetchSystemCredential } from "../../client/system-credential.js";
import { loadConfig } from "../../config/config.js";
import { isLoopbackHost, normalisePublicUrl } from "../../config/public-url.js";
import type { System } from "../../systems/systems.js";
import type { Template } from "../../systems/templates.js";
import { readKeyFile } from "../admin-client.js";
import { collect, emit, printable, table } from "../output.js";
import { fail, run } from "../run.js";
import { dataDirectory, type GlobalOptions } from "../target.js";

/** Registers `writ system …` and `writ task creds`. */
export function registerSystemCommands(program: Command): void {
  const system = program.command("system").description("register database systems and role templates");

  system
    .command("add <name>")
    .description("register a PostgreSQL server on which each task gets its own login role")
    .requiredOption("--kind <kind>", "the system kind: postgres")
    .requiredOption("--dsn <url>", "the management role's postgres://USER@HOST:PORT/DB, without a password")
    .requiredOption("--password-secret <name>", "the secret that contains the management role's password")
    .option("--env <environment>", "the system's environment; tasks must be in it", "prod")
    .action((name: string, flags: { kind: string; dsn: string; passwordSecret: string; env: string }) =>
      run(program, async (target, options) => {
        const added = await target.client.call<System>("POST", "/v1/systems", {
          name,
          kind: flags.kind,
          dsn: flags.dsn,
          password_secret: flags.passwordSecret,
          environment: flags.env,
        });
        emit(options, added, () => [`system ${added.name} added: resource ${added.resource_uri}`]);
      }),
    );

  system
    .command("list")
    .description("list systems")
    .action(() =>
      run(program, async (target, options) => {
        const { systems } = await target.client.call<{ systems: System[] }>("GET", "/v1/systems");
        emit(options, { systems }, () =>
          table(
            ["NAME", "KIND", "ENV", "DSN"],
            systems.map((entry) => [entry.name, entry.kind, entry.environment, entry.dsn]),
          ),
        );
      }),
    );

  system
    .command("show <name>")
    .description("show one system and its templates")
    .action((name: string) =>
      run(program, async (target, options) => {
        const shown = await target.client.call<System & { templates: Template[] }>(
          "GET",
          `/v1/systems/${encodeURIComponent(name)}`,
        );
        emit(options, shown, () => [
          `name      ${shown.name}`,
          `kind      ${shown.kind}`,
          `env       ${shown.environment}`,
          `dsn       ${shown.dsn}`,
          `resource  ${shown.resource_uri}`,
          ...table(
            ["TEMPLATE", "DATABASE", "MEMBER OF", "GRANTS", "SUCCESSOR"],
            shown.templates.map((entry) => [
              entry.name,
              entry.database,
              entry.member_of.join(", "),
              entry.grants.join("; "),
              entry.successor ?? "",
            ]),
          ),
        ]);
      }),
    );

  system
    .command("template")
    .description("manage role templates")
    .command("add <system> <name>")
    .description("add a template: what a task's role on the system may do")
    .option("--member-of <role>", "a group role the task role joins; repeat for each", collect, [])
    .option(
      "--grant <clause>",
      "a GRANT clause, such as 'SELECT ON ALL TABLES IN SCHEMA billing'",
      collect,
      [],
    )
    .option("--database <name>", "the database the grants apply in (default: the DSN's database)")
    .option(
      "--keep-objects-to <role>",
      "at task end, give the role's objects to this role instead of dropping them",
    )
    .option("--connection-limit <n>", "the task role's CONNECTION LIMIT", "5")
    .action(
      (
        systemName: string,
        name: string,
        flags: {
          memberOf: string[];
          grant: string[];
          database?: string;
          keepObjectsTo?: string;
          connectionLimit: string;
        },
      ) =>
        run(program, async (target, options) => {
          const added = await target.client.call<Template>(
            "POST",
            `/v1/systems/${encodeURIComponent(systemName)}/templates`,
            {
              name,
              member_of: flags.memberOf,
              grants: flags.grant,
              connection_limit: Number(flags.connectionLimit),
              ...(flags.database === undefined ? {} : { database: flags.database }),
              ...(flags.keepObjectsTo === undefined ? {} : { successor: flags.keepObjectsTo }),
            },
          );
          emit(options, added, () => [
            `template ${added.name} added to system ${added.system}: a task lists it as ${added.system}:${added.name}`,
          ]);
        }),
    );

  const task = program.commands.find((command) => command.name() === "task");
  if (task === undefined) throw new Error("register the task commands before the system commands");
  task
    .command("creds <id>")
    .description("as the task's agent, fetch the task's own credential on a system (audited)")
    .requiredOption("--system <name>", "the system")
    .option("--agent-key <file>", "the agent's private key file (default: $WRIT_AGENT_KEY)")
    .action(async (id: string, flags: { system: string; agentKey?: string }) => {
      const options = program.opts<GlobalOptions>();
      try {
        const keyFile = flags.agentKey ?? process.env.WRIT_AGENT_KEY;
        if (keyFile === undefined)
          throw new Error("give the agent's key file with --agent-key or WRIT_AGENT_KEY");
        const key = await readKeyFile(keyFile);
        const issuer = normalisePublicUrl(
          options.url ?? (await loadConfig(dataDirectory(options))).public_url,
        );
        const pair = await generateKeyPair("ES256");
        const credential = await fetchSystemCredential(
          {
            issuer,
            clientId: key.clientId,
            privateKey: key.privateKey,
            allowInsecureHttp: isLoopbackHost(new URL(issuer).hostname),
          },
          { taskId: id, system: flags.system, dpopKeys: pair },
        );
        emit(options, credential, () => [
          `role         ${printable(credential.role)}`,
          `url          ${printable(credential.url)}`,
          `valid until  ${new Date(credential.valid_until).toISOString()}`,
          `password     ${credential.password}`,
        ]);
      } catch (error) {
        fail(options, error);
      }
    });
}
