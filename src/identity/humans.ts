import { randomUUID } from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import type { HumansTable } from "../store/schema.js";
import { publicMembers } from "./keys.js";
import { spiffeId } from "./spiffe.js";

/** What a person may do: administer writ, approve requests, or read the audit log. */
export type Role = "admin" | "approver" | "auditor";

const knownRoles: readonly Role[] = ["admin", "approver", "auditor"];

/** A person. The SPIFFE ID carries a random UUID; the name and e-mail are attributes, never identifiers. */
export interface Human {
  id: string;
  spiffe_id: string;
  display_name: string;
  email: string | null;
  roles: Role[];
  public_jwk: JWK;
  jkt: string;
  status: "active" | "disabled";
  created_at: number;
}

export interface NewHuman {
  display_name: string;
  email?: string | null;
  roles: string[];
  public_jwk: JWK;
}

/** Registers a person with their own key. `actor` is the admin who adds them, or the person at init. */
export async function addHuman(
  context: Pick<BrokerContext, "config" | "clock" | "audit">,
  actor: string | null,
  input: NewHuman,
): Promise<Human> {
  const roles = [...new Set(input.roles)];
  const unknown = roles.find((role) => !knownRoles.includes(role as Role));
  if (unknown !== undefined)
    throw new WritError("invalid_request", `unknown role "${unknown}"; use admin, approver or auditor`);
  if (input.display_name.trim().length === 0)
    throw new WritError("invalid_request", "a person needs a display name");

  const id = randomUUID();
  const publicJwk = publicMembers(input.public_jwk);
  const human: Human = {
    id,
    spiffe_id: spiffeId(context.config.trust_domain, "human", id),
    display_name: input.display_name,
    email: input.email ?? null,
    roles: roles as Role[],
    public_jwk: publicJwk,
    jkt: await calculateJwkThumbprint(publicJwk, "sha256"),
    status: "active",
    created_at: context.clock.nowMs(),
  };
  await context.audit.append(
    {
      kind: "human.created",
      actor: actor ?? human.spiffe_id,
      data: { human: human.spiffe_id, display_name: human.display_name, roles: human.roles, jkt: human.jkt },
    },
    async (trx) => {
      await trx.insertInto("humans").values(toRow(human)).execute();
    },
  );
  return human;
}

export async function getHumanBySpiffeId(context: BrokerContext, id: string): Promise<Human | undefined> {
  const row = await context.store.db
    .selectFrom("humans")
    .selectAll()
    .where("spiffe_id", "=", id)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function listHumans(context: BrokerContext): Promise<Human[]> {
  const rows = await context.store.db.selectFrom("humans").selectAll().orderBy("created_at").execute();
  return rows.map(fromRow);
}

function toRow(human: Human): HumansTable {
  return { ...human, roles: JSON.stringify(human.roles), public_jwk: JSON.stringify(human.public_jwk) };
}

function fromRow(row: HumansTable): Human {
  return {
    ...row,
    roles: JSON.parse(row.roles) as Role[],
    public_jwk: JSON.parse(row.public_jwk) as JWK,
    status: row.status as Human["status"],
  };
}
