import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";
import type { Dialect } from "./store.js";
import { gatewayMigration } from "./migration-0002.js";
import { delegationMigration } from "./migration-0003.js";
import { alertKeyMigration } from "./migration-0004.js";
import { systemsMigration } from "./migration-0005.js";
import { auditCheckpointMigration } from "./migration-0006.js";

/**
 * Builds the versioned migrations. Each is named with a zero-padded number so that Kysely applies them
 * in order; a migration, once released, is never edited: a change gets a new one.
 */
export function migrationProvider(dialect: Dialect): MigrationProvider {
  return { getMigrations: async () => migrations(dialect) };
}

function migrations(dialect: Dialect): Record<string, Migration> {
  const serialKey =
    dialect === "postgres" ? sql`bigserial primary key` : sql`integer primary key autoincrement`;

  return {
    "0001_core": {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable("humans")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("spiffe_id", "text", (c) => c.notNull().unique())
          .addColumn("display_name", "text", (c) => c.notNull())
          .addColumn("email", "text")
          .addColumn("roles", "text", (c) => c.notNull())
          .addColumn("public_jwk", "text", (c) => c.notNull())
          .addColumn("jkt", "text", (c) => c.notNull())
          .addColumn("status", "text", (c) => c.notNull())
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .execute();

        await db.schema
          .createTable("agents")
          .addColumn("name", "text", (c) => c.primaryKey())
          .addColumn("spiffe_id", "text", (c) => c.notNull().unique())
          .addColumn("owner", "text", (c) => c.notNull())
          .addColumn("environment", "text", (c) => c.notNull())
          .addColumn("status", "text", (c) => c.notNull())
          .addColumn("attestation", "text", (c) => c.notNull())
          .addColumn("public_jwk", "text")
          .addColumn("jkt", "text")
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .addColumn("updated_at", "bigint", (c) => c.notNull())
          .execute();

        await db.schema
          .createTable("federated_bindings")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("agent_name", "text", (c) => c.notNull().references("agents.name"))
          .addColumn("spec", "text", (c) => c.notNull())
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex("federated_bindings_agent")
          .on("federated_bindings")
          .column("agent_name")
          .execute();

        await db.schema
          .createTable("tools")
          .addColumn("name", "text", (c) => c.primaryKey())
          .addColumn("kind", "text", (c) => c.notNull())
          .addColumn("environment", "text", (c) => c.notNull())
          .addColumn("resource_uri", "text", (c) => c.notNull().unique())
          .addColumn("actions", "text", (c) => c.notNull())
          .addColumn("config", "text", (c) => c.notNull())
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .execute();

        await db.schema
          .createTable("tasks")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("agent_name", "text", (c) => c.notNull().references("agents.name"))
          .addColumn("initiator", "text", (c) => c.notNull())
          .addColumn("intent", "text", (c) => c.notNull())
          .addColumn("tools", "text", (c) => c.notNull())
          .addColumn("actions", "text", (c) => c.notNull())
          .addColumn("environment", "text", (c) => c.notNull())
          .addColumn("deadline_s", "bigint", (c) => c.notNull())
          .addColumn("status", "text", (c) => c.notNull())
          .addColumn("parent_task_id", "text")
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .addColumn("ended_at", "bigint")
          .addColumn("end_reason", "text")
          .execute();
        await db.schema.createIndex("tasks_agent").on("tasks").columns(["agent_name", "status"]).execute();
        await db.schema.createIndex("tasks_status").on("tasks").columns(["status", "deadline_s"]).execute();

        await db.schema
          .createTable("tokens")
          .addColumn("jti", "text", (c) => c.primaryKey())
          .addColumn("task_id", "text")
          .addColumn("subject", "text", (c) => c.notNull())
          .addColumn("client_id", "text", (c) => c.notNull())
          .addColumn("audience", "text", (c) => c.notNull())
          .addColumn("jkt", "text", (c) => c.notNull())
          .addColumn("issued_at_s", "bigint", (c) => c.notNull())
          .addColumn("expires_at_s", "bigint", (c) => c.notNull())
          .addColumn("revoked_at", "bigint")
          .execute();
        await db.schema.createIndex("tokens_task").on("tokens").column("task_id").execute();
        await db.schema
          .createIndex("tokens_client")
          .on("tokens")
          .columns(["client_id", "expires_at_s"])
          .execute();

        await db.schema
          .createTable("replay_jtis")
          .addColumn("scope", "text", (c) => c.notNull())
          .addColumn("jti", "text", (c) => c.notNull())
          .addColumn("expires_at_s", "bigint", (c) => c.notNull())
          .addPrimaryKeyConstraint("replay_jtis_pk", ["scope", "jti"])
          .execute();
        await db.schema.createIndex("replay_jtis_expiry").on("replay_jtis").column("expires_at_s").execute();

        await db.schema
          .createTable("revocations")
          .addColumn("seq", serialKey)
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .addColumn("reason", "text", (c) => c.notNull())
          .addColumn("task_ids", "text", (c) => c.notNull())
          .addColumn("agent_ids", "text", (c) => c.notNull())
          .addColumn("jtis", "text", (c) => c.notNull())
          .addColumn("expires_at_s", "bigint", (c) => c.notNull())
          .execute();

        await db.schema
          .createTable("signing_keys")
          .addColumn("kid", "text", (c) => c.primaryKey())
          .addColumn("alg", "text", (c) => c.notNull())
          .addColumn("public_jwk", "text", (c) => c.notNull())
          .addColumn("private_jwk", "text", (c) => c.notNull())
          .addColumn("created_at", "bigint", (c) => c.notNull())
          .addColumn("retired_at", "bigint")
          .execute();

        await db.schema
          .createTable("audit_events")
          .addColumn("seq", "bigint", (c) => c.primaryKey())
          .addColumn("time", "bigint", (c) => c.notNull())
          .addColumn("kind", "text", (c) => c.notNull())
          .addColumn("actor", "text", (c) => c.notNull())
          .addColumn("task_id", "text")
          .addColumn("jti", "text")
          .addColumn("data", "text", (c) => c.notNull())
          .addColumn("prev_hash", "text", (c) => c.notNull())
          .addColumn("hash", "text", (c) => c.notNull())
          .addColumn("chain_version", "integer", (c) => c.notNull())
          .execute();
        await db.schema.createIndex("audit_events_task").on("audit_events").column("task_id").execute();

        await db.schema
          .createTable("audit_head")
          .addColumn("id", "integer", (c) => c.primaryKey())
          .addColumn("seq", "bigint", (c) => c.notNull())
          .addColumn("hash", "text", (c) => c.notNull())
          .execute();
      },
    },
    "0002_gateway": gatewayMigration,
    "0003_delegation": delegationMigration,
    "0004_alert_keys": alertKeyMigration,
    "0005_systems": systemsMigration,
    "0006_audit_checkpoints": auditCheckpointMigration,
  };
}
