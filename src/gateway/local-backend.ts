import { sendAlert } from "../alerts/alerts.js";
import { requestStepUp } from "../approvals/step-up.js";
import type { BrokerContext } from "../broker/context.js";
import { readSecret } from "../secrets/secrets.js";
import { readTaskCredential } from "../leases/credentials.js";
import { logFields } from "../log/fields.js";
import { getTask } from "../tasks/tasks.js";
import { getTool, type Tool } from "../tools/registry.js";
import type { GatewayBackend, TaskFacts, VerificationKey } from "./backend.js";
import { RevocationState } from "./revocation-state.js";

/** How long a tool's registration is cached before it is read again, in milliseconds. */
const toolCacheMs = 1000;
/** How long an opened secret is kept in memory for injection, in milliseconds. */
const secretCacheMs = 5000;

/**
 * The backend of the gateway embedded in the broker's process: it reads the broker's own keys,
 * store and feed. The revocation state follows the feed, and counts each successful poll of the
 * store as a heartbeat, so a store that stops answering makes the gateway fail closed.
 */
export async function createLocalBackend(
  context: BrokerContext,
  silenceBoundMs: number,
): Promise<GatewayBackend> {
  const revocations = new RevocationState(context.clock, silenceBoundMs);
  const unsubscribe = context.feed.subscribe((event) => revocations.apply(event));
  const stopHeartbeat = context.feed.onPoll(() => revocations.heard());
  revocations.loadSnapshot(context.feed.cursor(), await context.feed.snapshot());

  const tools = new Map<string, { tool: Tool | undefined; atMs: number }>();
  const tasks = new Map<string, TaskFacts>();
  const secrets = new Map<string, { value: string; atMs: number }>();

  return {
    issuer: context.issuer,
    publicUrl: context.issuer,
    revocations,
    policy: context.policy,
    async verificationKey(kid: string): Promise<VerificationKey | undefined> {
      const key = context.keys.find(kid);
      return key === undefined ? undefined : { key: key.publicKey, alg: key.alg };
    },
    async tool(name: string) {
      const cached = tools.get(name);
      if (cached !== undefined && context.clock.nowMs() - cached.atMs < toolCacheMs) return cached.tool;
      const tool = await getTool(context, name);
      tools.set(name, { tool, atMs: context.clock.nowMs() });
      return tool;
    },
    async task(id: string) {
      const cached = tasks.get(id);
      if (cached !== undefined) return cached;
      const task = await getTask(context, id);
      if (task === undefined) return undefined;
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
    },
    async record(event) {
      await context.audit.append(event);
      const breakglassId = event.data?.breakglass_id;
      if (event.kind === "tool_call.allowed" && typeof breakglassId === "string") {
        sendAlert(context, "breakglass.used", {
          breakglass_id: breakglassId,
          task_id: event.task_id ?? null,
          actor: event.actor,
          tool: event.data?.tool ?? null,
          action: event.data?.action ?? null,
          decision_id: event.data?.decision_id ?? null,
        });
      }
    },
    async stepUp(request) {
      return requestStepUp(context, request);
    },
    async systemCredential(system: string, taskId: string) {
      const credential = await readTaskCredential(context, system, taskId);
      context.log.info(
        { [logFields.taskId]: taskId, system, lease_id: credential.lease_id },
        "system credential injected",
      );
      return { url: credential.url, password: credential.password };
    },
    async secret(_tool: string, name: string) {
      // Opened secrets are kept in memory briefly, so a busy tool does not read and decrypt per call;
      // a replaced secret takes effect within that time.
      const cached = secrets.get(name);
      if (cached !== undefined && context.clock.nowMs() - cached.atMs < secretCacheMs) return cached.value;
      const value = (await readSecret(context, name)).toString("utf8");
      secrets.set(name, { value, atMs: context.clock.nowMs() });
      return value;
    },
    async close() {
      unsubscribe();
      stopHeartbeat();
    },
  };
}
