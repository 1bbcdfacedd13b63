import { readFile } from "node:fs/promises";
import type { FieldMapping } from "./parser.js";
import { parseMapping } from "./generic.js";

/** Reads a mapping file: one JSON object from mapping keys to dotted field paths. */
export async function readMappingFile(path: string): Promise<FieldMapping> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new Error(`invalid mapping file "${path}": ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    throw new Error(`invalid mapping file "${path}": expected one JSON object`);
  return parseMapping(parsed as Record<string, unknown>);
}

/** Parses repeated `--map KEY=FIELD` options. */
export function parseMapPairs(pairs: string[]): FieldMapping {
  const entries: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf("=");
    if (equals < 1) throw new Error(`invalid --map "${pair}": use KEY=FIELD, such as credential=auth.key`);
    entries[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return parseMapping(entries);
}
