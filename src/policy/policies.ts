import * as cedar from "@cedar-policy/cedar-wasm/nodejs";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { listTools } from "../tools/registry.js";
import { defaultPolicies, defaultPolicyPrefix } from "./defaults.js";

export interface StoredPolicy {
  id: string;
  text: string;
  created_by: string;
  created_at: number;
  updated_at: number;
}

/** Policy ids: letters, digits, `.`, `-`, `_`. */
const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Splits Cedar text into policies keyed by id: each policy's `@id("…")` annotation, else `prefix`
 * with a counter. Throws `invalid_request` on a parse error, a bad or duplicate id, or a shipped id.
 */
export function splitPolicies(text: string, prefix: string): Record<string, string> {
  const parts = cedar.policySetTextToParts(text);
  if (parts.type === "failure") {
    throw new WritError(
      "invalid_request",
      `invalid policy text: ${parts.errors.map((e) => e.message).join("; ")}`,
    );
  }
  if (parts.policy_templates.length > 0)
    throw new WritError("invalid_request", "policy templates are not supported");
  if (parts.policies.length === 0) throw new WritError("invalid_request", "the policy text holds no policy");
  const policies: Record<string, string> = {};
  parts.policies.forEach((policy, index) => {
    const json = cedar.policyToJson(policy);
    const annotated = json.type === "success" ? json.json.annotations?.id : undefined;
    const id = annotated ?? (parts.policies.length === 1 ? prefix : `${prefix}.${index + 1}`);
    if (!idPattern.test(id))
      throw new WritError(
        "invalid_request",
        `invalid policy id "${id}": use letters, digits, '.', '-' or '_'`,
      );
    if (id.startsWith(defaultPolicyPrefix))
      throw new WritError("invalid_request", `policy id "${id}" is reserved for shipped policies`);
    if (id in policies) throw new WritError("invalid_request", `policy id "${id}" is given twice`);
    policies[id] = policy;
  });
  return policies;
}

/** Adds or replaces site policies after validating them with those in force against the schema. */
export async function addPolicies(
  context: BrokerContext,
  actor: string,
  text: string,
  prefix: string,
): Promise<StoredPolicy[]> {
  const policies = splitPolicies(text, prefix);
  const problems = context.policy.check(await listTools(context), policies);
  if (problems.length > 0)
    throw new WritError("invalid_request", `policy does not validate: ${problems.join("; ")}`);

  const now = context.clock.nowMs();
  const existing = new Set(
    (
      await context.store.db
        .selectFrom("policies")
        .select("id")
        .where("id", "in", Object.keys(policies))
        .execute()
    ).map((row) => row.id),
  );
  const stored: StoredPolicy[] = [];
  for (const [id, policy] of Object.entries(policies)) {
    const replaced = existing.has(id);
    await context.audit.append(
      { kind: replaced ? "policy.updated" : "policy.created", actor, data: { policy_id: id, text: policy } },
      async (trx) => {
        if (replaced) {
          await trx
            .updateTable("policies")
            .set({ text: policy, updated_at: now })
            .where("id", "=", id)
            .execute();
        } else {
          await trx
            .insertInto("policies")
            .values({ id, text: policy, created_by: actor, created_at: now, updated_at: now })
            .execute();
        }
      },
    );
    stored.push({ id, text: policy, created_by: actor, created_at: now, updated_at: now });
  }
  await reloadPolicies(context);
  return stored;
}

/** Removes a site policy. */
export async function removePolicy(context: BrokerContext, actor: string, id: string): Promise<void> {
  const row = await context.store.db
    .selectFrom("policies")
    .select("id")
    .where("id", "=", id)
    .executeTakeFirst();
  if (row === undefined) throw new WritError("not_found", `policy "${id}" not found`);
  await context.audit.append({ kind: "policy.removed", actor, data: { policy_id: id } }, async (trx) => {
    await trx.deleteFrom("policies").where("id", "=", id).execute();
  });
  await reloadPolicies(context);
}

export async function listSitePolicies(context: BrokerContext): Promise<StoredPolicy[]> {
  return context.store.db.selectFrom("policies").selectAll().orderBy("id").execute();
}

/** Returns the shipped and site policies in force, keyed by id. */
export async function policiesInForce(context: BrokerContext): Promise<Record<string, string>> {
  const site = await listSitePolicies(context);
  return { ...defaultPolicies, ...Object.fromEntries(site.map((policy) => [policy.id, policy.text])) };
}

/** Loads the schema of the registered tools and the site policies into the engine. */
export async function reloadPolicies(context: BrokerContext): Promise<void> {
  const site = await listSitePolicies(context);
  context.policy.load(
    await listTools(context),
    Object.fromEntries(site.map((policy) => [policy.id, policy.text])),
  );
}
