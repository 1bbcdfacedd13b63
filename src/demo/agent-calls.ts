import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { decodeJwt, generateKeyPair } from "jose";
import * as oauth from "oauth4webapi";
import pg from "pg";
import {
  createMcpTransport,
  dpopFetch,
  fetchSystemCredential,
  requestTaskToken,
  type AgentCredentials,
  type Fetch,
  type SystemCredential,
} from "../client/index.js";
import type { CallOutcome, DelegationResult, SqlOutcome } from "./agent-protocol.js";
import { accessTokenType, delegationTicketType, exchangeToken, redeemedRequest } from "./delegation.js";

/** Maximum length of the excerpt of a tool's response kept in an outcome, in characters. */
const excerptChars = 120;

/**
 * The state of one agent process: its own key, its task, the tokens it was issued, and its open MCP
 * and HTTP clients. Every tool call goes through the gateway with a DPoP-bound task token.
 */
export class AgentSession {
  /** Every access token the broker issued to this agent, kept for introspection at the end. */
  readonly tokens: string[] = [];
  private lastGatewayStatus = 0;
  private readonly mcpClients = new Map<string, Promise<Client>>();
  private readonly httpFetches = new Map<string, Fetch>();
  private readonly redeemed = new Map<string, { accessToken: string; dpop: oauth.DPoPHandle }>();
  /** The task's credential on a system, kept in this process only, to try it again after the task. */
  private systemCredential: SystemCredential | undefined;

  constructor(
    private readonly credentials: AgentCredentials,
    private readonly taskId: string,
  ) {}

  /**
   * A fetch that records the tokens the broker issues and the status of each gateway response. The
   * client SDK sends both its token requests and its tool requests through it.
   */
  private readonly recordingFetch: Fetch = async (url, init) => {
    const response = await fetch(url, init);
    const path = new URL(url).pathname;
    if (path === "/oauth/token") {
      if (response.ok) {
        // A body that is not JSON is left for the OAuth client to reject with its own error.
        const body = (await response
          .clone()
          .json()
          .catch(() => ({}))) as { access_token?: unknown; token_type?: unknown };
        if (typeof body.access_token === "string" && body.token_type === "DPoP")
          this.tokens.push(body.access_token);
      }
    } else if (path.startsWith("/tools/") || path.startsWith("/mcp/")) {
      this.lastGatewayStatus = response.status;
    }
    return response;
  };

  private get agent(): AgentCredentials {
    // The demo's broker listens on loopback without TLS.
    return { ...this.credentials, allowInsecureHttp: true, fetch: this.recordingFetch };
  }

  /** Calls an MCP tool through the gateway's `/mcp/<tool>` endpoint with the official SDK client. */
  async mcpCall(tool: string, name: string, args: Record<string, unknown>): Promise<CallOutcome> {
    const startedAtMs = Date.now();
    try {
      const client = await this.mcpClient(tool);
      const result = await client.callTool({ name, arguments: args });
      const content = result.content as { type?: string; text?: string }[] | undefined;
      const text = content?.find((item) => item.type === "text")?.text ?? "";
      return {
        ok: result.isError !== true,
        status: this.lastGatewayStatus,
        detail: excerpt(text),
        startedAtMs,
        endedAtMs: Date.now(),
      };
    } catch (error) {
      const data =
        error instanceof McpError ? (error.data as { decision_id?: unknown } | undefined) : undefined;
      return {
        ok: false,
        status: this.lastGatewayStatus,
        ...(typeof data?.decision_id === "string" ? { decisionId: data.decision_id } : {}),
        ...(error instanceof McpError ? { rpcCode: error.code } : {}),
        detail: excerpt(messageOf(error)),
        startedAtMs,
        endedAtMs: Date.now(),
      };
    }
  }

  /** Calls an HTTP tool through the gateway's `/tools/<tool>` endpoint. */
  async httpCall(tool: string, method: string, path: string, body?: string): Promise<CallOutcome> {
    const startedAtMs = Date.now();
    const url = `${this.credentials.issuer}/tools/${tool}${path}`;
    try {
      const redeemed = this.redeemed.get(tool);
      const response =
        redeemed === undefined
          ? await this.httpFetch(tool)(url, {
              method,
              ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } }),
            })
          : await redeemedRequest(redeemed, method, url, body);
      return { ...(await readOutcome(response)), startedAtMs, endedAtMs: Date.now() };
    } catch (error) {
      return {
        ok: false,
        status: this.lastGatewayStatus,
        detail: excerpt(messageOf(error)),
        startedAtMs,
        endedAtMs: Date.now(),
      };
    }
  }

  /**
   * Runs one SQL query on a system as the task's own role. The credential is fetched from the broker
   * unless `reuseCredential` selects the one fetched before, as when checking that it stopped working.
   */
  async postgresQuery(system: string, sql: string, reuseCredential: boolean): Promise<SqlOutcome> {
    const startedAtMs = Date.now();
    if (!reuseCredential || this.systemCredential === undefined) {
      this.systemCredential = await fetchSystemCredential(this.agent, {
        taskId: this.taskId,
        system,
        dpopKeys: await generateKeyPair("ES256"),
      });
    }
    const credential = this.systemCredential;
    const client = new pg.Client({
      host: credential.host,
      port: credential.port,
      user: credential.role,
      password: credential.password,
      database: credential.database,
    });
    // A session the server ends raises an error event; the query's own rejection reports it.
    client.on("error", noop);
    try {
      await client.connect();
      const result = await client.query(sql);
      const detail = `${result.rowCount ?? 0} rows`;
      return { ok: true, status: 0, role: credential.role, detail, startedAtMs, endedAtMs: Date.now() };
    } catch (error) {
      const detail = excerpt(messageOf(error));
      return { ok: false, status: 0, role: credential.role, detail, startedAtMs, endedAtMs: Date.now() };
    } finally {
      await client.end().catch(noop);
    }
  }

  /**
   * Delegates part of this agent's task by token exchange (RFC 8693): the agent obtains its own token
   * for `tool`, then exchanges it for a single-use delegation ticket that names the sub-agent and the
   * narrower actions. The broker creates the delegated task with the ticket.
   */
  async delegate(
    tool: string,
    delegate: string,
    actions: string[],
    intent: string,
  ): Promise<DelegationResult> {
    const dpopKeys = await generateKeyPair("ES256");
    const subject = await requestTaskToken(this.agent, {
      taskId: this.taskId,
      resource: `${this.credentials.issuer}/tools/${tool}`,
      dpopKeys,
    });
    const ticket = await exchangeToken(this.credentials, dpopKeys, {
      subject_token: subject.accessToken,
      subject_token_type: accessTokenType,
      requested_token_type: delegationTicketType,
      audience: delegate,
      authorization_details: JSON.stringify([{ type: "agent_task", actions, intent }]),
    });
    const taskId = decodeJwt(ticket).task_id;
    if (typeof taskId !== "string") throw new Error("the delegation ticket names no task_id");
    return { ticket, taskId };
  }

  /** Redeems a delegation ticket for this agent's own token for `tool`, bound to a new DPoP key. */
  async redeem(tool: string, ticket: string): Promise<void> {
    const dpopKeys = await generateKeyPair("ES256");
    const accessToken = await exchangeToken(this.credentials, dpopKeys, {
      subject_token: ticket,
      subject_token_type: delegationTicketType,
      resource: `${this.credentials.issuer}/tools/${tool}`,
    });
    this.tokens.push(accessToken);
    const client: oauth.Client = { client_id: this.credentials.clientId };
    const dpop = oauth.DPoP(client, dpopKeys as oauth.CryptoKeyPair);
    this.redeemed.set(tool, { accessToken, dpop });
  }

  async close(): Promise<void> {
    for (const client of this.mcpClients.values()) await client.then((connected) => connected.close(), noop);
  }

  private mcpClient(tool: string): Promise<Client> {
    let client = this.mcpClients.get(tool);
    if (client === undefined) {
      const connected = new Client({ name: this.credentials.clientId, version: "1" });
      client = connected
        .connect(
          createMcpTransport({
            ...this.agent,
            url: `${this.credentials.issuer}/mcp/${tool}`,
            taskId: this.taskId,
          }),
        )
        .then(() => connected);
      // A failed connection is not kept, so that the next call tries again and reports its own error.
      client.catch(() => this.mcpClients.delete(tool));
      this.mcpClients.set(tool, client);
    }
    return client;
  }

  private httpFetch(tool: string): Fetch {
    let fetcher = this.httpFetches.get(tool);
    if (fetcher === undefined) {
      const url = `${this.credentials.issuer}/tools/${tool}`;
      const signed = dpopFetch({ ...this.agent, url, resource: url, taskId: this.taskId });
      fetcher = (target, init) => signed(target, init);
      this.httpFetches.set(tool, fetcher);
    }
    return fetcher;
  }
}

async function readOutcome(response: Response): Promise<Omit<CallOutcome, "startedAtMs" | "endedAtMs">> {
  const text = await response.text();
  let decisionId = response.headers.get("writ-decision-id") ?? undefined;
  if (decisionId === undefined) {
    try {
      const parsed = JSON.parse(text) as { decision_id?: unknown };
      if (typeof parsed.decision_id === "string") decisionId = parsed.decision_id;
    } catch {
      // Not JSON: the upstream's own body, which carries no decision id.
    }
  }
  return {
    ok: response.ok,
    status: response.status,
    ...(decisionId === undefined ? {} : { decisionId }),
    detail: excerpt(text),
  };
}

function excerpt(text: string): string {
  // Control characters and runs of white space become one space, so an excerpt fits on one line.
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\s\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
  return flat.length > excerptChars ? `${flat.slice(0, excerptChars - 3)}...` : flat;
}

function messageOf(error: unknown): string {
  if (error instanceof oauth.ResponseBodyError) return `${error.error}: ${error.error_description ?? ""}`;
  return error instanceof Error ? error.message : String(error);
}

function noop(): void {}
