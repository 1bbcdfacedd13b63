import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { reloadPolicies } from "../policy/policies.js";
import type { SystemTemplatesTable } from "../store/schema.js";
import type { ToolAction } from "../tools/registry.js";
import { withSystem } from "./connection.js";
import { parseDsn } from "./dsn.js";
import { parseGrantClause } from "./grant-clause.js";
import { missingAdminOption, missingGrantOptions, missingRoleUsage, unsafeGroupRoles } from "./privileges.js";
import { identifier } from "./sql-text.js";
import { requireSystem } from "./systems.js";

/** The privileges of a task's role on a system. A task names a template as `SYSTEM:TEMPLATE`. */
export interface Template {
  system: string;
  name: string;
  /** Group roles the task role becomes a member of. */
  member_of: string[];
  /** GRANT clauses, such as `SELECT ON ALL TABLES IN SCHEMA billing`. */
  grants: string[];
  /** The database where the grants apply and where the role's objects are dropped at cleanup. */
  database: string;
  /** The role that receives the task role's objects at cleanup (REASSIGN OWNED); null drops them. */
  successor: string | null;
  /** The task role's CONNECTION LIMIT. */
  connection_limit: number;
  created_at: number;
}

export interface NewTemplate {
  member_of: string[];
  grants: string[];
  database?: string;
  successor?: string;
  connection_limit?: number;
}

/** The task role's CONNECTION LIMIT when the template sets none. */
export const defaultConnectionLimit = 5;
/** The largest CONNECTION LIMIT a template may set. */
const maxConnectionLimit = 100;
/** Template names are tool action names, so they follow the action name rules. */
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Adds a template after checking on the server that the management role has ADMIN OPTION on every
 * group role, can grant every privilege (owns the objects or has the grant option), and can act as
 * the successor role. Refuses otherwise, naming what is missing.
 */
export async function addTemplate(
  context: BrokerContext,
  actor: string,
  systemName: string,
  name: string,
  input: NewTemplate,
): Promise<Template> {
  const system = await requireSystem(context, systemName);
  if (!namePattern.test(name)) {
    throw new WritError(
      "invalid_request",
      `invalid template name "${name}": use letters, digits, '.', '-' or '_', up to 128 characters`,
    );
  }
  if (name.startsWith("account.")) {
    throw new WritError(
      "invalid_request",
      `invalid template name "${name}": names starting with "account." stand for shared accounts`,
    );
  }
  if (input.member_of.length === 0 && input.grants.length === 0) {
    throw new WritError("invalid_request", "a template needs at least one --member-of or --grant");
  }
  for (const role of [...input.member_of, ...(input.successor === undefined ? [] : [input.successor])]) {
    identifier(role);
  }
  const grants = input.grants.map((grant) => parseGrantClause(grant).clause);
  const connectionLimit = input.connection_limit ?? defaultConnectionLimit;
  if (!Number.isInteger(connectionLimit) || connectionLimit < 1 || connectionLimit > maxConnectionLimit) {
    throw new WritError(
      "invalid_request",
      `invalid connection limit ${connectionLimit}: use 1 to ${maxConnectionLimit}`,
    );
  }
  const database = input.database ?? parseDsn(system.dsn).database;
  identifier(database);
  if ((await getTemplate(context, systemName, name)) !== undefined) {
    throw new WritError("conflict", `template "${name}" of system "${systemName}" already exists`);
  }

  const accountRoles = (
    await context.store.db.selectFrom("accounts").select("role").where("system", "=", systemName).execute()
  ).map((row) => row.role);
  const unsafe = await withSystem(context, system, database, (client) =>
    unsafeGroupRoles(client, input.member_of, accountRoles),
  );
  if (unsafe.length > 0) {
    throw new WritError(
      "invalid_request",
      `template "${name}" would give every task too much: ${unsafe.join("; ")}`,
    );
  }
  const missing = await withSystem(context, system, database, async (client) => [
    ...(await missingAdminOption(client, input.member_of)),
    ...(input.successor === undefined ? [] : await missingRoleUsage(client, input.successor)),
    ...(await missingGrantOptions(client, grants)),
  ]);
  if (missing.length > 0) {
    throw new WritError(
      "invalid_request",
      `the management role of system "${systemName}" is missing: ${missing.join("; ")}; grant it and retry`,
    );
  }

  const template: Template = {
    system: systemName,
    name,
    member_of: input.member_of,
    grants,
    database,
    successor: input.successor ?? null,
    connection_limit: connectionLimit,
    created_at: context.clock.nowMs(),
  };
  await context.audit.append(
    {
      kind: "template.created",
      actor,
      data: { system: systemName, template: name, member_of: template.member_of, grants: template.grants },
    },
    async (trx) => {
      await trx.insertInto("system_templates").values(toRow(template)).execute();
      // The template becomes an action of the system's tool, so tasks can list SYSTEM:TEMPLATE.
      const tool = await trx
        .selectFrom("tools")
        .select("actions")
        .where("name", "=", systemName)
        .executeTakeFirstOrThrow();
      const actions = JSON.parse(tool.actions) as ToolAction[];
      actions.push({ name, spec: name, risk: "medium" });
      await trx
        .updateTable("tools")
        .set({ actions: JSON.stringify(actions) })
        .where("name", "=", systemName)
        .execute();
    },
  );
  await reloadPolicies(context);
  return template;
}

export async function getTemplate(
  context: Pick<BrokerContext, "store">,
  system: string,
  name: string,
): Promise<Template | undefined> {
  const row = await context.store.db
    .selectFrom("system_templates")
    .selectAll()
    .where("system", "=", system)
    .where("name", "=", name)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function listTemplates(context: BrokerContext, system: string): Promise<Template[]> {
  const rows = await context.store.db
    .selectFrom("system_templates")
    .selectAll()
    .where("system", "=", system)
    .orderBy("name")
    .execute();
  return rows.map(fromRow);
}

function toRow(template: Template): SystemTemplatesTable {
  return {
    ...template,
    member_of: JSON.stringify(template.member_of),
    grants: JSON.stringify(template.grants),
  };
}

function fromRow(row: SystemTemplatesTable): Template {
  return {
    ...row,
    member_of: JSON.parse(row.member_of) as string[],
    grants: JSON.parse(row.grants) as string[],
  };
}
