import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import { WritError } from "../errors/writ-error.js";
import { getAgent } from "../identity/agents.js";
import { getHumanBySpiffeId } from "../identity/humans.js";
import { recordIssuance } from "../oauth/token-endpoint.js";
import { mintAccessToken } from "../tokens/access-token.js";
import { getTool } from "../tools/registry.js";
import { isTaskLive, requireTask } from "./tasks.js";

export interface JoinToken {
  access_token: string;
  token_type: "DPoP";
  expires_in: number;
  task_id: string;
  resource: string;
}

/**
 * Gives a person a short-lived token to act in an agent's task while troubleshooting, so nobody ever
 * borrows the agent's token. Its `sub` is the task's principal and its `act` the person. It carries
 * `task_join` so that policies can demand more, and it is bound to the person's own registered key.
 */
export async function joinTask(
  context: BrokerContext,
  person: string,
  taskId: string,
  toolName: string,
): Promise<JoinToken> {
  const task = await requireTask(context, taskId);
  const nowS = epochSeconds(context.clock);
  if (!isTaskLive(task, nowS)) throw new WritError("conflict", `task "${taskId}" is ${task.status}`);
  const tool = await getTool(context, toolName);
  if (tool === undefined || !task.tools.includes(tool.name)) {
    throw new WritError("not_found", `tool "${toolName}" is not a tool of task "${taskId}"`);
  }
  const human = await getHumanBySpiffeId(context, person);
  const agent = await getAgent(context, task.agent_name);
  if (human === undefined || agent === undefined)
    throw new WritError("not_found", "the person or the task's agent is not registered");

  const actions = task.actions
    .filter((entry) => entry.startsWith(`${tool.name}:`))
    .map((entry) => entry.slice(tool.name.length + 1));
  const expiresAtS = Math.min(nowS + context.config.access_token_ttl_seconds, task.deadline_s);
  const { token, claims } = await mintAccessToken(
    {
      issuer: context.issuer,
      subject: task.subject ?? agent.spiffe_id,
      clientId: person,
      audience: tool.resource_uri,
      jkt: human.jkt,
      expiresAtS,
      taskId: task.id,
      authorizationDetails: [
        {
          type: "agent_task",
          task_id: task.id,
          locations: [tool.resource_uri],
          actions,
          environment: task.environment,
        },
      ],
      actors: [person],
      taskJoin: true,
    },
    context,
  );
  await context.audit.append({
    kind: "task.joined",
    actor: person,
    task_id: task.id,
    jti: claims.jti,
    data: { sub: claims.sub, tool: tool.name, actions, jkt: human.jkt },
  });
  await recordIssuance(context, claims, `join:${task.id}`);
  return {
    access_token: token,
    token_type: "DPoP",
    expires_in: expiresAtS - nowS,
    task_id: task.id,
    resource: tool.resource_uri,
  };
}
