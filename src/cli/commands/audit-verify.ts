import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import type { JSONWebKeySet } from "jose";
import { auditJwks, readAuditKey } from "../../audit/audit-key.js";
import { readStoredCheckpoints } from "../../audit/checkpointer.js";
import {
  verifyEvidence,
  type CheckpointSource,
  type EvidenceVerdict,
} from "../../audit/checkpoint-verify.js";
import { readExportFile } from "../../audit/export-file.js";
import { readAuditEvents, readStoredHead } from "../../audit/read.js";
import { checkpointFilePath } from "../../audit/sinks/index.js";
import { readCheckpointFile } from "../../audit/sinks/file.js";
import { storeLocation } from "../../broker/broker.js";
import { loadConfig, type WritConfig } from "../../config/config.js";
import { Store, type StoreLocation } from "../../store/store.js";
import { collect, emit } from "../output.js";
import { fail } from "../run.js";
import { dataDirectory, type GlobalOptions } from "../target.js";

interface VerifyFlags {
  db?: string;
  file?: string;
  auditJwks?: string;
  checkpoints: string[];
}

/** Registers `writ audit verify`, which reads a store or an export directly, without a server. */
export function registerAuditVerifyCommand(audit: Command, program: Command): void {
  audit
    .command("verify")
    .description(
      "check the hash chain and every signed checkpoint; exits 1 at the first edited, missing, reordered or truncated event or bad checkpoint signature",
    )
    .option(
      "--db <file>",
      "verify this SQLite file (a copy of writ.db) instead of the data directory's store",
    )
    .option("--file <file>", "verify this audit export (JSON lines with its header) instead of a store")
    .option(
      "--audit-jwks <file>",
      "verify checkpoints with the audit keys in this JWKS file instead of the data directory's audit key or the export's embedded keys",
    )
    .option(
      "--checkpoints <file>",
      "also compare the checkpoints of this file (JSON lines, as the checkpoint file sink writes them); repeatable",
      collect,
      [],
    )
    .action(async (flags: VerifyFlags) => {
      const options = program.opts<GlobalOptions>();
      try {
        const verdict = await verify(options, flags);
        emit(options, verdict, () => describe(verdict));
        if (!verdict.ok) process.exitCode = 1;
      } catch (error) {
        fail(options, error);
      }
    });
}

/** Registers `writ audit jwks`, which prints the public keys that verify audit checkpoints. */
export function registerAuditJwksCommand(audit: Command, program: Command): void {
  audit
    .command("jwks")
    .description("print the audit key's public JWKS, which verifies checkpoints and exports")
    .action(async () => {
      const options = program.opts<GlobalOptions>();
      try {
        const jwks = options.url === undefined ? await localJwks(options) : await remoteJwks(options.url);
        process.stdout.write(`${JSON.stringify(jwks, null, options.json === true ? undefined : 2)}\n`);
      } catch (error) {
        fail(options, error);
      }
    });
}

/** A verdict with the keys its checkpoints were checked against, since a verdict is only as good as they are. */
type KeyedVerdict = EvidenceVerdict & { key_source: string };

async function verify(options: GlobalOptions, flags: VerifyFlags): Promise<KeyedVerdict> {
  if (flags.db !== undefined && flags.file !== undefined) throw new Error("give --db or --file, not both");
  const sources: CheckpointSource[] = [];
  for (const file of flags.checkpoints) {
    sources.push({ source: `file ${file}`, checkpoints: await readCheckpointFile(file) });
  }
  const givenJwks = flags.auditJwks === undefined ? undefined : await readJwksFile(flags.auditJwks);

  if (flags.file !== undefined) {
    const exported = await readExportFile(flags.file);
    sources.unshift({ source: `export ${flags.file}`, checkpoints: exported.header.checkpoints });
    const verdict = await verifyEvidence(
      exported.events,
      sources,
      givenJwks ?? exported.header.audit_jwks,
      exported.header.after,
    );
    return {
      ...verdict,
      key_source:
        givenJwks === undefined
          ? "the keys embedded in the export, which whoever wrote the file chose; give --audit-jwks to use keys you trust"
          : `--audit-jwks ${flags.auditJwks as string}`,
    };
  }

  let location: StoreLocation;
  let jwks = givenJwks;
  let keySource = givenJwks === undefined ? "" : `--audit-jwks ${flags.auditJwks as string}`;
  if (flags.db !== undefined) {
    if (!existsSync(flags.db)) throw new Error(`database file "${flags.db}" not found`);
    location = { kind: "sqlite", file: flags.db, readonly: true };
  } else {
    const dataDir = dataDirectory(options);
    const config = await loadConfig(dataDir);
    location = readOnly(storeLocation(dataDir, config));
    if (jwks === undefined) {
      jwks = auditJwks(await readAuditKey(resolve(dataDir, config.audit_key_file)));
      keySource = `the data directory's audit key (${config.audit_key_file})`;
    }
    await addConfiguredCheckpointFile(dataDir, config, sources);
  }

  const store = await Store.open(location);
  try {
    sources.unshift({ source: "store", checkpoints: await readStoredCheckpoints(store) });
    const verdict = await verifyEvidence(
      await readAuditEvents(store),
      sources,
      jwks,
      undefined,
      await readStoredHead(store),
    );
    return { ...verdict, key_source: keySource === "" ? "no keys given" : keySource };
  } finally {
    await store.close();
  }
}

/** Returns the location with SQLite opened read-only, so verifying a copy under investigation never changes it. */
function readOnly(location: StoreLocation): StoreLocation {
  return location.kind === "sqlite" ? { ...location, readonly: true } : location;
}

async function addConfiguredCheckpointFile(
  dataDir: string,
  config: WritConfig,
  sources: CheckpointSource[],
): Promise<void> {
  const file = checkpointFilePath(dataDir, config);
  // NOTE: a configured checkpoint file that does not exist yet is skipped: the server creates it at
  // its first checkpoint, so its absence alone does not show tampering.
  if (file === undefined || !existsSync(file)) return;
  sources.push({ source: `file ${file}`, checkpoints: await readCheckpointFile(file) });
}

async function readJwksFile(file: string): Promise<JSONWebKeySet> {
  let jwks: unknown;
  try {
    jwks = JSON.parse(await readFile(file, "utf8"));
  } catch (error) {
    throw new Error(`audit JWKS file "${file}" could not be read as JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (typeof jwks !== "object" || jwks === null || !Array.isArray((jwks as JSONWebKeySet).keys)) {
    throw new Error(`audit JWKS file "${file}" is not a JWK Set: expected {"keys":[...]}`);
  }
  return jwks as JSONWebKeySet;
}

async function localJwks(options: GlobalOptions): Promise<JSONWebKeySet> {
  const dataDir = dataDirectory(options);
  const config = await loadConfig(dataDir);
  return auditJwks(await readAuditKey(resolve(dataDir, config.audit_key_file)));
}

async function remoteJwks(url: string): Promise<JSONWebKeySet> {
  const endpoint = `${url.replace(/\/+$/, "")}/v1/audit/jwks`;
  const response = await fetch(endpoint);
  if (!response.ok) throw new Error(`audit JWKS request to "${endpoint}" returned status ${response.status}`);
  return (await response.json()) as JSONWebKeySet;
}

function describe(verdict: KeyedVerdict): string[] {
  if (!verdict.ok) return [`audit log broken at event ${verdict.seq}: ${verdict.fault}: ${verdict.reason}`];
  const head = verdict.head === null ? "no events" : `head ${verdict.head.seq} ${verdict.head.hash}`;
  return [
    `audit log verified: ${verdict.events} events, ${head}, ${verdict.checkpoints} checkpoints`,
    `checkpoints checked against ${verdict.key_source}`,
  ];
}
