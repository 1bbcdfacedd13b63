import { once } from "node:events";
import { createWriteStream, existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { Writable } from "node:stream";
import type { Command } from "commander";
import type { JSONWebKeySet } from "jose";
import { auditJwks, readAuditKey } from "../../audit/audit-key.js";
import { exportFormats, exportLines, type ExportFormat } from "../../audit/export/export-lines.js";
import { storeLocation } from "../../broker/broker.js";
import { loadConfig } from "../../config/config.js";
import { Store } from "../../store/store.js";
import { fail } from "../run.js";
import { exportFromServer, runningServerUrl } from "./audit-export-remote.js";
import { dataDirectory, type GlobalOptions } from "../target.js";

interface ExportFlags {
  format: string;
  sinceSeq: string;
  follow?: boolean;
  out?: string;
  append?: boolean;
}

/** Registers `writ audit export`. */
export function registerAuditExportCommand(audit: Command): void {
  audit
    .command("export")
    .description("write the audit log as JSON lines or OCSF events; --follow keeps streaming new events")
    .option("--format <format>", `output format: ${exportFormats.join(" or ")}`, "jsonl")
    .option(
      "--since-seq <seq>",
      "start after this existing sequence number (0 starts at the first event)",
      "0",
    )
    .option(
      "--follow",
      "after the last event, keep writing new events as they are committed until interrupted",
    )
    .option("--out <file>", "write to this file (mode 0600) instead of standard output")
    .option("--append", "with --out, append to the file instead of replacing it")
    .action(async (flags: ExportFlags, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions>();
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      let sink: LineSink | undefined;
      try {
        const request = parseFlags(flags);
        // A JSON-lines file has one header, so lines appended to a file that already contains an
        // export leave out the new header.
        const appendingToExport =
          request.format === "jsonl" &&
          flags.append === true &&
          flags.out !== undefined &&
          existsSync(flags.out) &&
          statSync(flags.out).size > 0;
        sink = await openSink(flags, stop);
        const opened = sink;
        let headerPending = appendingToExport;
        const write = (line: string): Promise<void> => {
          if (headerPending) {
            headerPending = false;
            if (line.includes('"writ-audit-export"')) return Promise.resolve();
          }
          return opened.write(line);
        };
        const remoteUrl = options.url ?? (await runningServerUrl(dataDirectory(options)));
        if (remoteUrl === undefined) await exportFromStore(options, request, abort.signal, write);
        else await exportFromServer(options, request, abort.signal, write);
        await sink.close();
      } catch (error) {
        await sink?.close().catch(() => undefined);
        fail(options, error);
      } finally {
        process.removeListener("SIGINT", stop);
        process.removeListener("SIGTERM", stop);
      }
    });
}

/** The output of an export: standard output or the `--out` file. */
interface LineSink {
  /** Writes one line, waiting while the output's buffer is full; rejects once the output failed. */
  write(line: string): Promise<void>;
  /** Flushes and closes a file; rejects with the output's error, if it had one. */
  close(): Promise<void>;
}

/**
 * Opens the output. A reader that closes standard output (`EPIPE`, as `| head` does) ends the export
 * normally; any other output error stops it and is reported.
 */
async function openSink(flags: ExportFlags, stop: () => void): Promise<LineSink> {
  const out: Writable =
    flags.out === undefined
      ? process.stdout
      : createWriteStream(flags.out, { flags: flags.append === true ? "a" : "w", mode: 0o600 });
  let failure: Error | undefined;
  let readerGone = false;
  out.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") readerGone = true;
    else failure ??= error;
    stop();
  });
  if (flags.out !== undefined) {
    try {
      await once(out, "open");
    } catch (error) {
      throw new Error(`cannot open --out file "${flags.out}": ${(error as Error).message}`, { cause: error });
    }
  }
  const check = (): void => {
    if (failure !== undefined) throw failure;
  };
  return {
    async write(line) {
      check();
      if (readerGone) return;
      if (!out.write(line)) {
        await new Promise<void>((resolve) => {
          out.once("drain", resolve);
          out.once("error", () => resolve());
        });
      }
      check();
    },
    async close() {
      if (out !== process.stdout && !out.destroyed) await new Promise<void>((resolve) => out.end(resolve));
      check();
    },
  };
}

export interface ExportRequest {
  format: ExportFormat;
  afterSeq: number;
  follow: boolean;
}

function parseFlags(flags: ExportFlags): ExportRequest {
  if (!(exportFormats as readonly string[]).includes(flags.format)) {
    throw new Error(`invalid --format "${flags.format}": use ${exportFormats.join(" or ")}`);
  }
  const afterSeq = Number(flags.sinceSeq);
  if (!/^\d+$/.test(flags.sinceSeq) || !Number.isSafeInteger(afterSeq)) {
    throw new Error(`invalid --since-seq "${flags.sinceSeq}": use a sequence number, 0 or more`);
  }
  if (flags.append === true && flags.out === undefined) throw new Error("--append needs --out FILE");
  return { format: flags.format as ExportFormat, afterSeq, follow: flags.follow === true };
}

/** Reads the data directory's store directly, as `writ audit verify` does, without a key or server. */
async function exportFromStore(
  options: GlobalOptions,
  request: ExportRequest,
  signal: AbortSignal,
  write: (line: string) => Promise<void>,
): Promise<void> {
  const dataDir = dataDirectory(options);
  const config = await loadConfig(dataDir);
  const store = await Store.open(storeLocation(dataDir, config));
  try {
    const jwks = await localAuditJwks(resolve(dataDir, config.audit_key_file));
    for await (const line of exportLines(store, { ...request, signal, auditJwks: jwks })) await write(line);
  } finally {
    await store.close();
  }
}

/** Reads the audit key's public half. An installation whose server never started has none, and no checkpoints. */
async function localAuditJwks(file: string): Promise<JSONWebKeySet> {
  if (!existsSync(file)) return { keys: [] };
  return auditJwks(await readAuditKey(file));
}
