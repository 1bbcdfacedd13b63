import type { Kysely, Migration } from "kysely";

/** The key that signs alerts, kept apart from the token signing keys so it can never sign a token. */
export const alertKeyMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("alert_signing_keys")
      .addColumn("kid", "text", (c) => c.primaryKey())
      .addColumn("alg", "text", (c) => c.notNull())
      .addColumn("public_jwk", "text", (c) => c.notNull())
      .addColumn("private_jwk", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();
  },
};
