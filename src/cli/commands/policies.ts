import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import type { PolicyDecision } from "../../policy/engine.js";
import type { StoredPolicy } from "../../policy/policies.js";
import { emit, table } from "../output.js";
import { run } from "../run.js";

/** Reads all of standard input, for secrets that must not appear in argv or the shell history. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

/** Registers `writ secret …` and `writ policy …`. */
export function registerPolicyCommands(program: Command): void {
  const secret = program.command("secret").description("store upstream credentials, encrypted at rest");

  secret
    .command("set <name>")
    .description("store or replace a secret; the value is read from standard input")
    .action((name: string) =>
      run(program, async (target, options) => {
        const value = await readStdin();
        if (value === "") throw new Error("no secret value on standard input");
        await target.client.call("POST", `/v1/secrets/${encodeURIComponent(name)}`, { value });
        emit(options, { name }, () => [`secret ${name} stored`]);
      }),
    );

  secret
    .command("list")
    .description("list secret names (never values)")
    .action(() =>
      run(program, async (target, options) => {
        const { secrets } = await target.client.call<{ secrets: { name: string; updated_at: number }[] }>(
          "GET",
          "/v1/secrets",
        );
        emit(options, { secrets }, () =>
          table(
            ["NAME", "UPDATED"],
            secrets.map((s) => [s.name, new Date(s.updated_at).toISOString()]),
          ),
        );
      }),
    );

  const policy = program.command("policy").description("manage Cedar policies");

  policy
    .command("add <file>")
    .description("add or replace the Cedar policies in FILE; each is validated against the schema in force")
    .option("--id <id>", "id for policies without an @id annotation (numbered when several)", "site")
    .action((file: string, flags: { id: string }) =>
      run(program, async (target, options) => {
        const text = await readFile(file, "utf8");
        const { policies } = await target.client.call<{ policies: StoredPolicy[] }>("POST", "/v1/policies", {
          text,
          id: flags.id,
        });
        emit(options, { policies }, () => policies.map((p) => `policy ${p.id} stored`));
      }),
    );

  policy
    .command("list")
    .description("list the policies in force: the shipped ones and the site's")
    .action(() =>
      run(program, async (target, options) => {
        const answer = await target.client.call<{
          in_force: Record<string, string>;
          site: StoredPolicy[];
          schema: string;
        }>("GET", "/v1/policies");
        emit(options, answer, () =>
          Object.entries(answer.in_force).flatMap(([id, text]) => [`// ${id}`, text, ""]),
        );
      }),
    );

  policy
    .command("remove <id>")
    .description("remove a site policy")
    .action((id: string) =>
      run(program, async (target, options) => {
        const answer = await target.client.call("POST", `/v1/policies/${encodeURIComponent(id)}/remove`);
        emit(options, answer, () => [`policy ${id} removed`]);
      }),
    );

  policy
    .command("validate <file>")
    .description(
      "validate the policies in FILE against the schema in force without adding them; exits 1 if invalid",
    )
    .action((file: string) =>
      run(program, async (target, options) => {
        const text = await readFile(file, "utf8");
        const answer = await target.client.call<{ valid: boolean; problems: string[] }>(
          "POST",
          "/v1/policies/validate",
          { text },
        );
        emit(options, answer, () =>
          answer.valid ? ["policies are valid"] : answer.problems.map((p) => `invalid: ${p}`),
        );
        if (!answer.valid) process.exitCode = 1;
      }),
    );

  policy
    .command("test")
    .description("decide a hypothetical request with the policies in force")
    .requiredOption("--agent <name>", "the acting agent")
    .requiredOption("--tool <name>", "the tool")
    .requiredOption("--action <name>", "the tool's action")
    .option("--env <environment>", "the task's environment (default: the agent's)")
    .option("--method <method>", "the request method", "GET")
    .option("--path <path>", "the normalised request path", "/")
    .option("--risk-score <n>", "the risk score, 0 to 100", "0")
    .option("--intent <text>", "the task's intent", "")
    .option("--not-in-token", "test as if the token did not name the action")
    .option("--as-human <spiffe-id>", "test as this registered person, acting in the agent's task")
    .option("--task-join", "test as if the token were a person's join token (context.task_join)")
    .option("--breakglass", "test as if an approved break-glass window were open (context.breakglass)")
    .action(
      (flags: {
        agent: string;
        tool: string;
        action: string;
        env?: string;
        method: string;
        path: string;
        riskScore: string;
        intent: string;
        notInToken?: boolean;
        asHuman?: string;
        taskJoin?: boolean;
        breakglass?: boolean;
      }) =>
        run(program, async (target, options) => {
          const decision = await target.client.call<PolicyDecision>("POST", "/v1/policies/test", {
            agent: flags.agent,
            tool: flags.tool,
            action: flags.action,
            ...(flags.env === undefined ? {} : { environment: flags.env }),
            method: flags.method,
            path: flags.path,
            risk_score: Number(flags.riskScore),
            intent: flags.intent,
            ...(flags.notInToken === true ? { token_actions: [] } : {}),
            ...(flags.asHuman === undefined ? {} : { human: flags.asHuman }),
            task_join: flags.taskJoin === true,
            breakglass: flags.breakglass === true,
          });
          emit(options, decision, () => [
            `decision ${decision.decision}`,
            `policies ${decision.policies.join(", ") || "(none)"}`,
            ...decision.errors.map((error) => `error ${error}`),
          ]);
        }),
    );
}
