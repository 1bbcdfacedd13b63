/**
 * One demo agent, run as its own process by `writ demo`. It generates its own Ed25519 key, hands
 * the operator only the public half, and makes tool calls through the gateway with the client SDK
 * (`writ/client`) and the official MCP SDK client when the operator asks it to. The operator acts
 * in place of the agent's own plan, so that the demo's story runs in a fixed order.
 */
import { exportJWK, generateKeyPair, type CryptoKey } from "jose";
import { AgentSession } from "./agent-calls.js";
import type { AgentReply, AgentRequest, CallOutcome, IdentityResult, RepeatEvent } from "./agent-protocol.js";

let privateKey: CryptoKey | undefined;
let session: AgentSession | undefined;
let repeating = false;

function send(message: AgentReply | RepeatEvent): void {
  // Once the operator has disconnected, no one receives the message and the process is about to exit.
  if (process.connected) process.send?.(message);
}

function requireSession(): AgentSession {
  if (session === undefined) throw new Error("the agent has no task yet: send configure first");
  return session;
}

async function handle(request: AgentRequest): Promise<unknown> {
  switch (request.op) {
    case "identity": {
      const pair = await generateKeyPair("Ed25519");
      privateKey = pair.privateKey;
      const result: IdentityResult = { publicJwk: { ...(await exportJWK(pair.publicKey)), alg: "Ed25519" } };
      return result;
    }
    case "configure":
      if (privateKey === undefined) throw new Error("the agent has no key yet: send identity first");
      session = new AgentSession(
        { issuer: request.issuer, clientId: request.clientId, privateKey },
        request.taskId,
      );
      return {};
    case "mcp_call":
      return requireSession().mcpCall(request.tool, request.name, request.arguments);
    case "http_call":
      return requireSession().httpCall(request.tool, request.method, request.path, request.body);
    case "delegate":
      return requireSession().delegate(request.tool, request.delegate, request.actions, request.intent);
    case "redeem":
      await requireSession().redeem(request.tool, request.ticket);
      return {};
    case "postgres_query":
      return requireSession().postgresQuery(request.system, request.sql, request.reuseCredential);
    case "repeat":
      startRepeating(requireSession(), request);
      return {};
    case "tokens":
      return { tokens: session?.tokens ?? [] };
    case "close":
      repeating = false;
      await session?.close();
      return {};
  }
}

/**
 * Repeats one HTTP call every `intervalMs` until a call fails or the agent is closed, reporting each
 * outcome as it comes. This is the agent at work while the operator acts.
 */
function startRepeating(
  current: AgentSession,
  request: { tool: string; method: string; path: string; intervalMs: number },
): void {
  repeating = true;
  void (async () => {
    while (repeating) {
      const outcome: CallOutcome = await current.httpCall(request.tool, request.method, request.path);
      send({ event: "repeat", outcome });
      if (!outcome.ok) break;
      await new Promise((resolve) => setTimeout(resolve, request.intervalMs));
    }
    repeating = false;
  })();
}

process.on("message", (message: AgentRequest) => {
  handle(message).then(
    (result) => send({ id: message.id, ok: true, result }),
    (error: unknown) =>
      send({ id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
  );
});
// The operator's process going away ends the agent, so no agent outlives a demo.
process.on("disconnect", () => process.exit(0));
