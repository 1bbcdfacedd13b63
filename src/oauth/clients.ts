import { importJWK, type CryptoKey, type JWK } from "jose";
import type { BrokerContext } from "../broker/context.js";
import { algorithmOf, type ClientKey } from "../attestation/client-assertion.js";
import { getAgentBySpiffeId, type Agent } from "../identity/agents.js";
import { getHumanBySpiffeId } from "../identity/humans.js";
import { getGatewayBySpiffeId } from "../identity/gateways.js";
import { parseSpiffeId } from "../identity/spiffe.js";

/** The identity behind an authenticated client. */
export type ClientIdentity =
  | { kind: "agent"; clientId: string; name: string }
  | { kind: "human"; clientId: string; id: string; roles: string[] }
  | { kind: "gateway"; clientId: string; name: string; roles: string[] };

/**
 * Looks up the registered key of a client by its SPIFFE ID: an agent that attests with its own key,
 * or a person. Disabled identities come back with `enabled: false`.
 */
export async function findClientKey(
  context: BrokerContext,
  clientId: string,
  lookupAgent: AgentLookup = (id) => getAgentBySpiffeId(context, id),
): Promise<ClientKey | undefined> {
  const parsed = parseSpiffeId(clientId);
  if (
    parsed === undefined ||
    parsed.trustDomain !== context.config.trust_domain ||
    parsed.path.length !== 2
  ) {
    return undefined;
  }
  if (parsed.path[0] === "agent") {
    const agent = await lookupAgent(clientId);
    if (agent === undefined || agent.public_jwk === null) return undefined;
    return { clientId, publicJwk: agent.public_jwk, enabled: agent.status === "active" };
  }
  if (parsed.path[0] === "human") {
    const human = await getHumanBySpiffeId(context, clientId);
    if (human === undefined) return undefined;
    return { clientId, publicJwk: human.public_jwk, enabled: human.status === "active" };
  }
  if (parsed.path[0] === "gateway") {
    const gateway = await getGatewayBySpiffeId(context, clientId);
    if (gateway === undefined) return undefined;
    return { clientId, publicJwk: gateway.public_jwk, enabled: gateway.status === "active" };
  }
  return undefined;
}

/** Looks an agent up by SPIFFE ID; a request passes a memoised one so the agent is read once. */
export type AgentLookup = (id: string) => Promise<Agent | undefined>;

/** Returns a lookup that reads each agent at most once, for the duration of one request. */
export function memoisedAgentLookup(context: BrokerContext): AgentLookup {
  const seen = new Map<string, Promise<Agent | undefined>>();
  return (id) => {
    let agent = seen.get(id);
    if (agent === undefined) {
      agent = getAgentBySpiffeId(context, id);
      seen.set(id, agent);
    }
    return agent;
  };
}

/** Returns what an authenticated client is; undefined if it vanished since authentication. */
export async function describeClient(
  context: BrokerContext,
  clientId: string,
  lookupAgent: AgentLookup = (id) => getAgentBySpiffeId(context, id),
): Promise<ClientIdentity | undefined> {
  const parsed = parseSpiffeId(clientId);
  if (parsed?.path[0] === "agent") {
    const agent = await lookupAgent(clientId);
    return agent === undefined ? undefined : { kind: "agent", clientId, name: agent.name };
  }
  if (parsed?.path[0] === "human") {
    const human = await getHumanBySpiffeId(context, clientId);
    return human === undefined ? undefined : { kind: "human", clientId, id: human.id, roles: human.roles };
  }
  if (parsed?.path[0] === "gateway") {
    const gateway = await getGatewayBySpiffeId(context, clientId);
    return gateway === undefined
      ? undefined
      : { kind: "gateway", clientId, name: gateway.name, roles: ["gateway"] };
  }
  return undefined;
}

/** Imported public keys by thumbprint-free JWK text, so a client's key is imported once, not per request. */
const importedKeys = new Map<string, Promise<CryptoKey>>();
const maxImportedKeys = 10_000;

export function importClientKey(jwk: JWK): Promise<CryptoKey> {
  const cacheKey = JSON.stringify(jwk);
  let key = importedKeys.get(cacheKey);
  if (key === undefined) {
    if (importedKeys.size >= maxImportedKeys) importedKeys.clear();
    key = importJWK(jwk, algorithmOf(jwk)) as Promise<CryptoKey>;
    importedKeys.set(cacheKey, key);
  }
  return key;
}
