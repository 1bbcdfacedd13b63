import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { serverFileName, type ServerRecord } from "../../server/serve.js";
import { ApiError } from "../admin-client.js";
import { printable } from "../output.js";
import { connect, type GlobalOptions } from "../target.js";
import type { ExportRequest } from "./audit-export.js";

/** Delay before the first reconnection of a remote follower, doubling up to the maximum. */
const reconnectInitialDelayMs = 1000;
const reconnectMaxDelayMs = 30_000;

/**
 * Streams `GET /v1/audit/export` from the server. A follower whose connection drops reconnects after
 * the last sequence number it wrote, so the output has no gap and no repeated event. Only the first
 * response's header line is written.
 */
export async function exportFromServer(
  options: GlobalOptions,
  request: ExportRequest,
  signal: AbortSignal,
  write: (line: string) => Promise<void>,
): Promise<void> {
  const target = await connect(options);
  let afterSeq = request.afterSeq;
  let headerWritten = false;
  let delayMs = reconnectInitialDelayMs;
  try {
    while (!signal.aborted) {
      try {
        const query = new URLSearchParams({
          format: request.format,
          after: String(afterSeq),
          follow: String(request.follow),
        });
        const response = await target.client.open(
          "GET",
          `/v1/audit/export?${query.toString()}`,
          undefined,
          "application/x-ndjson",
        );
        if (!response.ok) throw await apiError(response);
        for await (const line of responseLines(response, signal)) {
          const seq = sequenceOf(line);
          if (seq === undefined) {
            if (headerWritten) continue;
            headerWritten = true;
          } else {
            afterSeq = seq;
          }
          await write(line);
          delayMs = reconnectInitialDelayMs;
        }
        if (!request.follow) return;
      } catch (error) {
        // After an interrupt or an output failure there is nothing to retry; the output reports its own error.
        if (signal.aborted) return;
        if (!request.follow || (error instanceof ApiError && error.status < 500)) throw error;
        process.stderr.write(
          `writ: audit export connection failed (${printable((error as Error).message)}); reconnecting after event ${afterSeq} in ${delayMs / 1000} s\n`,
        );
      }
      if (signal.aborted) return;
      await sleep(delayMs, undefined, { signal }).catch(() => undefined);
      delayMs = Math.min(delayMs * 2, reconnectMaxDelayMs);
    }
  } finally {
    await target.close();
  }
}

/** Yields the complete lines of a response body, newline included; a trailing partial line is dropped. */
async function* responseLines(response: Response, signal: AbortSignal): AsyncGenerator<string> {
  if (response.body === null) return;
  const reader = response.body.getReader();
  const cancel = (): void => void reader.cancel().catch(() => undefined);
  signal.addEventListener("abort", cancel, { once: true });
  const decoder = new TextDecoder();
  let pending = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || signal.aborted) return;
      pending += decoder.decode(value, { stream: true });
      let newline = pending.indexOf("\n");
      while (newline !== -1) {
        yield pending.slice(0, newline + 1);
        pending = pending.slice(newline + 1);
        newline = pending.indexOf("\n");
      }
    }
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}

/** Returns the writ sequence number of an export line: `seq` of a stored event, `metadata.sequence` of OCSF. */
function sequenceOf(line: string): number | undefined {
  const parsed = JSON.parse(line) as { seq?: unknown; metadata?: { sequence?: unknown } };
  const seq = parsed.seq ?? parsed.metadata?.sequence;
  return typeof seq === "number" ? seq : undefined;
}

async function apiError(response: Response): Promise<ApiError> {
  const body = (await response.json().catch(() => ({}))) as {
    error?: string;
    error_description?: string;
    request_id?: string;
  };
  return new ApiError(
    response.status,
    body.error ?? "server_error",
    body.error_description ?? response.statusText,
    body.request_id,
  );
}

/** Returns the URL of a server running on the data directory, when its process is alive. */
export async function runningServerUrl(dataDir: string): Promise<string | undefined> {
  let record: ServerRecord;
  try {
    record = JSON.parse(await readFile(join(dataDir, serverFileName), "utf8")) as ServerRecord;
  } catch {
    return undefined;
  }
  try {
    process.kill(record.pid, 0);
    return record.url;
  } catch {
    return undefined;
  }
}
