import { randomUUID } from "node:crypto";
import type { BrokerContext } from "../broker/context.js";
import { validateBindingSpec, type FederatedBindingSpec } from "../attestation/federation.js";
import { requireAgent } from "./agents.js";

export interface FederatedBinding {
  id: string;
  agent_name: string;
  spec: FederatedBindingSpec;
  created_at: number;
}

/**
 * Binds an agent to an external issuer. A binding that could match more than one workload is rejected
 * here, when it is created, rather than at the first token request.
 */
export async function addBinding(
  context: BrokerContext,
  actor: string,
  agentName: string,
  input: unknown,
): Promise<FederatedBinding> {
  const agent = await requireAgent(context, agentName);
  const spec = validateBindingSpec(input);
  const binding: FederatedBinding = {
    id: randomUUID(),
    agent_name: agent.name,
    spec,
    created_at: context.clock.nowMs(),
  };
  await context.audit.append(
    {
      kind: "binding.created",
      actor,
      data: {
        agent: agent.spiffe_id,
        binding_id: binding.id,
        binding_kind: spec.kind,
        issuer: spec.issuer,
        claims: spec.claims,
      },
    },
    async (trx) => {
      await trx
        .insertInto("federated_bindings")
        .values({ ...binding, spec: JSON.stringify(spec) })
        .execute();
    },
  );
  return binding;
}

export async function listBindings(context: BrokerContext, agentName: string): Promise<FederatedBinding[]> {
  const rows = await context.store.db
    .selectFrom("federated_bindings")
    .selectAll()
    .where("agent_name", "=", agentName)
    .orderBy("created_at")
    .execute();
  return rows.map((row) => ({ ...row, spec: JSON.parse(row.spec) as FederatedBindingSpec }));
}
