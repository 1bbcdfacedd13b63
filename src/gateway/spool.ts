import { closeSync, openSync } from "node:fs";
import SqliteDatabase from "better-sqlite3";
import { Kysely, SqliteDialect, sql, type Generated } from "kysely";
import type { Logger } from "pino";
import type { AuditInput } from "../audit/log.js";
import type { AdminClient } from "../cli/admin-client.js";

interface SpoolDatabase {
  spool: { id: Generated<number>; event: string };
}

/** Events shipped to the broker per request. */
const shipBatchSize = 200;
/** Interval between shipping attempts while the spool is not empty, in milliseconds. */
const shipIntervalMs = 200;

/**
 * A separate gateway's audit spool: each decision is durable on local disk (SQLite, synchronous
 * FULL) before the request is forwarded, and shipped to the broker's chain in order afterwards. While
 * the broker is down, decisions stay durable here and are shipped when it returns.
 */
export class AuditSpool {
  private readonly db: Kysely<SpoolDatabase>;
  private timer: NodeJS.Timeout | undefined;
  private shipping = false;

  constructor(
    file: string,
    private readonly client: AdminClient,
    private readonly log: Logger,
  ) {
    closeSync(openSync(file, "a", 0o600));
    const database = new SqliteDatabase(file);
    database.pragma("journal_mode = WAL");
    database.pragma("synchronous = FULL");
    this.db = new Kysely<SpoolDatabase>({ dialect: new SqliteDialect({ database }) });
  }

  async start(): Promise<void> {
    await this.db.schema
      .createTable("spool")
      .ifNotExists()
      .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
      .addColumn("event", "text", (c) => c.notNull())
      .execute();
    this.timer = setInterval(() => void this.ship(), shipIntervalMs);
    this.timer.unref();
  }

  /** Appends an event; resolves once it is durable on local disk. */
  async append(event: AuditInput): Promise<void> {
    await this.db
      .insertInto("spool")
      .values({ event: JSON.stringify(event) })
      .execute();
    void this.ship();
  }

  /** Returns how many events wait to be shipped. */
  async pending(): Promise<number> {
    const row = await this.db
      .selectFrom("spool")
      .select(sql<number>`count(*)`.as("count"))
      .executeTakeFirst();
    return Number(row?.count ?? 0);
  }

  private async ship(): Promise<void> {
    if (this.shipping) return;
    this.shipping = true;
    try {
      for (;;) {
        const rows = await this.db
          .selectFrom("spool")
          .selectAll()
          .orderBy("id")
          .limit(shipBatchSize)
          .execute();
        if (rows.length === 0) return;
        await this.client.call("POST", "/v1/decisions", {
          events: rows.map((row) => JSON.parse(row.event) as unknown),
        });
        await this.db
          .deleteFrom("spool")
          .where("id", "<=", rows.at(-1)?.id ?? 0)
          .execute();
      }
    } catch (error) {
      this.log.warn({ err: error }, "shipping audit events to the broker failed; retrying");
    } finally {
      this.shipping = false;
    }
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.ship();
    await this.db.destroy();
  }
}
