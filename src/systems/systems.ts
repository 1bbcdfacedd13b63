import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { environmentProblem } from "../identity/agents.js";
import { reloadPolicies } from "../policy/policies.js";
import { reservedToolNames } from "../policy/schema.js";
import { readSecret, secretNameProblem } from "../secrets/secrets.js";
import type { SystemsTable } from "../store/schema.js";
import { getTool } from "../tools/registry.js";
import { withSystem } from "./connection.js";
import { parseDsn } from "./dsn.js";
import { missingManagementPrivileges } from "./privileges.js";

export type SystemKind = "postgres";

/**
 * A database server on which writ creates a login role per task. It is also registered as a tool of
 * kind `postgres` under the same name, whose actions are the system's templates, so that a task lists
 * `SYSTEM:TEMPLATE` among its tools and an agent requests a token for the system's resource URI.
 */
export interface System {
  name: string;
  kind: SystemKind;
  /** `postgres://USER@HOST:PORT/DB` of the management role, without a password. */
  dsn: string;
  /** The secret that contains the management role's password. */
  password_secret: string;
  environment: string;
  /** `<public-url>/v1/systems/<name>`, the audience of tokens for its credentials. */
  resource_uri: string;
  created_at: number;
}

export interface NewSystem {
  name: string;
  kind: string;
  dsn: string;
  password_secret: string;
  environment: string;
}

/** System names share the tool namespace, so they follow the tool name rules. */
const namePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Returns the resource URI of a system, the audience of the tokens that fetch its credentials. */
export function systemResourceUri(issuer: string, name: string): string {
  return `${issuer}/v1/systems/${name}`;
}

/**
 * Registers a PostgreSQL system after connecting as its management role and checking that the role
 * has CREATEROLE, is not SUPERUSER and is a member of pg_signal_backend. Refuses otherwise, naming
 * what is missing.
 */
export async function addSystem(context: BrokerContext, actor: string, input: NewSystem): Promise<System> {
  if (!namePattern.test(input.name) || reservedToolNames.has(input.name)) {
    throw new WritError(
      "invalid_request",
      `invalid system name "${input.name}": use 1 to 63 lowercase letters, digits, '.', '-' or '_'`,
    );
  }
  if (input.kind !== "postgres") {
    throw new WritError("invalid_request", `invalid system kind "${input.kind}": use postgres`);
  }
  const dsn = parseDsn(input.dsn);
  const secretProblem = secretNameProblem(input.password_secret);
  if (secretProblem !== undefined) {
    throw new WritError(
      "invalid_request",
      `invalid secret name "${input.password_secret}": ${secretProblem}`,
    );
  }
  const envProblem = environmentProblem(input.environment);
  if (envProblem !== undefined) {
    throw new WritError("invalid_request", `invalid environment "${input.environment}": ${envProblem}`);
  }
  if ((await getTool(context, input.name)) !== undefined) {
    throw new WritError("conflict", `a tool or system named "${input.name}" already exists`);
  }
  await readSecret(context, input.password_secret);

  const system: System = {
    name: input.name,
    kind: "postgres",
    dsn: input.dsn,
    password_secret: input.password_secret,
    environment: input.environment,
    resource_uri: systemResourceUri(context.issuer, input.name),
    created_at: context.clock.nowMs(),
  };
  const missing = await withSystem(context, system, undefined, missingManagementPrivileges);
  if (missing.length > 0) {
    throw new WritError(
      "invalid_request",
      `management role "${dsn.user}" on system "${input.name}" is missing: ${missing.join(", ")}; grant it and retry`,
    );
  }

  // A concurrent registration of the same name fails on the primary key, which the API reports as conflict.
  await context.audit.append(
    {
      kind: "system.created",
      actor,
      data: { system: system.name, kind: system.kind, dsn_host: dsn.host, dsn_db: dsn.database },
    },
    async (trx) => {
      await trx
        .insertInto("systems")
        .values({
          name: system.name,
          kind: system.kind,
          dsn: system.dsn,
          password_secret: system.password_secret,
          environment: system.environment,
          created_at: system.created_at,
        })
        .execute();
      await trx
        .insertInto("tools")
        .values({
          name: system.name,
          kind: "postgres",
          environment: system.environment,
          resource_uri: system.resource_uri,
          actions: "[]",
          config: JSON.stringify({ system: system.name }),
          created_at: system.created_at,
        })
        .execute();
    },
  );
  await reloadPolicies(context);
  return system;
}

export async function getSystem(
  context: Pick<BrokerContext, "store" | "issuer">,
  name: string,
): Promise<System | undefined> {
  const row = await context.store.db
    .selectFrom("systems")
    .selectAll()
    .where("name", "=", name)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(context.issuer, row);
}

export async function requireSystem(
  context: Pick<BrokerContext, "store" | "issuer">,
  name: string,
): Promise<System> {
  const system = await getSystem(context, name);
  if (system === undefined) throw new WritError("not_found", `system "${name}" not found`);
  return system;
}

export async function listSystems(context: BrokerContext): Promise<System[]> {
  const rows = await context.store.db.selectFrom("systems").selectAll().orderBy("name").execute();
  return rows.map((row) => fromRow(context.issuer, row));
}

function fromRow(issuer: string, row: SystemsTable): System {
  return { ...row, kind: row.kind as SystemKind, resource_uri: systemResourceUri(issuer, row.name) };
}
