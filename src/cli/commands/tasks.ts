import type { Command } from "commander";
import { commandWords } from "../command-words.js";
import type { RevocationResult } from "../../revocation/revoke.js";
import type { Task } from "../../tasks/tasks.js";
import type { Tool } from "../../tools/registry.js";
import { parseApprovalSpec } from "../../approvals/rule.js";
import { collect, emit, parseDuration, printable, table } from "../output.js";
import { run } from "../run.js";

/** Registers `writ tool …`, `writ task …`, `writ revoke` and `writ keys rotate`. */
export function registerTaskCommands(program: Command): void {
  const tool = program.command("tool").description("register and inspect tools");

  tool
    .command("add <name>")
    .description("register a tool and its named actions")
    .requiredOption("--kind <kind>", "http or mcp")
    .requiredOption("--env <environment>", "the tool's environment")
    .option(
      "--action <name=spec>",
      "an action: NAME='METHOD /path/pattern' for http, NAME or NAME=MCP-NAME for mcp",
      collect,
      [],
    )
    .option("--risk <action=level>", "an action's risk level: low (default), medium or high", collect, [])
    .option(
      "--approval <action=rule>",
      "hold each call of ACTION until people approve it: ROLE[:COUNT] or people:ID,ID[:COUNT]",
      collect,
      [],
    )
    .option("--upstream <url>", "http tools: the upstream base URL the gateway forwards to")
    .option(
      "--inject <rule>",
      "http tools: header:NAME=TEMPLATE, basic:USER=TEMPLATE or query:PARAM=TEMPLATE, with ${secret:NAME}",
      collect,
      [],
    )
    .option("--case-insensitive", "http tools: match and forward paths in lowercase")
    .option("--timeout <duration>", "http tools: upstream timeout, such as 30s", "30s")
    .option("--max-body <bytes>", "http tools: largest request or response body forwarded, in bytes")
    .option("--gateway <name>", "a registered gateway the tool is assigned to; repeat for each", collect, [])
    .option(
      "--command <command>",
      "mcp tools: the stdio server the gateway starts per task, as 'PROGRAM ARGS…' split at spaces",
    )
    .option(
      "--arg <action=name:type>",
      "mcp tools: a call argument in the action's Cedar context; type string, long or path",
      collect,
      [],
    )
    .option(
      "--env-var <name=value>",
      "mcp tools: a variable for the server, where value may contain ${secret:NAME}",
      collect,
      [],
    )
    .option(
      "--state-path <variable[=file]>",
      "mcp tools: a variable set to a file in the task's private state folder",
      collect,
      [],
    )
    .option("--run-as <user>", "mcp tools: the system user the stdio server runs as")
    .option(
      "--system <name>",
      "mcp tools: give the server the task's credential on this system (PGPASSWORD, ${system_url})",
    )
    .action(
      (
        name: string,
        flags: {
          kind: string;
          env: string;
          action: string[];
          risk: string[];
          approval: string[];
          upstream?: string;
          inject: string[];
          caseInsensitive?: boolean;
          timeout: string;
          maxBody?: string;
          gateway: string[];
          command?: string;
          arg: string[];
          envVar: string[];
          statePath: string[];
          runAs?: string;
          system?: string;
        },
      ) =>
        run(program, async (target, options) => {
          const risks = new Map(flags.risk.map((entry) => entry.split("=", 2) as [string, string]));
          const actions = flags.action.map((entry) => {
            const separator = entry.indexOf("=");
            const actionName = separator === -1 ? entry : entry.slice(0, separator);
            const spec = separator === -1 ? undefined : entry.slice(separator + 1);
            const risk = risks.get(actionName);
            return {
              name: actionName,
              ...(spec === undefined ? {} : { spec }),
              ...(risk === undefined ? {} : { risk }),
            };
          });
          for (const entry of flags.approval) {
            const separator = entry.indexOf("=");
            const action = actions.find((known) => known.name === entry.slice(0, separator)) as
              { name: string; approval?: unknown } | undefined;
            if (separator === -1 || action === undefined) {
              throw new Error(
                `invalid --approval "${entry}": use ACTION=RULE for an action given with --action`,
              );
            }
            action.approval = parseApprovalSpec(entry.slice(separator + 1), action.name);
          }
          for (const risky of risks.keys()) {
            if (!actions.some((action) => action.name === risky))
              throw new Error(`--risk names unknown action "${risky}"`);
          }
          for (const entry of flags.arg) {
            const separator = entry.indexOf("=");
            const action = actions.find((known) => known.name === entry.slice(0, separator)) as
              { args?: string[] } | undefined;
            if (separator === -1 || action === undefined)
              throw new Error(`--arg "${entry}" must be ACTION=NAME:TYPE with a declared action`);
            action.args = [...(action.args ?? []), entry.slice(separator + 1)];
          }
          const config = flags.kind === "mcp" ? mcpConfig(flags) : httpConfig(flags);
          const created = await target.client.call<Tool>("POST", "/v1/tools", {
            name,
            kind: flags.kind,
            environment: flags.env,
            actions,
            ...(config === undefined ? {} : { config }),
          });
          emit(options, created, () => [`tool ${created.name} added: resource ${created.resource_uri}`]);
        }),
    );

  /** Builds the config of an MCP tool from its flags; undefined when neither --command nor --upstream is given. */
  function mcpConfig(flags: {
    command?: string;
    upstream?: string;
    inject: string[];
    envVar: string[];
    statePath: string[];
    runAs?: string;
    system?: string;
    timeout: string;
  }): Record<string, unknown> | undefined {
    if (flags.command === undefined && flags.upstream === undefined) return undefined;
    return {
      ...(flags.command === undefined ? {} : { command: commandWords(flags.command) }),
      ...(flags.upstream === undefined ? {} : { upstream: flags.upstream }),
      inject: flags.inject,
      env: flags.envVar,
      state_paths: flags.statePath,
      ...(flags.runAs === undefined ? {} : { run_as: flags.runAs }),
      ...(flags.system === undefined ? {} : { system: flags.system }),
      timeout_ms: parseDuration(flags.timeout) * 1000,
    };
  }

  function httpConfig(flags: {
    upstream?: string;
    inject: string[];
    caseInsensitive?: boolean;
    timeout: string;
    maxBody?: string;
    gateway: string[];
  }): Record<string, unknown> | undefined {
    return flags.upstream === undefined
      ? undefined
      : {
          upstream: flags.upstream,
          inject: flags.inject,
          case_sensitive: flags.caseInsensitive !== true,
          timeout_ms: parseDuration(flags.timeout) * 1000,
          ...(flags.maxBody === undefined ? {} : { max_body_bytes: Number(flags.maxBody) }),
          gateways: flags.gateway,
        };
  }

  tool
    .command("list")
    .description("list tools")
    .action(() =>
      run(program, async (target, options) => {
        const { tools } = await target.client.call<{ tools: Tool[] }>("GET", "/v1/tools");
        emit(options, { tools }, () =>
          table(
            ["NAME", "KIND", "ENV", "ACTIONS", "RESOURCE"],
            tools.map((t) => [
              t.name,
              t.kind,
              t.environment,
              t.actions.map((a) => a.name).join(","),
              t.resource_uri,
            ]),
          ),
        );
      }),
    );

  tool
    .command("show <name>")
    .description("show one tool and its actions")
    .action((name: string) =>
      run(program, async (target, options) => {
        const shown = await target.client.call<Tool>("GET", `/v1/tools/${encodeURIComponent(name)}`);
        emit(options, shown, () => [
          `name      ${shown.name}`,
          `kind      ${shown.kind}`,
          `env       ${shown.environment}`,
          `resource  ${shown.resource_uri}`,
          ...table(
            ["ACTION", "SPEC", "RISK"],
            shown.actions.map((a) => [a.name, a.spec, a.risk]),
          ),
        ]);
      }),
    );

  const task = program.command("task").description("start, end and inspect tasks");

  task
    .command("start")
    .description("start a task for an agent")
    .requiredOption("--agent <name>", "the agent that runs the task")
    .option("--tool <tool:action>", "a tool action the task may use; repeat for each", collect, [])
    .requiredOption("--intent <text>", "what the task is for, in words")
    .requiredOption("--env <environment>", "the task's environment")
    .option("--ttl <duration>", "time to live, such as 30m or 2h", "1h")
    .option("--schedule <name>", "record a schedule as the initiator instead of yourself")
    .action(
      (flags: {
        agent: string;
        tool: string[];
        intent: string;
        env: string;
        ttl: string;
        schedule?: string;
      }) =>
        run(program, async (target, options) => {
          const started = await target.client.call<Task>("POST", "/v1/tasks", {
            agent: flags.agent,
            actions: flags.tool,
            intent: flags.intent,
            environment: flags.env,
            ttl_seconds: parseDuration(flags.ttl),
            ...(flags.schedule === undefined ? {} : { schedule: flags.schedule }),
          });
          emit(options, started, () => [
            `task ${started.id} started for agent ${started.agent_name}`,
            `deadline ${new Date(started.deadline_s * 1000).toISOString()}`,
          ]);
        }),
    );

  task
    .command("end <id>")
    .description("end a task: its tokens stop working at once")
    .action((id: string) =>
      run(program, async (target, options) => {
        const result = await target.client.call<RevocationResult>(
          "POST",
          `/v1/tasks/${encodeURIComponent(id)}/end`,
        );
        emit(options, result, () => describeRevocation(result));
      }),
    );

  task
    .command("join <id>")
    .description(
      "get a short-lived token, bound to your own key, to act in an agent's task; you act, attributed",
    )
    .requiredOption("--tool <name>", "the task's tool the token is for")
    .action((id: string, flags: { tool: string }) =>
      run(program, async (target, options) => {
        const joined = await target.client.call<{
          access_token: string;
          expires_in: number;
          resource: string;
        }>("POST", `/v1/tasks/${encodeURIComponent(id)}/join`, { tool: flags.tool });
        emit(options, joined, () => [
          `joined task ${id} for ${joined.resource}, for ${joined.expires_in} s`,
          "the token is bound to your own key: sign a DPoP proof with it for every call",
          joined.access_token,
        ]);
      }),
    );

  task
    .command("list")
    .description("list tasks, newest first")
    .option("--agent <name>", "only this agent's tasks")
    .option("--status <status>", "only tasks in this status: active, completed, expired or revoked")
    .action((flags: { agent?: string; status?: string }) =>
      run(program, async (target, options) => {
        const query = new URLSearchParams();
        if (flags.agent !== undefined) query.set("agent", flags.agent);
        if (flags.status !== undefined) query.set("status", flags.status);
        const { tasks } = await target.client.call<{ tasks: Task[] }>("GET", `/v1/tasks?${query.toString()}`);
        emit(options, { tasks }, () =>
          table(
            ["ID", "AGENT", "STATUS", "ENV", "DEADLINE", "INTENT"],
            tasks.map((t) => [
              t.id,
              t.agent_name,
              t.status,
              t.environment,
              new Date(t.deadline_s * 1000).toISOString(),
              t.intent,
            ]),
          ),
        );
      }),
    );

  task
    .command("show <id>")
    .description("show one task")
    .action((id: string) =>
      run(program, async (target, options) => {
        const shown = await target.client.call<Task>("GET", `/v1/tasks/${encodeURIComponent(id)}`);
        emit(options, shown, () => [
          `id         ${shown.id}`,
          `agent      ${shown.agent_name}`,
          `status     ${shown.status}${shown.end_reason === null ? "" : ` (${printable(shown.end_reason)})`}`,
          `initiator  ${printable(shown.initiator)}`,
          `intent     ${printable(shown.intent)}`,
          `env        ${shown.environment}`,
          `actions    ${shown.actions.join(", ")}`,
          `deadline   ${new Date(shown.deadline_s * 1000).toISOString()}`,
        ]);
      }),
    );

  program
    .command("revoke")
    .description("revoke an agent (and disable it), a task, or one token; every other agent keeps working")
    .option("--agent <name>", "revoke every active task and token of this agent and disable it")
    .option("--task <id>", "revoke this task and its tokens")
    .option("--token <jti>", "revoke this one token")
    .action((flags: { agent?: string; task?: string; token?: string }) =>
      run(program, async (target, options) => {
        const given = [flags.agent, flags.task, flags.token].filter((value) => value !== undefined);
        if (given.length !== 1) throw new Error("give exactly one of --agent, --task or --token");
        const result = await target.client.call<RevocationResult>("POST", "/v1/revoke", {
          ...(flags.agent === undefined ? {} : { agent: flags.agent }),
          ...(flags.task === undefined ? {} : { task: flags.task }),
          ...(flags.token === undefined ? {} : { token: flags.token }),
        });
        emit(options, result, () => [
          ...(flags.agent === undefined ? [] : [`agent ${flags.agent} disabled`]),
          ...describeRevocation(result),
        ]);
      }),
    );

  program
    .command("keys")
    .description("manage the token signing keys")
    .command("rotate")
    .description("create a new signing key; the old one keeps verifying until its tokens expire")
    .action(() =>
      run(program, async (target, options) => {
        const rotated = await target.client.call<{ kid: string; retired: string[] }>(
          "POST",
          "/v1/keys/rotate",
        );
        emit(options, rotated, () => [
          `new signing key ${rotated.kid}`,
          ...rotated.retired.map((kid) => `retired ${kid}`),
        ]);
      }),
    );
}

function describeRevocation(result: RevocationResult): string[] {
  return [
    `revoked ${result.task_ids.length} task(s), ${result.jtis.length} token(s)` +
      (result.seq === null ? "" : ` (revocation ${result.seq})`),
    ...result.task_ids.map((id) => `  task ${id}`),
    ...result.jtis.map((jti) => `  token ${jti}`),
  ];
}
