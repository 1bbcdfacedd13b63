import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  CompleteRequestSchema,
  CompleteResultSchema,
  EmptyResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  GetPromptResultSchema,
  ListPromptsRequestSchema,
  ListPromptsResultSchema,
  ListResourcesRequestSchema,
  ListResourcesResultSchema,
  ListResourceTemplatesRequestSchema,
  ListResourceTemplatesResultSchema,
  ListToolsRequestSchema,
  ListToolsResultSchema,
  McpError,
  ReadResourceRequestSchema,
  ReadResourceResultSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type Prompt,
  type Resource,
  type ResourceTemplate,
  type Tool as McpTool,
} from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "pino";
import { isWritError } from "../../errors/writ-error.js";
import { logFields } from "../../log/fields.js";
import type { McpTargetKind, McpToolConfig } from "../../tools/mcp-config.js";
import { rejectIfRevoked } from "../authenticate.js";
import type { GatewayBackend } from "../backend.js";
import type { RiskScorer } from "../risk.js";
import {
  decideMcp,
  decideProtocolMethod,
  grantedActions,
  newMcpOutcome,
  recordMcp,
  type McpCaller,
  type McpOutcome,
} from "./decide.js";
import { mcpErrorCodes } from "./errors.js";
import { matchesUriPattern, uriProblem } from "./match.js";
import { UpstreamLimitError, type UpstreamPool } from "./upstreams.js";

/**
 * One JSON Schema validator for every per-request server. The SDK would otherwise compile a new Ajv
 * instance for each request, and the gateway never requests input from an agent that it would validate.
 */
const sharedSchemaValidator = new AjvJsonSchemaValidator();

/** Largest number of list pages read from an upstream for one listing. */
const maxListPages = 50;

export interface McpServerDependencies {
  backend: GatewayBackend;
  risk: RiskScorer;
  log: Logger;
  pool: UpstreamPool;
}

/**
 * Builds the MCP server that handles one agent request: listings filtered to what the token grants,
 * and each call, read or prompt decided by Cedar and audited before the upstream gets it. The SDK
 * itself answers `initialize`, `ping` and every method without a handler here (method not found).
 */
export function buildMcpServer(
  dependencies: McpServerDependencies,
  caller: McpCaller,
  config: McpToolConfig,
): Server {
  const server = new Server(
    { name: `writ-gateway/${caller.tool.name}`, version: "1" },
    {
      jsonSchemaValidator: sharedSchemaValidator,
      // Logging, completions and subscriptions are advertised to every task, and each request for them
      // is decided by policy like any other.
      capabilities: {
        tools: {},
        resources: { subscribe: true },
        prompts: {},
        logging: {},
        completions: {},
      },
    },
  );
  const taskId = caller.claims.task_id ?? caller.claims.jti;
  const deadlineS = caller.task?.deadline_s ?? caller.claims.exp;

  /** Runs `call` against this task's upstream; transport failures become an MCP internal error. */
  async function upstream<T>(
    outcome: McpOutcome | undefined,
    signal: AbortSignal,
    call: (client: Client) => Promise<T>,
  ): Promise<T> {
    try {
      return await dependencies.pool.use(caller.tool.name, config, { id: taskId, deadlineS }, call);
    } catch (error) {
      // A JSON-RPC error from the server itself is the server's response and passes through.
      if (
        error instanceof McpError &&
        error.code !== ErrorCode.ConnectionClosed &&
        error.code !== ErrorCode.RequestTimeout
      )
        throw error;
      if (signal.aborted) throw error;
      const data = outcome === undefined ? undefined : { decision_id: outcome.decisionId };
      dependencies.log.error(
        {
          [logFields.taskId]: taskId,
          [logFields.decisionId]: outcome?.decisionId,
          tool: caller.tool.name,
          err: error,
        },
        "mcp upstream request failed",
      );
      if (error instanceof UpstreamLimitError)
        throw new McpError(
          mcpErrorCodes.upstreamUnavailable,
          "the gateway runs too many upstream servers; retry later",
          data,
        );
      throw new McpError(
        mcpErrorCodes.upstreamUnavailable,
        "the upstream server failed; it is restarted on the next request",
        data,
      );
    }
  }

  /**
   * Records a decision durably, then throws the JSON-RPC denial with its decision id when denied. A
   * revocation that arrived while the decision was being made durable stops an allowed message here,
   * before it is relayed, and is recorded as `tool_call.failed`.
   */
  async function enforce(outcome: McpOutcome, allowed: boolean, denial: string): Promise<void> {
    const record = (verdict: "allowed" | "denied" | "failed") =>
      recordMcp(dependencies.backend, caller.claims, caller.tool.name, outcome, verdict);
    await record(allowed ? "allowed" : "denied");
    if (!allowed) throw new McpError(mcpErrorCodes.denied, denial, { decision_id: outcome.decisionId });
    try {
      rejectIfRevoked(dependencies.backend.revocations, caller.claims);
    } catch (error) {
      const detail = isWritError(error) ? error.detail : undefined;
      dependencies.log.info(
        {
          [logFields.decisionId]: outcome.decisionId,
          [logFields.taskId]: caller.claims.task_id,
          [logFields.jti]: caller.claims.jti,
          err: error,
        },
        "allowed MCP message not relayed: its token was revoked meanwhile",
      );
      outcome.reason = `the token was revoked before the message was relayed: ${detail ?? "revoked"}`;
      await record("failed");
      throw new McpError(mcpErrorCodes.denied, "the access token was revoked", {
        decision_id: outcome.decisionId,
      });
    }
  }

  /** Decides and audits one message; throws the JSON-RPC denial, with the decision id, when denied. */
  async function authorise(
    method: string,
    kind: McpTargetKind,
    name: string,
    args: Record<string, unknown>,
  ): Promise<McpOutcome> {
    const outcome = newMcpOutcome(method, name);
    outcome.clientIp = caller.clientIp;
    let allowed = false;
    if (kind === "resource" && uriProblem(name) !== undefined)
      outcome.reason = `resource URI rejected: ${uriProblem(name)}`;
    else allowed = await decideMcp(dependencies, caller, kind, name, args, outcome);
    if (!allowed) dependencies.risk.recordDenial(taskId);
    await enforce(outcome, allowed, `${method} "${outcome.target}" is not allowed for this task`);
    return outcome;
  }

  server.setRequestHandler(ListToolsRequestSchema, async (_request, extra) => {
    const granted = new Set(grantedActions(caller, "tool").map((action) => action.target.name));
    const tools = await listAll<McpTool>(extra.signal, (cursor) =>
      upstream(undefined, extra.signal, (client) =>
        client.request({ method: "tools/list", params: cursorParams(cursor) }, ListToolsResultSchema, {
          signal: extra.signal,
        }),
      ).then((page) => ({ items: page.tools, nextCursor: page.nextCursor })),
    );
    return { tools: tools.filter((tool) => granted.has(tool.name)) };
  });

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const outcome = await authorise(
      "tools/call",
      "tool",
      request.params.name,
      request.params.arguments ?? {},
    );
    return upstream(outcome, extra.signal, (client) =>
      client.request(
        { method: "tools/call", params: withoutProgress(request.params) },
        CallToolResultSchema,
        {
          signal: extra.signal,
          timeout: config.timeout_ms,
        },
      ),
    );
  });

  server.setRequestHandler(ListResourcesRequestSchema, async (_request, extra) => {
    const patterns = grantedActions(caller, "resource").map((action) => action.target.name);
    const resources = await listAll<Resource>(extra.signal, (cursor) =>
      upstream(undefined, extra.signal, (client) =>
        client.request(
          { method: "resources/list", params: cursorParams(cursor) },
          ListResourcesResultSchema,
          { signal: extra.signal },
        ),
      ).then((page) => ({ items: page.resources, nextCursor: page.nextCursor })),
    );
    return {
      resources: resources.filter(
        (resource) =>
          uriProblem(resource.uri) === undefined &&
          patterns.some((pattern) => matchesUriPattern(pattern, resource.uri)),
      ),
    };
  });

  server.setRequestHandler(ListResourceTemplatesRequestSchema, async (_request, extra) => {
    const patterns = grantedActions(caller, "resource").map((action) => action.target.name);
    const templates = await listAll<ResourceTemplate>(extra.signal, (cursor) =>
      upstream(undefined, extra.signal, (client) =>
        client.request(
          { method: "resources/templates/list", params: cursorParams(cursor) },
          ListResourceTemplatesResultSchema,
          {
            signal: extra.signal,
          },
        ),
      ).then((page) => ({ items: page.resourceTemplates, nextCursor: page.nextCursor })),
    );
    // A template is listed when a URI it produces, with each variable set to a sample value, is granted.
    return {
      resourceTemplates: templates.filter((template) => {
        const sample = template.uriTemplate.replace(/\{[^}]*\}/g, "1");
        return patterns.some((pattern) => matchesUriPattern(pattern, sample));
      }),
    };
  });

  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    const outcome = await authorise("resources/read", "resource", request.params.uri, {});
    return upstream(outcome, extra.signal, (client) =>
      client.request(
        { method: "resources/read", params: withoutProgress(request.params) },
        ReadResourceResultSchema,
        {
          signal: extra.signal,
          timeout: config.timeout_ms,
        },
      ),
    );
  });

  server.setRequestHandler(ListPromptsRequestSchema, async (_request, extra) => {
    const granted = new Set(grantedActions(caller, "prompt").map((action) => action.target.name));
    const prompts = await listAll<Prompt>(extra.signal, (cursor) =>
      upstream(undefined, extra.signal, (client) =>
        client.request({ method: "prompts/list", params: cursorParams(cursor) }, ListPromptsResultSchema, {
          signal: extra.signal,
        }),
      ).then((page) => ({ items: page.prompts, nextCursor: page.nextCursor })),
    );
    return { prompts: prompts.filter((prompt) => granted.has(prompt.name)) };
  });

  server.setRequestHandler(GetPromptRequestSchema, async (request, extra) => {
    const outcome = await authorise("prompts/get", "prompt", request.params.name, {});
    return upstream(outcome, extra.signal, (client) =>
      client.request(
        { method: "prompts/get", params: withoutProgress(request.params) },
        GetPromptResultSchema,
        {
          signal: extra.signal,
          timeout: config.timeout_ms,
        },
      ),
    );
  });

  /**
   * Returns whether the target of a protocol method is one the token grants: a resource URI (or a
   * completion's URI template) within a granted resource pattern, or a granted prompt. A log level
   * names nothing the task could be kept from.
   */
  function targetGranted(kind: "level" | "resource" | "prompt", target: string): boolean {
    if (kind === "level") return true;
    if (kind === "prompt")
      return grantedActions(caller, "prompt").some((action) => action.target.name === target);
    const uri = target.replace(/\{[^}]*\}/g, "1");
    return (
      uriProblem(uri) === undefined &&
      grantedActions(caller, "resource").some((action) => matchesUriPattern(action.target.name, uri))
    );
  }

  /**
   * Decides, audits and relays a protocol method that only a site policy can permit, and only on a
   * target the token grants. A denial here does not count toward the task's risk score: the gateway
   * advertises these capabilities to every task, so a client that uses them is not misbehaving.
   */
  async function relayProtocolMethod(
    method: string,
    target: { kind: "level" | "resource" | "prompt"; name: string },
    params: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    const outcome = newMcpOutcome(method, target.name);
    outcome.clientIp = caller.clientIp;
    const allowed = decideProtocolMethod(
      dependencies,
      caller,
      outcome,
      targetGranted(target.kind, target.name),
    );
    await enforce(outcome, allowed, `${method} is not allowed for this task`);
    const schema = method === "completion/complete" ? CompleteResultSchema : EmptyResultSchema;
    return upstream(outcome, signal, (client) =>
      client.request({ method, params: withoutProgress(params) }, schema, {
        signal,
        timeout: config.timeout_ms,
      }),
    );
  }

  server.setRequestHandler(SetLevelRequestSchema, (request, extra) =>
    relayProtocolMethod(
      request.method,
      { kind: "level", name: request.params.level },
      request.params,
      extra.signal,
    ),
  );
  const relaySubscription = (
    request: { method: string; params: { uri: string } },
    extra: { signal: AbortSignal },
  ): Promise<Record<string, unknown>> =>
    relayProtocolMethod(
      request.method,
      { kind: "resource", name: request.params.uri },
      request.params,
      extra.signal,
    );
  server.setRequestHandler(SubscribeRequestSchema, relaySubscription);
  server.setRequestHandler(UnsubscribeRequestSchema, relaySubscription);
  server.setRequestHandler(CompleteRequestSchema, async (request, extra) => {
    const ref = request.params.ref;
    const target =
      ref.type === "ref/prompt"
        ? { kind: "prompt" as const, name: ref.name }
        : { kind: "resource" as const, name: ref.uri };
    return (await relayProtocolMethod(request.method, target, request.params, extra.signal)) as {
      completion: { values: string[] };
    };
  });

  /** Reads every page of an upstream listing; the agent gets the filtered whole in one page. */
  async function listAll<T>(
    signal: AbortSignal,
    page: (cursor: string | undefined) => Promise<{ items: T[]; nextCursor?: string | undefined }>,
  ): Promise<T[]> {
    const items: T[] = [];
    let cursor: string | undefined;
    for (let count = 0; count < maxListPages && !signal.aborted; count += 1) {
      const result = await page(cursor);
      items.push(...result.items);
      cursor = result.nextCursor;
      if (cursor === undefined) break;
    }
    return items;
  }

  return server;
}

function cursorParams(cursor: string | undefined): { cursor: string } | undefined {
  return cursor === undefined ? undefined : { cursor };
}

/**
 * Drops the agent's progress token: progress notifications from the upstream are not relayed, and the
 * token would only make the gateway's client report an unknown token.
 */
function withoutProgress<T extends { _meta?: Record<string, unknown> | undefined }>(params: T): T {
  if (params._meta?.progressToken === undefined) return params;
  const { progressToken: _dropped, ...meta } = params._meta;
  return { ...params, _meta: meta };
}
