import { parseSpiffeId } from "../../identity/spiffe.js";

/** An OCSF `user` object: the identity an event names. */
export interface OcsfUser {
  uid?: string;
  name: string;
  type_id: number;
  type: string;
  domain?: string;
}

/** OCSF user `type_id` values used below (OCSF 1.3.0 `user.type_id`). */
const userTypeIds = { unknown: 0, user: 1, system: 3, other: 99 } as const;

/**
 * Describes a writ identity as an OCSF user. A person's SPIFFE ID is a User; agents and gateways are
 * Other, with `type` naming which; the broker's own timers (`writ`) are System. Anything else, such as
 * `anonymous` for an unauthenticated caller, keeps its text as the name with type Unknown.
 */
export function ocsfUser(identity: string): OcsfUser {
  if (identity === "writ") return { name: "writ", type_id: userTypeIds.system, type: "System" };
  const parsed = parseSpiffeId(identity);
  if (parsed === undefined) return { name: identity, type_id: userTypeIds.unknown, type: "Unknown" };
  const kind = parsed.path[0];
  const name = parsed.path.at(-1) ?? identity;
  const base = { uid: identity, name, domain: parsed.trustDomain };
  if (kind === "human") return { ...base, type_id: userTypeIds.user, type: "User" };
  if (kind === "agent") return { ...base, type_id: userTypeIds.other, type: "Agent" };
  if (kind === "gateway") return { ...base, type_id: userTypeIds.other, type: "Gateway" };
  return { ...base, type_id: userTypeIds.other, type: "Other" };
}

/** Returns the tool named by a tool's resource URI (`<issuer>/tools/<name>` or `<issuer>/mcp/<name>`). */
export function toolOfResource(resource: string): string | undefined {
  return /\/(?:tools|mcp)\/([^/]+)$/.exec(resource)?.[1];
}
