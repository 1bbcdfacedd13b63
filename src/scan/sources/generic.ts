import type { UsageEvent } from "../model.js";
import { parseLogTime } from "../time.js";
import { toolchainOf } from "../toolchain.js";
import { field, text, type FieldMapping, type LogParser } from "./parser.js";

/** Mapping keys accepted by `--map` and the mapping file. */
export const mappingKeys = [
  "credential",
  "actor",
  "source",
  "user_agent",
  "time",
  "action",
  "environment",
  "host",
] as const;

/**
 * Parses `--map KEY=PATH` pairs and a mapping file's object into a mapping; throws Error on an
 * unknown key or a missing `credential`.
 */
export function parseMapping(entries: Record<string, unknown>): FieldMapping {
  for (const [key, value] of Object.entries(entries)) {
    if (!(mappingKeys as readonly string[]).includes(key))
      throw new Error(`unknown mapping key "${key}": use ${mappingKeys.join(", ")}`);
    if (typeof value !== "string" || value === "")
      throw new Error(`mapping key "${key}" needs a field path such as auth.key_id`);
  }
  if (typeof entries.credential !== "string") throw new Error("the mapping needs credential=FIELD");
  return entries as unknown as FieldMapping;
}

/**
 * JSON lines of any shape, read through a field mapping. The credential field is assumed to hold a
 * secret-like value, so findings name it by its HMAC fingerprint only.
 */
export const genericParser: LogParser = {
  format: "generic",

  matches() {
    return false;
  },

  normalise(record, location, context) {
    const mapping = context.mapping;
    if (mapping === undefined) return "generic JSON needs a field mapping: give --map credential=FIELD";
    const secret = text(field(record, mapping.credential));
    if (secret === undefined) return `record without the credential field "${mapping.credential}"`;
    const time = mapping.time === undefined ? Number.NaN : parseLogTime(field(record, mapping.time));
    const read = (path: string | undefined): string | undefined =>
      path === undefined ? undefined : text(field(record, path));
    const userAgent = read(mapping.user_agent);
    const event: UsageEvent = {
      format: "generic",
      credential: `generic:${context.fingerprint(secret)}`,
      naming: "fingerprint",
      credentialKind: "secret",
      longLived: false,
      principal: read(mapping.actor) ?? "unknown",
      principalKind: "unknown",
      userAgent,
      toolchain: toolchainOf(userAgent),
      time,
      internal: false,
      location,
    };
    const source = read(mapping.source);
    if (source !== undefined) event.source = source;
    const action = read(mapping.action);
    if (action !== undefined) event.action = action;
    const environment = read(mapping.environment);
    if (environment !== undefined) event.environment = environment;
    const host = read(mapping.host);
    if (host !== undefined) event.host = host;
    return event;
  },
};
