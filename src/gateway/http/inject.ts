import { renderTemplate, type HttpToolConfig } from "../../tools/http-config.js";
import type { GatewayBackend } from "../backend.js";

/**
 * The credentials an allowed request carries upstream. Values are secrets: never log them. One
 * Injection is shared by every request of a tool while its secrets stay the same, so callers must
 * not change it.
 */
export interface Injection {
  /** Header fields to set, lowercased names. */
  headers: Record<string, string>;
  /** Query parameters to set, replacing any the client sent under the same name. */
  query: [string, string][];
  /**
   * Every form an injected value can take on the wire, lowercased: raw, percent-encoded,
   * form-encoded, and the base64 of each Basic credential. The base64 and base64url of each secret
   * and injected header value are added too. A response header that echoes any of them is removed.
   */
  echoForms: string[];
}

/** The last injection rendered for a tool's settings, and the secret values it was rendered with. */
const rendered = new WeakMap<HttpToolConfig, { secrets: string[]; injection: Injection }>();

/**
 * Renders a tool's injection rules with its secrets, fetched through the backend. The result is
 * reused while the tool's settings object and its secret values stay the same, so the encoded forms
 * are not computed again for every request.
 */
export async function renderInjection(
  backend: GatewayBackend,
  toolName: string,
  config: HttpToolConfig,
): Promise<Injection> {
  const values = new Map<string, string>();
  for (const rule of config.inject) {
    for (const name of rule.secrets) {
      if (!values.has(name)) values.set(name, await backend.secret(toolName, name));
    }
  }
  const secrets = [...values.values()];
  const cached = rendered.get(config);
  if (cached !== undefined && sameValues(cached.secrets, secrets)) return cached.injection;
  const injection = buildInjection(config, values);
  rendered.set(config, { secrets, injection });
  return injection;
}

/** Renders the rules of `config` with the secret `values`, by name. */
function buildInjection(config: HttpToolConfig, values: ReadonlyMap<string, string>): Injection {
  const injection: Injection = { headers: {}, query: [], echoForms: [] };
  const forms = new Set<string>();
  for (const value of values.values()) {
    forms.add(value);
    forms.add(encodeURIComponent(value));
    forms.add(new URLSearchParams([["", value]]).toString().slice(1));
    addBase64Forms(forms, value);
  }
  for (const rule of config.inject) {
    const value = renderTemplate(rule.template, values);
    if (rule.location === "header") {
      injection.headers[rule.name.toLowerCase()] = value;
      addBase64Forms(forms, value);
    }
    if (rule.location === "basic") {
      const credential = Buffer.from(`${rule.name}:${value}`).toString("base64");
      injection.headers.authorization = `Basic ${credential}`;
      forms.add(credential);
    }
    if (rule.location === "query") injection.query.push([rule.name, value]);
  }
  injection.echoForms = [...forms].filter((form) => form !== "").map((form) => form.toLowerCase());
  return injection;
}

function sameValues(left: readonly string[], right: readonly string[]): boolean {
  return left.length === right.length && left.every((value, index) => value === right[index]);
}

/** Adds the base64 and base64url encodings of `value`, without padding, to `forms`. */
function addBase64Forms(forms: Set<string>, value: string): void {
  const bytes = Buffer.from(value);
  forms.add(bytes.toString("base64").replace(/=+$/, ""));
  forms.add(bytes.toString("base64url"));
}

/**
 * Returns the query to forward: the agent's query as received, less every parameter named like an
 * injected one, then the injected parameters, form-encoded. Names are compared without case, because
 * some upstreams read them that way. The agent's other parameters are not decoded and encoded again,
 * so the upstream reads the values the agent sent.
 */
export function withInjectedQuery(rawQuery: string, injected: readonly [string, string][]): string {
  const names = new Set(injected.map(([name]) => name.toLowerCase()));
  const agentParts = rawQuery.split("&").filter((part) => part !== "" && !names.has(parameterName(part)));
  const added = new URLSearchParams(injected).toString();
  return [...agentParts, added].join("&");
}

/** Returns the decoded, lowercased name of one `name=value` query part, or its raw name if that fails to decode. */
function parameterName(part: string): string {
  const equals = part.indexOf("=");
  const raw = (equals === -1 ? part : part.slice(0, equals)).replace(/\+/g, " ");
  try {
    return decodeURIComponent(raw).toLowerCase();
  } catch {
    return raw.toLowerCase();
  }
}
