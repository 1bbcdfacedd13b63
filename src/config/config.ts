import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as defaults from "./defaults.js";
import { trustDomainProblem } from "../identity/spiffe.js";
import { checkPublicUrl, isLoopbackHost } from "./public-url.js";

/** The configuration of one writ installation, stored as `writ.json` in its data directory. */
export interface WritConfig {
  trust_domain: string;
  public_url: string;
  listen: string;
  store: { kind: "sqlite" } | { kind: "postgres"; url_env: string };
  signing_alg: "Ed25519" | "ES256";
  access_token_ttl_seconds: number;
  admin_token_ttl_seconds: number;
  client_assertion_max_lifetime_seconds: number;
  dpop_proof_max_age_seconds: number;
  dpop_proof_max_future_seconds: number;
  dpop_nonce_required: boolean;
  clock_skew_seconds: number;
  revocation_heartbeat_seconds: number;
  tls_cert: string | null;
  tls_key: string | null;
  master_key_file: string;
  revocation_silence_bound_seconds: number;
  approval_ttl_seconds: number;
  breakglass_approvals: number;
  alert_webhooks: string[];
  max_delegation_depth: number;
  audit_key_file: string;
  audit_checkpoint_interval_seconds: number;
  audit_checkpoint_file: string | null;
  audit_checkpoint_syslog: string | null;
  audit_checkpoint_webhooks: string[];
}

type KeyType = "string" | "integer" | "boolean" | "store" | "algorithm" | "path" | "urls";

interface KeySpec {
  type: KeyType;
  /** The default, or `required` when the key has none and `writ init` always writes it. */
  default: unknown;
  doc: string;
  min?: number;
  max?: number;
}

/**
 * The configuration schema: every key with its type, unit, default and meaning. Unknown keys are
 * rejected, and docs/configuration.md is generated from this table.
 */
export const configSchema: Record<keyof WritConfig, KeySpec> = {
  trust_domain: { type: "string", default: "required", doc: "The SPIFFE trust domain of every identity." },
  public_url: {
    type: "string",
    default: "required",
    doc: "The URL agents reach the broker at; fixes the issuer, endpoint URLs, DPoP `htu` and resource URIs.",
  },
  listen: {
    type: "string",
    default: `127.0.0.1:${defaults.defaultPort}`,
    doc: "HOST:PORT the server binds.",
  },
  store: {
    type: "store",
    default: { kind: "sqlite" },
    doc: 'The store: `{"kind":"sqlite"}` (`writ.db` in the data directory) or `{"kind":"postgres","url_env":"VAR"}`, whose connection string is read from the environment variable VAR.',
  },
  signing_alg: {
    type: "algorithm",
    default: "Ed25519",
    doc: "Key type of the token signing keys: `Ed25519` or `ES256`.",
  },
  access_token_ttl_seconds: {
    type: "integer",
    default: defaults.accessTokenTtlSeconds,
    min: 10,
    max: 3600,
    doc: "Lifetime of an agent's access token, in seconds; never past its task's deadline.",
  },
  admin_token_ttl_seconds: {
    type: "integer",
    default: defaults.adminTokenTtlSeconds,
    min: 10,
    max: 3600,
    doc: "Lifetime of a person's API token, in seconds.",
  },
  client_assertion_max_lifetime_seconds: {
    type: "integer",
    default: defaults.clientAssertionMaxLifetimeSeconds,
    min: 10,
    max: 3600,
    doc: "Longest accepted `exp - iat` of a client assertion, in seconds.",
  },
  dpop_proof_max_age_seconds: {
    type: "integer",
    default: defaults.dpopProofMaxAgeSeconds,
    min: 1,
    max: 300,
    doc: "How old a DPoP proof's `iat` may be, in seconds.",
  },
  dpop_proof_max_future_seconds: {
    type: "integer",
    default: defaults.dpopProofMaxFutureSeconds,
    min: 0,
    max: 60,
    doc: "How far in the future a DPoP proof's `iat` may be, in seconds.",
  },
  dpop_nonce_required: {
    type: "boolean",
    default: false,
    doc: "Whether the token endpoint demands a server nonce in every DPoP proof (RFC 9449 section 8).",
  },
  clock_skew_seconds: {
    type: "integer",
    default: defaults.clockSkewSeconds,
    min: 0,
    max: 60,
    doc: "Clock skew tolerated on `exp`, `nbf` and `iat` of assertions and tokens, in seconds.",
  },
  revocation_heartbeat_seconds: {
    type: "integer",
    default: defaults.revocationHeartbeatSeconds,
    min: 1,
    max: 5,
    doc: "Interval between heartbeats on the revocation feed, in seconds.",
  },
  tls_cert: {
    type: "path",
    default: null,
    doc: "PEM certificate chain for TLS; required to listen off loopback.",
  },
  tls_key: { type: "path", default: null, doc: "PEM private key for TLS." },
  max_delegation_depth: {
    type: "integer",
    default: defaults.maxDelegationDepth,
    min: 0,
    max: 10,
    doc: "How deep delegation chains may go: a root agent's task is depth 0, each token exchange adds one.",
  },
  revocation_silence_bound_seconds: {
    type: "integer",
    default: defaults.revocationSilenceBoundSeconds,
    min: 6,
    max: 300,
    doc: "How long a gateway serves without hearing the revocation feed (event or heartbeat) before it denies every request, in seconds.",
  },
  approval_ttl_seconds: {
    type: "integer",
    default: defaults.approvalTtlSeconds,
    min: 60,
    max: 86_400,
    doc: "How long an approval request stays open, and how long a granted step-up approval stays usable, in seconds.",
  },
  breakglass_approvals: {
    type: "integer",
    default: defaults.breakglassApprovals,
    min: 1,
    max: 10,
    doc: "How many distinct people with the approver or admin role, other than the requester, must approve a break-glass window.",
  },
  alert_webhooks: {
    type: "urls",
    default: [],
    doc: "URLs that receive signed alerts, such as break-glass use and failing audit writes (`application/jwt`, `typ` `writ-alert+jwt`); https, or http on loopback only.",
  },
  audit_key_file: {
    type: "string",
    default: "audit-key.jwk",
    doc: "File holding the private JWK that signs audit checkpoints, relative to the data directory; created with mode 0600 on first start, mode 0600 required. Keep it off the store's volume.",
  },
  audit_checkpoint_interval_seconds: {
    type: "integer",
    default: defaults.auditCheckpointIntervalSeconds,
    min: 1,
    max: 86_400,
    doc: "Interval between signed checkpoints of the audit chain's head, in seconds; the server also signs one when it stops.",
  },
  audit_checkpoint_file: {
    type: "path",
    default: null,
    doc: "File that receives every checkpoint as one JSON line, relative to the data directory; put it on another volume than the store. `writ audit verify` reads it.",
  },
  audit_checkpoint_syslog: {
    type: "path",
    default: null,
    doc: "Syslog receiver of every checkpoint as an RFC 5424 message: `udp://HOST:PORT` or `unix:/PATH` (a stream socket, octet-counted frames).",
  },
  audit_checkpoint_webhooks: {
    type: "urls",
    default: [],
    doc: "URLs that receive every checkpoint's JWS by POST (`application/jwt`, `typ` `writ-checkpoint+jwt`); https, or http on loopback only.",
  },
  master_key_file: {
    type: "string",
    default: "master.key",
    doc: "File holding the base64 AES-256 master key that seals stored secrets, relative to the data directory; mode 0600 required. `WRIT_MASTER_KEY` overrides it.",
  },
};

export const configFileName = "writ.json";

/** Validates a parsed configuration object, filling defaults; throws Error naming the first bad key. */
export function parseConfig(raw: unknown, source: string): WritConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(`invalid configuration in ${source}: expected a JSON object`);
  }
  const input = raw as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (!(key in configSchema)) throw new Error(`invalid configuration in ${source}: unknown key "${key}"`);
  }

  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(configSchema)) {
    const value = input[key] ?? spec.default;
    if (value === "required") throw new Error(`invalid configuration in ${source}: "${key}" is missing`);
    const problem = checkValue(spec, value);
    if (problem !== undefined) throw new Error(`invalid configuration in ${source}: "${key}" ${problem}`);
    config[key] = value;
  }

  const result = config as unknown as WritConfig;
  const domainProblem = trustDomainProblem(result.trust_domain);
  if (domainProblem !== undefined) {
    throw new Error(`invalid configuration in ${source}: "trust_domain" is invalid: ${domainProblem}`);
  }
  checkPublicUrl(result.public_url);
  if ((result.tls_cert === null) !== (result.tls_key === null)) {
    throw new Error(`invalid configuration in ${source}: "tls_cert" and "tls_key" go together`);
  }
  return result;
}

function checkValue(spec: KeySpec, value: unknown): string | undefined {
  switch (spec.type) {
    case "string":
      return typeof value === "string" && value.length > 0 ? undefined : "must be a non-empty string";
    case "path":
      return value === null || (typeof value === "string" && value.length > 0)
        ? undefined
        : "must be a path or null";
    case "boolean":
      return typeof value === "boolean" ? undefined : "must be true or false";
    case "algorithm":
      return value === "Ed25519" || value === "ES256" ? undefined : 'must be "Ed25519" or "ES256"';
    case "integer": {
      if (typeof value !== "number" || !Number.isInteger(value)) return "must be an integer";
      if (spec.min !== undefined && value < spec.min) return `must be at least ${spec.min}`;
      if (spec.max !== undefined && value > spec.max) return `must be at most ${spec.max}`;
      return undefined;
    }
    case "urls":
      return urlListProblem(value);
    case "store": {
      const store = value as { kind?: unknown; url_env?: unknown };
      if (typeof store !== "object" || store === null) return "must be an object";
      if (store.kind === "sqlite" && Object.keys(store).length === 1) return undefined;
      if (store.kind === "postgres" && typeof store.url_env === "string" && Object.keys(store).length === 2) {
        return undefined;
      }
      return 'must be {"kind":"sqlite"} or {"kind":"postgres","url_env":"VAR"}';
    }
  }
}

/** Returns why `value` is not a list of alert webhook URLs, or undefined when it is one. */
function urlListProblem(value: unknown): string | undefined {
  if (!Array.isArray(value)) return "must be an array of URLs";
  for (const entry of value) {
    let url: URL;
    try {
      url = new URL(String(entry));
    } catch {
      return `has an invalid URL "${String(entry)}"`;
    }
    if (typeof entry !== "string" || url.username !== "" || url.password !== "" || url.hash !== "") {
      return `has "${String(entry)}": use a URL without credentials or fragment`;
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
      return `has "${entry}": use https (plain http only on loopback)`;
    }
  }
  return undefined;
}

/** Reads and validates `writ.json` from a data directory. */
export async function loadConfig(dataDir: string): Promise<WritConfig> {
  const path = join(dataDir, configFileName);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error(`no writ installation in "${dataDir}": run "writ init --data ${dataDir}" first`);
    }
    throw error;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`invalid configuration in ${path}: not valid JSON`, { cause: error });
  }
  return parseConfig(raw, path);
}
