import type { Kysely, Migration } from "kysely";

/** Delegation chains on tasks, approvals with their votes, break-glass windows and alert deliveries. */
export const delegationMigration: Migration = {
  async up(db: Kysely<unknown>) {
    // The principal whose authority a task uses (its root agent), the actors between, and the depth.
    await db.schema.alterTable("tasks").addColumn("subject", "text").execute();
    await db.schema.alterTable("tasks").addColumn("actor_chain", "text").execute();
    await db.schema.alterTable("tasks").addColumn("depth", "integer").execute();
    await db.schema.alterTable("tasks").addColumn("breakglass_id", "text").execute();
    await db.schema.createIndex("tasks_parent").on("tasks").column("parent_task_id").execute();

    await db.schema
      .createTable("approvals")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("requester", "text", (c) => c.notNull())
      .addColumn("task_id", "text")
      .addColumn("digest", "text")
      .addColumn("rule", "text", (c) => c.notNull())
      .addColumn("subject", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("expires_at", "bigint", (c) => c.notNull())
      .addColumn("decided_at", "bigint")
      .addColumn("used_at", "bigint")
      .execute();
    await db.schema.createIndex("approvals_digest").on("approvals").columns(["digest", "status"]).execute();

    await db.schema
      .createTable("approval_votes")
      .addColumn("approval_id", "text", (c) => c.notNull())
      .addColumn("approver", "text", (c) => c.notNull())
      .addColumn("decision", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("approval_votes_pk", ["approval_id", "approver"])
      .execute();

    await db.schema
      .createTable("breakglass")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("requester", "text", (c) => c.notNull())
      .addColumn("target", "text", (c) => c.notNull())
      .addColumn("actions", "text", (c) => c.notNull())
      .addColumn("reason", "text", (c) => c.notNull())
      .addColumn("duration_s", "bigint", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("approval_id", "text", (c) => c.notNull())
      .addColumn("task_id", "text")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("activated_at", "bigint")
      .addColumn("ends_at_s", "bigint")
      .addColumn("ended_at", "bigint")
      .addColumn("note", "text")
      .execute();

    await db.schema
      .createTable("alert_deliveries")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("event", "text", (c) => c.notNull())
      .addColumn("url", "text", (c) => c.notNull())
      .addColumn("attempts", "integer", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("next_attempt_at", "bigint", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();
  },
};
