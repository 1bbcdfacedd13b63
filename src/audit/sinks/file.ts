import { open, readFile } from "node:fs/promises";
import type { Checkpoint } from "../checkpoint.js";
import { checkpointLine, type CheckpointSink } from "./sink.js";

/**
 * Appends each checkpoint as one JSON line to `path` and syncs the file before it resolves. The file
 * belongs on another volume than the store, so that an attacker who truncates the store cannot also remove
 * the checkpoints that show the log was longer.
 */
export function fileSink(path: string): CheckpointSink {
  return {
    name: `file ${path}`,
    async write(checkpoint) {
      const handle = await open(path, "a", 0o600);
      try {
        await handle.appendFile(`${JSON.stringify(checkpointLine(checkpoint))}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
    },
    close: async () => {},
  };
}

/**
 * Reads the checkpoints of a checkpoint file. Throws Error naming the line when a complete line is
 * not a checkpoint, because a damaged line may be where someone removed evidence.
 */
export async function readCheckpointFile(path: string): Promise<Checkpoint[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`checkpoint file "${path}" could not be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const checkpoints: Checkpoint[] = [];
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    const checkpoint = parseCheckpointLine(line);
    // A last line without its newline is an append cut short by a crash, not a changed line.
    const unfinished = index === lines.length - 1;
    if (checkpoint === undefined && unfinished) return;
    if (checkpoint === undefined) {
      throw new Error(`checkpoint file "${path}" line ${index + 1} is not a writ checkpoint`);
    }
    checkpoints.push(checkpoint);
  });
  return checkpoints;
}

/** Parses one JSON checkpoint line or document, or returns undefined when it is not one. */
export function parseCheckpointLine(line: string): Checkpoint | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  const candidate = value as Partial<Record<string, unknown>> | null;
  if (
    typeof candidate !== "object" ||
    candidate === null ||
    candidate.type !== "writ-checkpoint" ||
    !Number.isSafeInteger(candidate.seq) ||
    typeof candidate.hash !== "string" ||
    !Number.isSafeInteger(candidate.time) ||
    typeof candidate.jws !== "string"
  ) {
    return undefined;
  }
  return {
    seq: candidate.seq as number,
    hash: candidate.hash,
    time: candidate.time as number,
    jws: candidate.jws,
  };
}
