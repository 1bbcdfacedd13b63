import { importJWK, type JWK } from "jose";
import type { Logger } from "pino";
import { alertKidPrefix } from "../alerts/alert-key.js";
import type { StepUpResult } from "../approvals/step-up.js";
import type { AuditInput } from "../audit/log.js";
import type { AdminClient } from "../cli/admin-client.js";
import type { Clock } from "../clock.js";
import { PolicyEngine } from "../policy/engine.js";
import type { Task } from "../tasks/tasks.js";
import type { Tool } from "../tools/registry.js";
import type { GatewayBackend, TaskFacts, VerificationKey } from "./backend.js";
import { FeedFollower } from "./feed-follower.js";
import { RevocationState } from "./revocation-state.js";
import type { AuditSpool } from "./spool.js";

/** The shortest interval between two key set fetches caused by unknown `kid`s, in milliseconds. */
const keySetRefreshMs = 30_000;
/** How long tools, policies and credentials are used before they are fetched again, in milliseconds. */
const refreshMs = 5000;
/** First retry delay while no copy of the policies has been fetched, doubling up to `refreshMs`. */
const policyRetryInitialMs = 250;
/** Periodic refreshes between two key set fetches: with `refreshMs`, once a minute. */
const keyRefreshEvery = 12;
/** How long the gateway waits for the first snapshot at start before serving (and denying). */
const firstSnapshotWaitMs = 5000;

export interface RemoteBackendOptions {
  client: AdminClient;
  /** This gateway's registered name, the last segment of its SPIFFE ID. */
  gatewayName: string;
  issuer: string;
  publicUrl: string;
  spool: AuditSpool;
  clock: Clock;
  log: Logger;
  silenceBoundMs: number;
}

/**
 * The backend of a gateway that runs apart from the broker, as its own registered identity. It
 * reads keys, tools, tasks, policies and credentials from the broker's API and keeps the last good
 * copy when the broker is unreachable, follows the revocation feed (failing closed past the silence
 * bound), and makes each decision durable in its local spool before the request goes on.
 */
export async function createRemoteBackend(options: RemoteBackendOptions): Promise<GatewayBackend> {
  const { client, log } = options;
  const revocations = new RevocationState(options.clock, options.silenceBoundMs);
  const follower = new FeedFollower(client, revocations, log);
  const policy = new PolicyEngine();
  const keys = new Map<string, VerificationKey>();
  let keysFetchedAtMs = -Infinity;
  const tools = new Map<string, { tool: Tool | undefined; atMs: number }>();
  // An HTTP tool is served only by the gateways it is assigned to, which alone may fetch its secrets.
  // Any other HTTP tool is unknown here, so its requests get 404 before anything is decided.
  const servedHere = (tool: Tool): Tool | undefined => {
    if (tool.kind !== "http") return tool;
    const assigned = (tool.config as { gateways?: unknown }).gateways;
    return Array.isArray(assigned) && assigned.includes(options.gatewayName) ? tool : undefined;
  };
  const tasks = new Map<string, TaskFacts>();
  const secrets = new Map<string, { value: string; atMs: number }>();

  let inFlight: Promise<void> | undefined;
  // Loads the key set. Only fetches caused by an unknown `kid` count toward the rate limit, so the
  // fetch at start or a periodic one never delays picking up a key rotated right after it.
  const fetchKeys = (countsTowardLimit: boolean): Promise<void> => {
    inFlight ??= loadKeys(countsTowardLimit).finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  const loadKeys = async (countsTowardLimit: boolean): Promise<void> => {
    const previousFetchMs = keysFetchedAtMs;
    if (countsTowardLimit) keysFetchedAtMs = options.clock.nowMs();
    try {
      const response = await fetch(`${options.issuer}/jwks.json`);
      if (!response.ok) throw new Error(`JWKS request failed with status ${response.status}`);
      const { keys: published } = (await response.json()) as { keys: JWK[] };
      for (const jwk of published) {
        if (typeof jwk.kid !== "string" || typeof jwk.alg !== "string" || keys.has(jwk.kid)) continue;
        // The alert key only signs alerts; a gateway never verifies a token with it.
        if (jwk.kid.startsWith(alertKidPrefix)) continue;
        keys.set(jwk.kid, { key: (await importJWK(jwk, jwk.alg)) as VerificationKey["key"], alg: jwk.alg });
      }
    } catch (error) {
      // A failed fetch learned no keys, so it does not delay the next one: a gateway started while
      // the broker was down would otherwise reject every token for the rest of the interval.
      keysFetchedAtMs = previousFetchMs;
      throw error;
    }
  };

  // Until a first copy of the policies arrives every call is denied, so the fetch is retried sooner.
  let policyLoaded = false;
  const refreshPolicy = async (): Promise<void> => {
    const [{ tools: registered }, { site }] = await Promise.all([
      client.call<{ tools: Tool[] }>("GET", "/v1/tools"),
      client.call<{ site: { id: string; text: string }[] }>("GET", "/v1/policies"),
    ]);
    policy.load(registered, Object.fromEntries(site.map((entry) => [entry.id, entry.text])));
    policyLoaded = true;
    const now = options.clock.nowMs();
    for (const tool of registered) tools.set(tool.name, { tool: servedHere(tool), atMs: now });
  };

  let refreshes = 0;
  const refresh = async (): Promise<void> => {
    try {
      // Keys are also fetched once a minute, so rotations are known before the first token needs them.
      if (++refreshes % keyRefreshEvery === 0) await fetchKeys(false);
      await refreshPolicy();
    } catch (error) {
      log.warn({ err: error }, "refreshing tools and policies from the broker failed; keeping the last copy");
    }
  };

  await Promise.allSettled([fetchKeys(false), refreshPolicy()]).then((results) => {
    for (const result of results) {
      if (result.status === "rejected")
        log.warn({ err: result.reason }, "initial fetch from the broker failed");
    }
  });
  await follower.start(firstSnapshotWaitMs);
  let timer: NodeJS.Timeout | undefined;
  let retryMs = policyRetryInitialMs;
  const scheduleRefresh = (): void => {
    const delayMs = policyLoaded ? refreshMs : retryMs;
    retryMs = Math.min(retryMs * 2, refreshMs);
    timer = setTimeout(() => {
      void refresh().finally(() => {
        if (timer !== undefined) scheduleRefresh();
      });
    }, delayMs);
    timer.unref();
  };
  scheduleRefresh();

  return {
    issuer: options.issuer,
    publicUrl: options.publicUrl,
    revocations,
    policy,
    async verificationKey(kid) {
      const known = keys.get(kid);
      if (known !== undefined) return known;
      if (inFlight === undefined && options.clock.nowMs() - keysFetchedAtMs < keySetRefreshMs)
        return undefined;
      try {
        await fetchKeys(true);
      } catch (error) {
        log.warn({ err: error, kid }, "fetching the broker's JWKS failed");
      }
      return keys.get(kid);
    },
    async tool(name) {
      const cached = tools.get(name);
      if (cached !== undefined && options.clock.nowMs() - cached.atMs < refreshMs) return cached.tool;
      try {
        const tool = servedHere(await client.call<Tool>("GET", `/v1/tools/${encodeURIComponent(name)}`));
        tools.set(name, { tool, atMs: options.clock.nowMs() });
        return tool;
      } catch (error) {
        if ((error as { status?: number }).status === 404) {
          tools.set(name, { tool: undefined, atMs: options.clock.nowMs() });
          return undefined;
        }
        log.warn({ err: error, tool: name }, "fetching a tool from the broker failed; using the last copy");
        return cached?.tool;
      }
    },
    async task(id) {
      const cached = tasks.get(id);
      if (cached !== undefined) return cached;
      try {
        const task = await client.call<Task>("GET", `/v1/tasks/${encodeURIComponent(id)}`);
        const facts: TaskFacts = {
          id: task.id,
          intent: task.intent,
          environment: task.environment,
          deadline_s: task.deadline_s,
          initiator: task.initiator,
          depth: task.depth,
        };
        tasks.set(id, facts);
        return facts;
      } catch (error) {
        log.warn({ err: error, task_id: id }, "fetching a task from the broker failed");
        return undefined;
      }
    },
    async record(event: AuditInput) {
      await options.spool.append(event);
    },
    // NOTE: calls under break-glass through a separate gateway reach the broker's audit log by the
    // spool but send no `breakglass.used` alert; only the embedded gateway sends it.
    async stepUp(request) {
      return client.call<StepUpResult>("POST", "/v1/approvals/step-up", request);
    },
    async secret(tool, name) {
      const key = `${tool}\u0000${name}`;
      const cached = secrets.get(key);
      if (cached !== undefined && options.clock.nowMs() - cached.atMs < refreshMs) return cached.value;
      try {
        const { value } = await client.call<{ value: string }>(
          "GET",
          `/v1/credentials/${encodeURIComponent(tool)}/${encodeURIComponent(name)}`,
        );
        secrets.set(key, { value, atMs: options.clock.nowMs() });
        return value;
      } catch (error) {
        if (cached !== undefined) {
          log.warn({ err: error, tool }, "fetching a credential failed; using the copy in memory");
          return cached.value;
        }
        throw error;
      }
    },
    async close() {
      clearTimeout(timer);
      timer = undefined;
      follower.stop();
      await options.spool.close();
    },
  };
}
