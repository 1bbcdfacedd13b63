import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { Writable } from "node:stream";
import type { JSONWebKeySet } from "jose";
import type { AuditRecord } from "./chain.js";
import type { Checkpoint } from "./checkpoint.js";
import type { ChainStart } from "./verify.js";

/** The `type` of an export file's header line. */
export const exportFileType = "writ-audit-export";

/** The version of the export file format below. */
export const exportFileVersion = 1;

/**
 * The first line of a JSON-lines audit export. Every following line is one audit event as it is
 * stored (`AuditRecord`, with `data` as an object), in sequence order.
 */
export interface ExportHeader {
  type: typeof exportFileType;
  version: typeof exportFileVersion;
  /** The public audit keys that signed `checkpoints`, so the file verifies on its own. */
  audit_jwks: JSONWebKeySet;
  /** Signed checkpoints of the chain's head, in sequence order. */
  checkpoints: Checkpoint[];
  /**
   * For an export that does not begin at the first event: the sequence number and hash of the event
   * just before its first line. Absent when the export begins at event 1.
   */
  after?: ChainStart;
}

/** A parsed export file: its header and its events in file order. */
export interface ExportFile {
  header: ExportHeader;
  events: AuditRecord[];
}

/** Formats the header line, newline included. */
export function formatExportHeader(header: Omit<ExportHeader, "type" | "version">): string {
  const full: ExportHeader = { type: exportFileType, version: exportFileVersion, ...header };
  return `${JSON.stringify(full)}\n`;
}

/** Formats one event line, newline included. */
export function formatExportEvent(event: AuditRecord): string {
  return `${JSON.stringify(event)}\n`;
}

/** Writes the header line to `out`, waiting for the stream to drain when its buffer is full. */
export async function writeExportHeader(
  out: Writable,
  header: Omit<ExportHeader, "type" | "version">,
): Promise<void> {
  await writeLine(out, formatExportHeader(header));
}

/** Writes one event line to `out`, waiting for the stream to drain when its buffer is full. */
export async function writeExportEvent(out: Writable, event: AuditRecord): Promise<void> {
  await writeLine(out, formatExportEvent(event));
}

async function writeLine(out: Writable, line: string): Promise<void> {
  if (!out.write(line)) await new Promise<void>((resolve) => out.once("drain", resolve));
}

/**
 * Reads an export file. Throws Error naming the file and line when the header is missing or of
 * another type or version, or when a line is not an audit event. Whether the events form a valid
 * chain is for the verifier to decide, not this reader.
 */
export async function readExportFile(path: string): Promise<ExportFile> {
  const lines = createInterface({ input: createReadStream(path, "utf8"), crlfDelay: Infinity });
  let header: ExportHeader | undefined;
  const events: AuditRecord[] = [];
  let number = 0;
  for await (const line of lines) {
    number++;
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new Error(`invalid audit export "${path}": line ${number} is not JSON`, { cause: error });
    }
    if (header === undefined) {
      header = parseHeader(value, path);
      continue;
    }
    const event = parseEvent(value);
    if (event === undefined)
      throw new Error(`invalid audit export "${path}": line ${number} is not an audit event`);
    events.push(event);
  }
  if (header === undefined) throw new Error(`invalid audit export "${path}": the file is empty`);
  return { header, events };
}

function parseHeader(value: unknown, path: string): ExportHeader {
  const header = value as Partial<ExportHeader> | null;
  if (typeof header !== "object" || header === null || header.type !== exportFileType) {
    throw new Error(`invalid audit export "${path}": line 1 is not a "${exportFileType}" header`);
  }
  if (header.version !== exportFileVersion) {
    throw new Error(
      `audit export "${path}" has version ${String(header.version)}; this writ reads version ${exportFileVersion}`,
    );
  }
  if (
    typeof header.audit_jwks !== "object" ||
    header.audit_jwks === null ||
    !Array.isArray(header.audit_jwks.keys)
  ) {
    throw new Error(`invalid audit export "${path}": the header has no "audit_jwks" key set`);
  }
  if (!Array.isArray(header.checkpoints)) {
    throw new Error(`invalid audit export "${path}": the header has no "checkpoints" list`);
  }
  const after = header.after;
  if (after !== undefined && (!Number.isSafeInteger(after.seq) || typeof after.hash !== "string")) {
    throw new Error(`invalid audit export "${path}": the header's "after" needs a "seq" and a "hash"`);
  }
  return header as ExportHeader;
}

function parseEvent(value: unknown): AuditRecord | undefined {
  const event = value as Partial<AuditRecord> | null;
  if (
    typeof event !== "object" ||
    event === null ||
    !Number.isSafeInteger(event.seq) ||
    !Number.isSafeInteger(event.time) ||
    typeof event.kind !== "string" ||
    typeof event.actor !== "string" ||
    typeof event.data !== "object" ||
    event.data === null ||
    typeof event.prev_hash !== "string" ||
    typeof event.hash !== "string" ||
    !Number.isSafeInteger(event.chain_version)
  ) {
    return undefined;
  }
  return {
    seq: event.seq as number,
    time: event.time as number,
    kind: event.kind,
    actor: event.actor,
    task_id: event.task_id ?? null,
    jti: event.jti ?? null,
    data: event.data,
    prev_hash: event.prev_hash,
    hash: event.hash,
    chain_version: event.chain_version as number,
  };
}
