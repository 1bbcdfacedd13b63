import type { FastifyInstance } from "fastify";
import { auditJwks } from "../../audit/audit-key.js";
import {
  exportFormats,
  exportLines,
  exportStart,
  type ExportFormat,
} from "../../audit/export/export-lines.js";
import type { BrokerContext } from "../../broker/context.js";
import { WritError } from "../../errors/writ-error.js";
import { apiRoute } from "./api.js";

/**
 * Registers `GET /v1/audit/export`, the audit log as JSON lines (`application/x-ndjson`, chunked):
 * `format=jsonl` (default) for the stored events after an export header, `format=ocsf` for OCSF
 * events. `after=N` starts after sequence number N; `follow=true` keeps the response open and sends
 * each new event once it is committed, until the client disconnects.
 */
export function registerAuditExportRoute(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "GET", "/v1/audit/export", ["admin", "auditor"], async (caller, request, reply) => {
    const query = request.query as { format?: string; after?: string; follow?: string };
    const format = (query.format ?? "jsonl") as ExportFormat;
    if (!exportFormats.includes(format)) {
      throw new WritError("invalid_request", `"format" must be one of ${exportFormats.join(", ")}`);
    }
    const afterSeq = query.after === undefined ? 0 : Number(query.after);
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) {
      throw new WritError("invalid_request", `"after" must be a sequence number, 0 or more`);
    }
    if (query.follow !== undefined && query.follow !== "true" && query.follow !== "false") {
      throw new WritError("invalid_request", `"follow" must be true or false`);
    }

    // A start that names no event is rejected here, while the response can still carry an error status.
    await exportStart(context.store, afterSeq);
    const abort = new AbortController();
    const lines = exportLines(context.store, {
      format,
      afterSeq,
      follow: query.follow === "true",
      signal: abort.signal,
      auditJwks: auditJwks(context.auditKey),
    });

    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      "Content-Type": "application/x-ndjson",
      "Cache-Control": "no-store",
      "X-Accel-Buffering": "no",
    });
    raw.on("close", () => abort.abort());
    // The request's own logger already carries the request id.
    const fields = { reader: caller.id, format, after: afterSeq };
    request.log.info(fields, "audit export started");
    try {
      for await (const line of lines) {
        if (raw.destroyed) break;
        await write(raw, line);
      }
      request.log.info(fields, "audit export finished");
    } catch (error) {
      // The status is already sent, so the client sees the response end early without its last line.
      request.log.error({ ...fields, err: error }, "audit export failed");
    } finally {
      abort.abort();
      raw.end();
    }
    return undefined;
  });
}

/** Writes one line, waiting for the socket to drain when its buffer is full. */
async function write(raw: NodeJS.WritableStream, line: string): Promise<void> {
  if (raw.write(line)) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      raw.removeListener("drain", done);
      raw.removeListener("close", done);
      resolve();
    };
    raw.once("drain", done);
    raw.once("close", done);
  });
}
