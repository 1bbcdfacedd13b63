import type { Kysely, Migration } from "kysely";

/**
 * Signed checkpoints of the audit chain's head. The sequence number is the primary key, so brokers
 * sharing a store that both sign the same head keep one row.
 */
export const auditCheckpointMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("audit_checkpoints")
      .addColumn("seq", "bigint", (c) => c.primaryKey())
      .addColumn("hash", "text", (c) => c.notNull())
      .addColumn("time", "bigint", (c) => c.notNull())
      .addColumn("jws", "text", (c) => c.notNull())
      .execute();
  },
};
