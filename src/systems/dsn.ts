import { WritError } from "../errors/writ-error.js";

/** The parts of a system's DSN, which never contains a password. */
export interface SystemDsn {
  host: string;
  port: number;
  database: string;
  user: string;
  /** `disable` (the default), `require` (TLS, any certificate) or `verify-full` (TLS, verified). */
  sslmode: "disable" | "require" | "verify-full";
}

const defaultPostgresPort = 5432;
const sslModes = new Set(["disable", "require", "verify-full"]);

/**
 * Parses `postgres://USER@HOST:PORT/DB[?sslmode=MODE]`. Rejects a password in the DSN, because it would
 * be stored and shown in the clear; the password belongs in the secret store. Errors never repeat the
 * DSN, which may carry a password after all.
 */
export function parseDsn(text: string): SystemDsn {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WritError("invalid_request", "invalid DSN: use postgres://USER@HOST:PORT/DB");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new WritError(
      "invalid_request",
      `invalid DSN "${url.protocol}…": use postgres://USER@HOST:PORT/DB`,
    );
  }
  if (url.password !== "") {
    throw new WritError(
      "invalid_request",
      "the DSN must not contain a password: store it with `writ secret set` and name it with --password-secret",
    );
  }
  const user = decodeURIComponent(url.username);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (user === "" || url.hostname === "" || database === "" || database.includes("/")) {
    throw new WritError(
      "invalid_request",
      "invalid DSN: it needs a user, a host and a database, as postgres://USER@HOST:PORT/DB",
    );
  }
  const sslmode = url.searchParams.get("sslmode") ?? "disable";
  const unknown = [...url.searchParams.keys()].find((key) => key !== "sslmode");
  if (unknown !== undefined || !sslModes.has(sslmode)) {
    throw new WritError(
      "invalid_request",
      "invalid DSN: the only parameter taken is sslmode=disable, require or verify-full",
    );
  }
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? defaultPostgresPort : Number(url.port),
    database,
    user,
    sslmode: sslmode as SystemDsn["sslmode"],
  };
}

/** Builds a password-less connection URL for a role, as the MCP server and `writ task creds` give it. */
export function connectionUrl(dsn: SystemDsn, user: string, database = dsn.database): string {
  const host = dsn.host.includes(":") ? `[${dsn.host}]` : dsn.host;
  const query = dsn.sslmode === "disable" ? "" : `?sslmode=${dsn.sslmode}`;
  return `postgres://${encodeURIComponent(user)}@${host}:${dsn.port}/${encodeURIComponent(database)}${query}`;
}
