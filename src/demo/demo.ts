import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importJWK, type CryptoKey } from "jose";
import * as oauth from "oauth4webapi";
import { readAuditEvents } from "../audit/read.js";
import { verifyChain } from "../audit/verify.js";
import { initialise } from "../broker/init.js";
import { AdminClient, readKeyFile } from "../cli/admin-client.js";
import { generateIdentityKey } from "../identity/keys.js";
import { silentLogger } from "../log/logger.js";
import { serve } from "../server/serve.js";
import type { Task } from "../tasks/tasks.js";

/** One step of the story, as printed: what was expected and whether it happened. */
export interface DemoStep {
  step: string;
  ok: boolean;
  detail: string;
}

export interface DemoResult {
  ok: boolean;
  data_dir: string;
  steps: DemoStep[];
  counts: { allowed: number; denied: number; audit_events: number };
}

/** The credential the sample upstream demands; the gateway injects it, agents never see it. */
const upstreamCredential = "demo-upstream-credential";

/**
 * Runs the main job end to end on the embedded default. Two agents with their own keys call a tool
 * whose upstream needs its own credential, with task-bound DPoP tokens. One call is denied, one agent
 * is revoked while the other carries on, and the audit chain verifies.
 */
export async function runDemo(options: {
  dataDir?: string;
  onStep?: (step: DemoStep) => void;
}): Promise<DemoResult> {
  const root = options.dataDir === undefined ? await mkdtemp(join(tmpdir(), "writ-demo-")) : undefined;
  const dataDir = options.dataDir ?? join(root as string, "data");
  const steps: DemoStep[] = [];
  const note = (step: string, ok: boolean, detail: string): boolean => {
    const entry = { step, ok, detail };
    steps.push(entry);
    options.onStep?.(entry);
    return ok;
  };

  const upstream = await startUpstream();
  const port = await freeLoopbackPort();
  const adminKeyFile = join(dataDir, "..", `demo-admin-${port}.json`);
  await initialise({
    dataDir,
    trustDomain: "demo.example",
    listen: `127.0.0.1:${port}`,
    adminName: "Demo Admin",
    adminKeyOut: adminKeyFile,
  });
  const server = await serve({ dataDir, log: silentLogger() });
  const issuer = server.broker.context.issuer;
  let allowed = 0;
  let denied = 0;
  try {
    const admin = await AdminClient.connect({ issuer, key: await readKeyFile(adminKeyFile) });
    note("broker and gateway started", true, issuer);

    await admin.call("POST", "/v1/secrets/tracker-token", { value: upstreamCredential });
    await admin.call("POST", "/v1/tools", {
      name: "tracker",
      kind: "http",
      environment: "prod",
      actions: [
        { name: "read", spec: "GET /issues/**" },
        { name: "comment", spec: "POST /issues/*/comments" },
      ],
      config: { upstream: upstream.url, inject: ["header:Authorization=Bearer ${secret:tracker-token}"] },
    });
    const agents = await Promise.all(["triage-bot", "report-bot"].map((name) => registerAgent(admin, name)));
    note(
      "two agents registered, each with its own key",
      true,
      agents.map((agent) => agent.clientId).join(", "),
    );

    const tasks = await Promise.all([
      admin.call<Task>("POST", "/v1/tasks", {
        agent: "triage-bot",
        actions: ["tracker:read", "tracker:comment"],
        intent: "triage new issues",
        environment: "prod",
        ttl_seconds: 600,
      }),
      admin.call<Task>("POST", "/v1/tasks", {
        agent: "report-bot",
        actions: ["tracker:read"],
        intent: "weekly report",
        environment: "prod",
        ttl_seconds: 600,
      }),
    ]);
    const server_ = await oauth.processDiscoveryResponse(
      new URL(issuer),
      await oauth.discoveryRequest(new URL(issuer), {
        algorithm: "oauth2",
        [oauth.allowInsecureRequests]: true,
      }),
    );
    const sessions = await Promise.all(
      agents.map((agent, index) => agentSession(server_, agent, (tasks[index] as Task).id)),
    );
    note("each agent got a task-bound, DPoP-bound token", true, "expires with its task; no refresh token");

    const call = async (index: number, method: string, path: string): Promise<Response> => {
      const session = sessions[index] as Awaited<ReturnType<typeof agentSession>>;
      const response = await protectedRequest(session, method, `${issuer}/tools/tracker${path}`);
      if (response.ok) allowed++;
      else denied++;
      return response;
    };

    const readA = await call(0, "GET", "/issues/42");
    const readB = await call(1, "GET", "/issues/7");
    note(
      "both agents read through the gateway",
      readA.status === 200 && readB.status === 200,
      `statuses ${readA.status}, ${readB.status}`,
    );
    note(
      "the upstream saw the injected credential, never an agent token",
      upstream.sawOnlyInjected(),
      `${upstream.requests()} upstream requests`,
    );

    const outside = await call(1, "POST", "/issues/7/comments");
    const decision = ((await outside.json()) as { decision_id?: string }).decision_id ?? "";
    note(
      "report-bot's comment, outside its task, was denied",
      outside.status === 403 && decision !== "",
      `403, decision ${decision}`,
    );

    await admin.call("POST", "/v1/revoke", { agent: "triage-bot" });
    const revokedAt = Date.now();
    let cut = false;
    while (Date.now() - revokedAt < 1000 && !cut) cut = (await call(0, "GET", "/issues/42")).status === 401;
    note("triage-bot revoked: its next call fails within a second", cut, `${Date.now() - revokedAt} ms`);
    const still = await call(1, "GET", "/issues/8");
    note("report-bot keeps working", still.status === 200, `status ${still.status}`);

    await admin.call("POST", `/v1/tasks/${(tasks[1] as Task).id}/end`);
    const after = await call(1, "GET", "/issues/8");
    note(
      "report-bot's task ended: its token stopped working",
      after.status === 401,
      `status ${after.status}`,
    );

    await server.broker.context.queue.drain();
    const verdict = verifyChain(await readAuditEvents(server.broker.context.store));
    note(
      "the audit chain verifies",
      verdict.ok,
      verdict.ok ? `${verdict.events} events` : `broken at ${verdict.seq}`,
    );
    return {
      ok: steps.every((step) => step.ok),
      data_dir: dataDir,
      steps,
      counts: { allowed, denied, audit_events: verdict.events },
    };
  } catch (error) {
    note("the demo ran to the end", false, (error as Error).message);
    return { ok: false, data_dir: dataDir, steps, counts: { allowed, denied, audit_events: 0 } };
  } finally {
    await server.close();
    await upstream.close();
    await rm(adminKeyFile, { force: true });
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  }
}

async function registerAgent(
  admin: AdminClient,
  name: string,
): Promise<{ clientId: string; key: CryptoKey }> {
  const generated = await generateIdentityKey("Ed25519");
  const agent = await admin.call<{ spiffe_id: string }>("POST", "/v1/agents", {
    name,
    owner: "demo-team",
    environment: "prod",
    public_jwk: generated.publicJwk,
  });
  return { clientId: agent.spiffe_id, key: (await importJWK(generated.privateJwk, "Ed25519")) as CryptoKey };
}

async function agentSession(
  server: oauth.AuthorizationServer,
  agent: { clientId: string; key: CryptoKey },
  taskId: string,
) {
  const client: oauth.Client = { client_id: agent.clientId };
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair("ES256"));
  const response = await oauth.clientCredentialsGrantRequest(
    server,
    client,
    oauth.PrivateKeyJwt({ key: agent.key }),
    { authorization_details: JSON.stringify([{ type: "agent_task", task_id: taskId }]) },
    { DPoP: dpop, [oauth.allowInsecureRequests]: true },
  );
  const token = await oauth.processClientCredentialsResponse(server, client, response);
  return { token: token.access_token, dpop };
}

async function protectedRequest(
  session: { token: string; dpop: oauth.DPoPHandle },
  method: string,
  url: string,
): Promise<Response> {
  try {
    return await oauth.protectedResourceRequest(session.token, method, new URL(url), new Headers(), null, {
      DPoP: session.dpop,
      [oauth.allowInsecureRequests]: true,
    });
  } catch (error) {
    const response = (error as { response?: unknown }).response;
    if (response instanceof Response) return response;
    throw error;
  }
}

/** Starts a sample upstream API that accepts only its own credential and records each request. */
async function startUpstream(): Promise<{
  url: string;
  requests(): number;
  sawOnlyInjected(): boolean;
  close(): Promise<void>;
}> {
  const seen: { authorization?: string; dpop?: string }[] = [];
  const server: Server = createServer((request, response) => {
    seen.push({
      ...(request.headers.authorization === undefined
        ? {}
        : { authorization: request.headers.authorization }),
      ...(request.headers.dpop === undefined ? {} : { dpop: String(request.headers.dpop) }),
    });
    if (request.headers.authorization !== `Bearer ${upstreamCredential}`) {
      response.writeHead(401).end();
      return;
    }
    response
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ path: request.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => seen.length,
    sawOnlyInjected: () =>
      seen.length > 0 &&
      seen.every(
        (entry) => entry.authorization === `Bearer ${upstreamCredential}` && entry.dpop === undefined,
      ),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}
