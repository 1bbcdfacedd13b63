import type { Kysely, Migration } from "kysely";

/** Secrets, policies and registered gateways. */
export const gatewayMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("secrets")
      .addColumn("name", "text", (c) => c.primaryKey())
      .addColumn("wrapped_key", "text", (c) => c.notNull())
      .addColumn("ciphertext", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .execute();

    await db.schema
      .createTable("policies")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("text", "text", (c) => c.notNull())
      .addColumn("created_by", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .execute();

    await db.schema
      .createTable("gateways")
      .addColumn("name", "text", (c) => c.primaryKey())
      .addColumn("spiffe_id", "text", (c) => c.notNull().unique())
      .addColumn("public_jwk", "text", (c) => c.notNull())
      .addColumn("jkt", "text", (c) => c.notNull())
      .addColumn("tls_cert_sha256", "text")
      .addColumn("public_url", "text")
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();
  },
};
