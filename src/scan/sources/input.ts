import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
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
  const raw: Readable =
    file === standardInputName ? process.stdin : createReadStream(file, { highWaterMark: readChunkBytes });
  const iterator = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await iterator.next();
  if (first.done === true) return;
  const head = first.value;
  onBytes?.(head.length);
  if (!(head[0] === 0x1f && head[1] === 0x8b)) {
    yield head;
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
      onBytes?.(next.value.length);
      yield next.value;
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
      onBytes?.(next.value.length);
      if (!compressed.write(next.value)) await new Promise((resolve) => compressed.once("drain", resolve));
    }
    compressed.end();
  })().catch((error: unknown) => compressed.destroy(error as Error));
  for await (const chunk of output) yield chunk as Buffer;
  await done;
}
