import type { Tool } from "../tools/registry.js";

/** Action groups that every tool action joins: one for its tool kind and one for its risk level. */
export const actionGroups = [
  "kind:http",
  "kind:mcp",
  "kind:postgres",
  "risk:low",
  "risk:medium",
  "risk:high",
] as const;

/**
 * Tool names that would collide with the action groups' `Action::"…"` ids. `protocol_method` has no
 * colon, so no `TOOL:ACTION` id can equal it.
 */
export const reservedToolNames = new Set(["kind", "risk"]);

/**
 * The base of the Cedar schema: identities, tools, environments, and the typed request context that
 * every action takes. Times are epoch seconds; `risk_score` is 0 to 100.
 */
const baseSchema = `
entity Agent;
entity Human;
entity Environment;
entity Tool {
  kind: String,
  environment: String,
};

type RequestContext = {
  intent: String,
  environment: String,
  deadline: Long,
  delegation_depth: Long,
  method: String,
  path: String,
  risk: String,
  risk_score: Long,
  action_name: String,
  token_actions: Set<String>,
  task_join: Bool,
  breakglass: Bool,
  target_granted?: Bool,
};

action ${actionGroups.map((group) => `"${group}"`).join(", ")};

action "protocol_method" appliesTo {
  principal: [Agent, Human],
  resource: [Tool],
  context: RequestContext,
};
`;

/** The attribute lines of `RequestContext`, which per-action context types repeat. */
const baseContextAttributes = /type RequestContext = \{\n([\s\S]*?)\};/.exec(baseSchema)?.[1] ?? "";

/** The Cedar type of each declared MCP argument type; paths arrive resolved, as strings. */
const argCedarTypes = { string: "String", long: "Long", path: "String" } as const;

/**
 * Builds the schema in force: the base plus one action per tool action, in its kind and risk groups.
 * An MCP action that declares arguments gets its own context type, the base attributes plus a
 * required `args` record, so strict validation can type `context.args.NAME` in policies.
 */
export function buildSchema(tools: readonly Tool[]): string {
  const types: string[] = [];
  const actions = tools.flatMap((tool) =>
    tool.actions.map((action) => {
      let context = "RequestContext";
      if (action.args !== undefined && action.args.length > 0) {
        context = `ArgsContext${types.length}`;
        const args = action.args.map((arg) => `    "${arg.name}": ${argCedarTypes[arg.type]},`).join("\n");
        types.push(`type ${context} = {\n${baseContextAttributes}  args: {\n${args}\n  },\n};`);
      }
      return (
        `action "${tool.name}:${action.name}" in ["kind:${tool.kind}", "risk:${action.risk}"] appliesTo {\n` +
        `  principal: [Agent, Human],\n  resource: [Tool],\n  context: ${context},\n};`
      );
    }),
  );
  return `${baseSchema}\n${types.join("\n")}\n${actions.join("\n")}\n`;
}
