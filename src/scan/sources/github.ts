import type { UsageEvent } from "../model.js";
import { parseLogTime } from "../time.js";
import { toolchainOf } from "../toolchain.js";
import { field, text, type LogParser } from "./parser.js";

/** Token types that GitHub does not expire on its own (fine-grained tokens may have an expiry). */
const nonExpiringTypes = /personal_access_token|personal access token|deploy_key|deploy key|oauth/i;

/**
 * GitHub audit log events (JSON or JSON lines exports). The credential is `hashed_token` or
 * `token_id` when present; otherwise the actor's `programmatic_access_type` stands for it, which
 * cannot tell two tokens of one type and actor apart. Events without programmatic access are web
 * sessions and name no credential.
 */
export const githubParser: LogParser = {
  format: "github",

  matches(record) {
    return (
      typeof record.action === "string" &&
      ("actor" in record || "hashed_token" in record || "programmatic_access_type" in record) &&
      !("eventSource" in record) &&
      !("verb" in record)
    );
  },

  normalise(record, location) {
    const actor = text(record.actor) ?? "unknown";
    const accessType = text(record.programmatic_access_type);
    const hashedToken = text(record.hashed_token);
    const tokenId = text(record.token_id);
    if (hashedToken === undefined && tokenId === undefined && accessType === undefined) return undefined;

    // Events without a time still show who used which token; only the time-based checks skip them.
    const time = parseLogTime(record["@timestamp"] ?? record.created_at ?? record.at_sign_timestamp);

    const credential =
      hashedToken !== undefined
        ? `github:hashed_token:${hashedToken}`
        : tokenId !== undefined
          ? `github:token_id:${tokenId}`
          : `github:${actor}:${accessType}`;
    const isBot = record.actor_is_bot === true || actor.endsWith("[bot]");
    const userAgent = text(record.user_agent);
    const action = text(record.action) as string;
    const event: UsageEvent = {
      format: "github",
      credential,
      naming: "id",
      credentialKind: `github-${(accessType ?? "token").toLowerCase().replace(/[^a-z0-9]+/g, "-")}`,
      longLived: nonExpiringTypes.test(accessType ?? ""),
      principal: actor,
      principalKind: isBot || /deploy|app/i.test(accessType ?? "") ? "workload" : "human",
      userAgent,
      toolchain: action.startsWith("workflows.") ? "github-actions" : toolchainOf(userAgent),
      time,
      internal: false,
      location,
      service: "github",
      action,
    };
    const source = text(record.actor_ip);
    if (source !== undefined) event.source = source;
    const repository = text(record.repo) ?? text(record.repository);
    if (repository !== undefined) event.repository = repository;
    const environment = text(record.environment_name) ?? text(field(record, "environment"));
    if (environment !== undefined) event.environment = environment;
    return event;
  },
};
