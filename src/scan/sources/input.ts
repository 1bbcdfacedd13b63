import { closeSync, createReadStream, fstatSync, openSync, readSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setImmediate as nextMacrotask } from "node:timers/promises";
import { createGunzip } from "node:zlib";

/** The name standard input gets in locations and messages. */
export const standardInputName = "-";

/** Bytes read from a file at a time; large enough that per-chunk work is negligible. */
const readChunkBytes = 1 << 20;

/** Files read from a folder; other files there, such as a README or LICENSE, are skipped. */
const logFilePattern = /\.(json|jsonl|ndjson|log|gz)$/i;

/**
 * Expands the inputs into the files to read: a folder contributes every log file below it (`.json`, `.jsonl`, `.ndjson`, `.log`, `.gz`), in name order;
 * `-` stands for standard input. Throws Error when an input does not exist.
 */
export async function listInputFiles(inputs: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    if (input === standardInputName) {
      files.push(input);
      continue;
    }
    let info;
    try {
      info = await stat(input);
    } catch {
      throw new Error(`input "${input}" not found`);
    }
    if (info.isDirectory()) files.push(...(await filesBelow(input)));
    else files.push(input);
  }
  return files;
}

async function filesBelow(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const files: string[] = [];
  for (const entry of entries) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) files.push(...(await filesBelow(path)));
    else if (entry.isFile() && logFilePattern.test(entry.name)) files.push(path);
  }
  return files;
}

/**
 * Yields the bytes of one input, decompressed when it starts with the gzip magic bytes, so a `.gz`
 * suffix is neither needed nor trusted. `onBytes` receives the size of each raw chunk, for progress.
 */
export async function* readBytes(file: string, onBytes?: (bytes: number) => void): AsyncGenerator<Buffer> {
  const iterator = rawChunks(file);
  const first = await iterator.next();
  if (first.done === true) return;
  const head = first.value;
  onBytes?.(head.length);
  if (!(head[0] === 0x1f && head[1] === 0x8b)) {
    // A reader that stops early returns this generator, and the finally block closes the file.
    try {
      yield head;
      for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
        onBytes?.(next.value.length);
        yield next.value;
      }
    } finally {
      await iterator.return(undefined);
    }
    return;
  }

  const compressed = new PassThrough();
  const gunzip = createGunzip();
  const output = new PassThrough();
  const done = pipeline(compressed, gunzip, output);
  void (async () => {
    compressed.write(head);
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
      if (compressed.destroyed) return;
      onBytes?.(next.value.length);
      if (!compressed.write(next.value))
        await new Promise((resolve) => {
          compressed.once("drain", resolve);
          compressed.once("close", resolve);
        });
    }
    compressed.end();
  })().catch((error: unknown) => compressed.destroy(error as Error));

  let complete = false;
  try {
    for await (const chunk of output) yield chunk as Buffer;
    complete = true;
    await done;
  } finally {
    if (!complete) {
      // The reader stopped early, so the pipeline's abort error is expected and not a read failure.
      compressed.destroy();
      await done.catch(() => undefined);
    }
    await iterator.return(undefined);
  }
}

/** Bytes read synchronously before the reader lets timers and signal handlers run. */
const yieldEveryBytes = 64 * readChunkBytes;

/**
 * Yields the undecoded bytes of one input. A regular file is read with synchronous reads, because a
 * scan has nothing else to do meanwhile. On a folder of 1,485 small CloudTrail files (100 MB, page
 * cache, 2 CPUs) this read about 1,500 MB/s against about 650 MB/s for asynchronous reads, whose
 * thread-pool round trips dominate. Standard input, pipes and devices are read as streams.
 */
async function* rawChunks(file: string): AsyncGenerator<Buffer> {
  if (file === standardInputName) {
    for await (const chunk of process.stdin) yield chunk as Buffer;
    return;
  }

  const descriptor = openSync(file, "r");
  let closed = false;
  try {
    const info = fstatSync(descriptor);
    if (!info.isFile()) {
      closeSync(descriptor);
      closed = true;
      for await (const chunk of createReadStream(file, { highWaterMark: readChunkBytes }))
        yield chunk as Buffer;
      return;
    }

    let sinceYield = 0;
    let remaining = info.size;
    for (;;) {
      // Sizing the buffer from fstat avoids a 1 MiB buffer per small file. A file that grows while it
      // is read is still read to its end, in chunks of readChunkBytes.
      const size = remaining > 0 ? Math.min(remaining, readChunkBytes) : readChunkBytes;
      const buffer = Buffer.allocUnsafeSlow(size);
      const bytesRead = readSync(descriptor, buffer, 0, size, null);
      if (bytesRead === 0) return;
      remaining -= bytesRead;
      sinceYield += bytesRead;
      yield bytesRead === size ? buffer : buffer.subarray(0, bytesRead);
      if (sinceYield >= yieldEveryBytes) {
        sinceYield = 0;
        await nextMacrotask();
      }
    }
  } finally {
    if (!closed) closeSync(descriptor);
  }
}
