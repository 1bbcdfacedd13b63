import type { Kysely, Migration } from "kysely";

/**
 * Registered database systems, their role templates, the per-task roles (leases) created on them, and
 * the shared accounts that writ checks out and rotates.
 */
export const systemsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("systems")
      .addColumn("name", "text", (c) => c.primaryKey())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("dsn", "text", (c) => c.notNull())
      .addColumn("password_secret", "text", (c) => c.notNull())
      .addColumn("environment", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();

    await db.schema
      .createTable("system_templates")
      .addColumn("system", "text", (c) => c.notNull().references("systems.name"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("member_of", "text", (c) => c.notNull())
      .addColumn("grants", "text", (c) => c.notNull())
      .addColumn("database", "text", (c) => c.notNull())
      .addColumn("successor", "text")
      .addColumn("connection_limit", "integer", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("system_templates_pk", ["system", "name"])
      .execute();

    await db.schema
      .createTable("leases")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("system", "text", (c) => c.notNull())
      .addColumn("template", "text", (c) => c.notNull())
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("task_id", "text", (c) => c.notNull())
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("valid_until", "bigint", (c) => c.notNull())
      .addColumn("attempts", "integer", (c) => c.notNull())
      .addColumn("last_error", "text")
      .addColumn("next_attempt_at", "bigint", (c) => c.notNull())
      .addColumn("wrapped_key", "text")
      .addColumn("ciphertext", "text")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("cleaned_at", "bigint")
      .execute();
    await db.schema.createIndex("leases_task").on("leases").column("task_id").execute();
    await db.schema.createIndex("leases_state").on("leases").columns(["state", "next_attempt_at"]).execute();

    await db.schema
      .createTable("accounts")
      .addColumn("name", "text", (c) => c.primaryKey())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("system", "text", (c) => c.notNull().references("systems.name"))
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("rotate_every_s", "bigint")
      .addColumn("checkout_id", "text")
      .addColumn("rotation_due", "text")
      .addColumn("rotation_claimed_until", "bigint")
      .addColumn("rotated_at", "bigint", (c) => c.notNull())
      .addColumn("wrapped_key", "text", (c) => c.notNull())
      .addColumn("ciphertext", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();

    await db.schema
      .createTable("account_checkouts")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("account", "text", (c) => c.notNull().references("accounts.name"))
      .addColumn("holder_kind", "text", (c) => c.notNull())
      .addColumn("holder_id", "text", (c) => c.notNull())
      .addColumn("holder", "text", (c) => c.notNull())
      .addColumn("checked_out_at", "bigint", (c) => c.notNull())
      .addColumn("expires_at", "bigint", (c) => c.notNull())
      .addColumn("checked_in_at", "bigint")
      .execute();
    await db.schema
      .createIndex("account_checkouts_account")
      .on("account_checkouts")
      .columns(["account", "checked_out_at"])
      .execute();
  },
};
