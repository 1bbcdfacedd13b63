import { closeSync, openSync } from "node:fs";
import SqliteDatabase from "better-sqlite3";
import {
  CompiledQuery,
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type Driver,
  type SqliteDialectConfig,
  type Transaction,
} from "kysely";
import pg from "pg";
import { WritError } from "../errors/writ-error.js";
import { migrationProvider } from "./migrations.js";
import type { Database } from "./schema.js";

export type Dialect = "sqlite" | "postgres";

/** Where the store lives: a SQLite file (the embedded default) or a PostgreSQL connection string. */
export type StoreLocation =
  { kind: "sqlite"; file: string; readonly?: boolean } | { kind: "postgres"; url: string };

/** Connections in the PostgreSQL pool of one broker process. */
const postgresPoolMax = 10;

/**
 * The one interface to writ's persistent state. Everything above it goes through Kysely, so no caller
 * writes SQL of one dialect; the few dialect differences (row locks) are handled here.
 */
export class Store {
  constructor(
    readonly db: Kysely<Database>,
    readonly dialect: Dialect,
  ) {}

  /** Opens the store and applies any pending migrations. */
  static async open(location: StoreLocation): Promise<Store> {
    if (location.kind === "sqlite" && location.readonly === true) return openSqliteReadOnly(location.file);
    const store = location.kind === "sqlite" ? openSqlite(location.file) : openPostgres(location.url);
    await store.migrate();
    return store;
  }

  /** Runs `work` in one transaction, committing when it resolves and rolling back when it throws. */
  transaction<T>(work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(work);
  }

  async migrate(): Promise<void> {
    const migrator = new Migrator({ db: this.db, provider: migrationProvider(this.dialect) });
    const { error, results } = await migrator.migrateToLatest();
    if (error !== undefined) {
      const failed = results?.find((result) => result.status === "Error")?.migrationName ?? "unknown";
      throw new WritError("server_error", `store migration "${failed}" failed`, { cause: error });
    }
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

/**
 * Opens an existing SQLite file, such as a copy under investigation, without creating, migrating or
 * writing anything; a missing file is an error.
 */
function openSqliteReadOnly(file: string): Store {
  const database = new SqliteDatabase(file, { readonly: true, fileMustExist: true });
  return new Store(new Kysely<Database>({ dialect: new SqliteDialect({ database }) }), "sqlite");
}

function openSqlite(file: string): Store {
  // The store holds signing keys, so it is created readable by its owner alone; SQLite gives the WAL
  // and shared-memory files the same mode.
  closeSync(openSync(file, "a", 0o600));
  const database = new SqliteDatabase(file);
  // WAL lets readers go on while one writer commits; FULL syncs the WAL on every commit so that a
  // completed request's audit event survives a crash of the process or of the machine.
  database.pragma("journal_mode = WAL");
  database.pragma("synchronous = FULL");
  database.pragma("foreign_keys = ON");
  database.pragma("busy_timeout = 5000");
  const db = new Kysely<Database>({
    dialect: new ImmediateSqliteDialect({ database: cachingStatements(database) }),
  });
  return new Store(db, "sqlite");
}

/**
 * Starts every SQLite transaction with BEGIN IMMEDIATE, which takes the write lock at once and waits
 * for it up to the busy timeout. A plain BEGIN takes it at the first write: when another process has
 * committed since the transaction's first read, SQLite then fails with SQLITE_BUSY without waiting,
 * because the transaction's snapshot is stale. The store opens transactions only to write.
 */
/** Distinct SQL texts whose prepared statements are kept; past it the cache starts over. */
const maxCachedStatements = 1000;

/**
 * Wraps a database so that each SQL text is prepared once and its statement reused. Kysely prepares
 * every query it runs, and preparing costs about as much as running a small one. Reuse is safe
 * because better-sqlite3 runs each statement to completion synchronously and writ never streams.
 */
function cachingStatements(database: SqliteDatabase.Database): SqliteDialectConfig["database"] {
  const statements = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => database.close(),
    prepare: (text: string) => {
      let statement = statements.get(text);
      if (statement === undefined) {
        if (statements.size >= maxCachedStatements) statements.clear();
        statement = database.prepare(text);
        statements.set(text, statement);
      }
      return statement;
    },
  } as SqliteDialectConfig["database"];
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly config: SqliteDialectConfig) {
    super(config);
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.config);
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

// PostgreSQL returns int8 as text by default; writ stores epoch milliseconds and sequence numbers
// there, which stay far below 2^53, so they are read as numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

function openPostgres(url: string): Store {
  const pool = new pg.Pool({ connectionString: url, max: postgresPoolMax });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return new Store(db, "postgres");
}
