import { parseApprovalRule, type ApprovalRule } from "../approvals/rule.js";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { environmentProblem } from "../identity/agents.js";
import type { ToolsTable } from "../store/schema.js";
import { parseHttpToolConfig } from "./http-config.js";
import {
  parseArgDeclaration,
  parseMcpTarget,
  parseMcpToolConfig,
  type ArgDeclaration,
} from "./mcp-config.js";
import { reloadPolicies } from "../policy/policies.js";
import { reservedToolNames } from "../policy/schema.js";

/** `postgres` tools are registered systems, created by `writ system add`; their actions are templates. */
export type ToolKind = "http" | "mcp" | "postgres";
export type RiskLevel = "low" | "medium" | "high";

/** One named action of a tool: an HTTP method and path pattern, or an MCP tool, resource or prompt. */
export interface ToolAction {
  name: string;
  /** For HTTP tools `METHOD /path/pattern`; for MCP tools the MCP name it stands for. */
  spec: string;
  risk: RiskLevel;
  /** MCP tool actions: the call arguments that enter this action's Cedar context as `context.args`. */
  args?: ArgDeclaration[];
  /** When set, each call is held at the gateway until people approve that exact call (step-up). */
  approval?: ApprovalRule;
}

export interface Tool {
  name: string;
  kind: ToolKind;
  environment: string;
  /** The tool's resource URI (RFC 8707), the audience of its tokens. */
  resource_uri: string;
  actions: ToolAction[];
  /** Kind-specific settings the gateways read (upstream, injection rules). */
  config: Record<string, unknown>;
  created_at: number;
}

export interface NewTool {
  name: string;
  kind: string;
  environment: string;
  actions: { name: string; spec?: string; risk?: string; args?: string[]; approval?: unknown }[];
  config?: Record<string, unknown>;
}

/** Tool and action names: they appear in URLs and as `TOOL:ACTION`, so no `:` or `/`. */
const namePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const actionPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const httpSpecPattern = /^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) \/\S*$/;

/** Returns the resource URI of a tool: `<public-url>/tools/<name>` or `<public-url>/mcp/<name>`. */
export function toolResourceUri(issuer: string, kind: ToolKind, name: string): string {
  return `${issuer}/${kind === "http" ? "tools" : "mcp"}/${name}`;
}

/** Registers a tool; the change takes effect once its audit event is durable. */
export async function addTool(context: BrokerContext, actor: string, input: NewTool): Promise<Tool> {
  if (!namePattern.test(input.name)) {
    throw new WritError(
      "invalid_request",
      `invalid tool name "${input.name}": use 1 to 63 lowercase letters, digits, '.', '-' or '_'`,
    );
  }
  if (reservedToolNames.has(input.name)) {
    throw new WritError("invalid_request", `tool name "${input.name}" is reserved for policy action groups`);
  }
  if (input.kind !== "http" && input.kind !== "mcp") {
    throw new WritError("invalid_request", `invalid tool kind "${input.kind}": use http or mcp`);
  }
  const envProblem = environmentProblem(input.environment);
  if (envProblem !== undefined)
    throw new WritError("invalid_request", `invalid environment "${input.environment}": ${envProblem}`);
  if (input.actions.length === 0)
    throw new WritError("invalid_request", `tool "${input.name}" needs at least one action`);

  const actions: ToolAction[] = [];
  for (const action of input.actions) {
    if (!actionPattern.test(action.name)) {
      throw new WritError(
        "invalid_request",
        `invalid action name "${action.name}": use letters, digits, '.', '-' or '_'`,
      );
    }
    if (actions.some((known) => known.name === action.name)) {
      throw new WritError("invalid_request", `action "${action.name}" is given twice`);
    }
    const spec = action.spec ?? action.name;
    if (input.kind === "http" && !httpSpecPattern.test(spec)) {
      throw new WritError(
        "invalid_request",
        `invalid action "${action.name}=${spec}": an HTTP action is "METHOD /path/pattern", such as "GET /repos/*/issues/**"`,
      );
    }
    const risk = action.risk ?? "low";
    if (risk !== "low" && risk !== "medium" && risk !== "high") {
      throw new WritError(
        "invalid_request",
        `invalid risk "${risk}" for action "${action.name}": use low, medium or high`,
      );
    }
    const args = mcpActionArgs(input.kind, action.name, spec, action.args);
    const approval =
      action.approval === undefined ? undefined : parseApprovalRule(action.approval, action.name);
    actions.push({
      name: action.name,
      spec,
      risk,
      ...(args === undefined ? {} : { args }),
      ...(approval === undefined ? {} : { approval }),
    });
  }

  const config =
    input.kind === "http" && input.config?.upstream !== undefined
      ? { ...parseHttpToolConfig(input.config) }
      : input.kind === "mcp" && (input.config?.command !== undefined || input.config?.upstream !== undefined)
        ? { ...parseMcpToolConfig(input.config) }
        : (input.config ?? {});

  if ((await getTool(context, input.name)) !== undefined) {
    throw new WritError("conflict", `tool "${input.name}" already exists`);
  }
  const tool: Tool = {
    name: input.name,
    kind: input.kind,
    environment: input.environment,
    resource_uri: toolResourceUri(context.issuer, input.kind, input.name),
    actions,
    config,
    created_at: context.clock.nowMs(),
  };
  await context.audit.append(
    {
      kind: "tool.created",
      actor,
      data: { tool: tool.name, tool_kind: tool.kind, environment: tool.environment, actions: tool.actions },
    },
    async (trx) => {
      await trx.insertInto("tools").values(toRow(tool)).execute();
    },
  );
  await reloadPolicies(context);
  return tool;
}

/** Validates an MCP action's spec and parses its argument declarations; only MCP tool calls take arguments. */
function mcpActionArgs(
  kind: string,
  action: string,
  spec: string,
  args: string[] | undefined,
): ArgDeclaration[] | undefined {
  if (kind !== "mcp") {
    if (args !== undefined && args.length > 0)
      throw new WritError("invalid_request", `action "${action}": only mcp actions declare arguments`);
    return undefined;
  }
  const target = parseMcpTarget(action, spec);
  if (args === undefined) return undefined;
  if (!Array.isArray(args) || !args.every((arg) => typeof arg === "string"))
    throw new WritError(
      "invalid_request",
      `action "${action}": "args" must be an array of NAME:TYPE strings`,
    );
  if (args.length === 0) return undefined;
  if (target.kind !== "tool") {
    throw new WritError("invalid_request", `action "${action}": only MCP tool actions declare arguments`);
  }
  const declared = args.map(parseArgDeclaration);
  const names = declared.map((arg) => arg.name);
  const repeated = names.find((name, index) => names.indexOf(name) !== index);
  if (repeated !== undefined)
    throw new WritError("invalid_request", `action "${action}": argument "${repeated}" is declared twice`);
  return declared;
}

export async function getTool(context: BrokerContext, name: string): Promise<Tool | undefined> {
  const row = await context.store.db
    .selectFrom("tools")
    .selectAll()
    .where("name", "=", name)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function getToolByResource(context: BrokerContext, resource: string): Promise<Tool | undefined> {
  const row = await context.store.db
    .selectFrom("tools")
    .selectAll()
    .where("resource_uri", "=", resource)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function listTools(context: BrokerContext): Promise<Tool[]> {
  const rows = await context.store.db.selectFrom("tools").selectAll().orderBy("name").execute();
  return rows.map(fromRow);
}

function toRow(tool: Tool): ToolsTable {
  return { ...tool, actions: JSON.stringify(tool.actions), config: JSON.stringify(tool.config) };
}

function fromRow(row: ToolsTable): Tool {
  return {
    ...row,
    kind: row.kind as ToolKind,
    actions: JSON.parse(row.actions) as ToolAction[],
    config: JSON.parse(row.config) as Record<string, unknown>,
  };
}
