import type { JWK } from "jose";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { publicMembers } from "./keys.js";
import { pathSegmentProblem, spiffeId } from "./spiffe.js";
import { calculateJwkThumbprint } from "jose";
import type { AgentsTable } from "../store/schema.js";

export type AgentStatus = "active" | "disabled";

export interface Agent {
  name: string;
  spiffe_id: string;
  owner: string;
  environment: string;
  status: AgentStatus;
  /** `key` for private_key_jwt with a registered key; `federated` for platform JWTs. */
  attestation: "key" | "federated";
  public_jwk: JWK | null;
  jkt: string | null;
  created_at: number;
  updated_at: number;
}

export interface NewAgent {
  name: string;
  owner: string;
  environment: string;
  /** The agent's public key; absent for an agent that attests only with a federated binding. */
  public_jwk?: JWK;
}

/** Environments are short lowercase names such as `dev`, `staging` or `prod`. */
const environmentPattern = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function environmentProblem(environment: string): string | undefined {
  return environmentPattern.test(environment)
    ? undefined
    : "an environment is 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit";
}

/** Registers an agent; the change takes effect only once its audit event is durable. */
export async function addAgent(context: BrokerContext, actor: string, input: NewAgent): Promise<Agent> {
  const nameProblem = pathSegmentProblem(input.name);
  if (nameProblem !== undefined)
    throw new WritError("invalid_request", `invalid agent name "${input.name}": ${nameProblem}`);
  const envProblem = environmentProblem(input.environment);
  if (envProblem !== undefined) {
    throw new WritError("invalid_request", `invalid environment "${input.environment}": ${envProblem}`);
  }
  if (input.owner.trim().length === 0)
    throw new WritError("invalid_request", "an agent needs an accountable owner");

  let publicJwk: JWK | null = null;
  let jkt: string | null = null;
  if (input.public_jwk !== undefined) {
    try {
      publicJwk = publicMembers(input.public_jwk);
      jkt = await calculateJwkThumbprint(publicJwk, "sha256");
    } catch (error) {
      throw new WritError(
        "invalid_request",
        `invalid public key for agent "${input.name}": ${(error as Error).message}`,
      );
    }
  }

  const now = context.clock.nowMs();
  const agent: Agent = {
    name: input.name,
    spiffe_id: spiffeId(context.config.trust_domain, "agent", input.name),
    owner: input.owner,
    environment: input.environment,
    status: "active",
    attestation: publicJwk === null ? "federated" : "key",
    public_jwk: publicJwk,
    jkt,
    created_at: now,
    updated_at: now,
  };

  const existing = await getAgent(context, input.name);
  if (existing !== undefined) throw new WritError("conflict", `agent "${input.name}" already exists`);
  await context.audit.append(
    {
      kind: "agent.created",
      actor,
      data: { agent: agent.spiffe_id, owner: agent.owner, environment: agent.environment, jkt: agent.jkt },
    },
    async (trx) => {
      await trx.insertInto("agents").values(toRow(agent)).execute();
    },
  );
  return agent;
}

export async function getAgent(context: BrokerContext, name: string): Promise<Agent | undefined> {
  const row = await context.store.db
    .selectFrom("agents")
    .selectAll()
    .where("name", "=", name)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function getAgentBySpiffeId(context: BrokerContext, id: string): Promise<Agent | undefined> {
  const row = await context.store.db
    .selectFrom("agents")
    .selectAll()
    .where("spiffe_id", "=", id)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function listAgents(context: BrokerContext): Promise<Agent[]> {
  const rows = await context.store.db.selectFrom("agents").selectAll().orderBy("name").execute();
  return rows.map(fromRow);
}

/** Returns the agent, or a `not_found` error that reads the same whether it is missing or hidden. */
export async function requireAgent(context: BrokerContext, name: string): Promise<Agent> {
  const agent = await getAgent(context, name);
  if (agent === undefined) throw new WritError("not_found", `agent "${name}" not found`);
  return agent;
}

/** Enables or disables an agent. A disabled agent gets no new token and fails client authentication. */
export async function setAgentStatus(
  context: BrokerContext,
  actor: string,
  name: string,
  status: AgentStatus,
): Promise<Agent> {
  const agent = await requireAgent(context, name);
  const now = context.clock.nowMs();
  await context.audit.append(
    {
      kind: status === "active" ? "agent.enabled" : "agent.disabled",
      actor,
      data: { agent: agent.spiffe_id },
    },
    async (trx) => {
      await trx.updateTable("agents").set({ status, updated_at: now }).where("name", "=", name).execute();
    },
  );
  return { ...agent, status, updated_at: now };
}

function toRow(agent: Agent): AgentsTable {
  return {
    ...agent,
    public_jwk: agent.public_jwk === null ? null : JSON.stringify(agent.public_jwk),
  };
}

function fromRow(row: AgentsTable): Agent {
  return {
    ...row,
    status: row.status as AgentStatus,
    attestation: row.attestation as Agent["attestation"],
    public_jwk: row.public_jwk === null ? null : (JSON.parse(row.public_jwk) as JWK),
  };
}
