import { WritError } from "../errors/writ-error.js";
import { secretNameProblem } from "../secrets/secrets.js";

/** Where an injected credential goes on the upstream request. */
export type InjectLocation = "header" | "basic" | "query";

/**
 * One injection rule: `header:NAME=TEMPLATE`, `basic:USERNAME=TEMPLATE` (the template is the
 * password) or `query:PARAM=TEMPLATE`, where TEMPLATE mixes literal text with `${secret:NAME}`.
 */
export interface InjectRule {
  location: InjectLocation;
  name: string;
  template: string;
  /** The secrets the template names, in order. */
  secrets: string[];
}

/** What the gateway needs to forward to an HTTP tool. */
export interface HttpToolConfig {
  upstream: string;
  inject: InjectRule[];
  case_sensitive: boolean;
  /** Upstream timeout for headers and for each body chunk, in milliseconds. */
  timeout_ms: number;
  /** Largest request or response body forwarded, in bytes. */
  max_body_bytes: number;
  /** The registered gateways this tool is assigned to; the credential API releases secrets only to them. */
  gateways: string[];
}

export const defaultUpstreamTimeoutMs = 30_000;
export const defaultMaxBodyBytes = 10 * 1024 * 1024;

const secretReference = /\$\{secret:([^}]*)\}/g;
const headerNamePattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Headers a rule may not set: they frame the message or belong to the hop. */
const forbiddenHeaders = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "te",
  "upgrade",
  "trailer",
]);

/** Parses an injection rule as the CLI takes it; throws `invalid_request` naming what is wrong. */
export function parseInjectRule(text: string): InjectRule {
  const colon = text.indexOf(":");
  const equals = text.indexOf("=", colon + 1);
  const location = text.slice(0, colon);
  if (colon < 1 || equals < 0 || !["header", "basic", "query"].includes(location)) {
    throw new WritError(
      "invalid_request",
      `invalid injection rule "${text}": use header:NAME=TEMPLATE, basic:USER=TEMPLATE or query:PARAM=TEMPLATE`,
    );
  }
  const name = text.slice(colon + 1, equals);
  const template = text.slice(equals + 1);
  if (name === "")
    throw new WritError("invalid_request", `invalid injection rule "${text}": the name is empty`);
  if (location === "header" && (!headerNamePattern.test(name) || forbiddenHeaders.has(name.toLowerCase()))) {
    throw new WritError(
      "invalid_request",
      `invalid injection rule "${text}": "${name}" is not a header a rule may set`,
    );
  }
  const secrets = [...template.matchAll(secretReference)].map((match) => match[1] as string);
  if (secrets.length === 0) {
    throw new WritError(
      "invalid_request",
      `invalid injection rule "${text}": the template names no \${secret:NAME}`,
    );
  }
  for (const secret of secrets) {
    const problem = secretNameProblem(secret);
    if (problem !== undefined)
      throw new WritError("invalid_request", `invalid secret "${secret}" in "${text}": ${problem}`);
  }
  return { location: location as InjectLocation, name, template, secrets };
}

/** Validates the HTTP part of a tool registration. */
export function parseHttpToolConfig(input: {
  upstream?: unknown;
  inject?: unknown;
  case_sensitive?: unknown;
  timeout_ms?: unknown;
  max_body_bytes?: unknown;
  gateways?: unknown;
}): HttpToolConfig {
  if (typeof input.upstream !== "string")
    throw new WritError("invalid_request", "an http tool needs --upstream URL");
  let upstream: URL;
  try {
    upstream = new URL(input.upstream);
  } catch {
    throw new WritError("invalid_request", `invalid upstream "${input.upstream}": not an absolute URL`);
  }
  if (upstream.protocol !== "http:" && upstream.protocol !== "https:") {
    throw new WritError("invalid_request", `invalid upstream "${input.upstream}": use http or https`);
  }
  // `search` and `hash` are empty for a bare `?` or `#`, which `href` keeps, so `href` is checked.
  if (
    upstream.href.includes("?") ||
    upstream.href.includes("#") ||
    upstream.username !== "" ||
    upstream.password !== ""
  ) {
    throw new WritError(
      "invalid_request",
      `invalid upstream "${input.upstream}": no query, fragment or credentials`,
    );
  }
  const rules = input.inject === undefined ? [] : input.inject;
  if (!Array.isArray(rules) || !rules.every((rule) => typeof rule === "string")) {
    throw new WritError("invalid_request", '"inject" must be an array of rule strings');
  }
  const gateways = input.gateways ?? [];
  if (!Array.isArray(gateways) || !gateways.every((name) => typeof name === "string")) {
    throw new WritError("invalid_request", '"gateways" must be an array of gateway names');
  }
  return {
    upstream: upstream.href.replace(/\/+$/, ""),
    inject: rules.map(parseInjectRule),
    case_sensitive: input.case_sensitive === undefined ? true : input.case_sensitive === true,
    timeout_ms: positiveInteger(input.timeout_ms, defaultUpstreamTimeoutMs, "timeout_ms"),
    max_body_bytes: positiveInteger(input.max_body_bytes, defaultMaxBodyBytes, "max_body_bytes"),
    gateways: gateways as string[],
  };
}

function positiveInteger(value: unknown, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new WritError("invalid_request", `"${name}" must be a positive integer`);
  }
  return value;
}

/** Fills a template with secret values; the result is a credential and must never be logged. */
export function renderTemplate(template: string, values: ReadonlyMap<string, string>): string {
  return template.replace(secretReference, (_match, name: string) => values.get(name) ?? "");
}
