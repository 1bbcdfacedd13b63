import { renderTemplate, type HttpToolConfig } from "../../tools/http-config.js";
import type { GatewayBackend } from "../backend.js";

/** The credentials an allowed request carries upstream. Values are secrets: never log them. */
export interface Injection {
  /** Header fields to set, lowercased names. */
  headers: Record<string, string>;
  /** Query parameters to set, replacing any the client sent under the same name. */
  query: [string, string][];
  /**
   * Every form an injected value can take on the wire (raw, percent-encoded, form-encoded, and the
   * base64 of each Basic credential), so that a response header echoing one of them is removed.
   */
  echoForms: string[];
}

/** Renders a tool's injection rules with its secrets, fetched through the backend. */
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

  const injection: Injection = { headers: {}, query: [], echoForms: [] };
  const forms = new Set<string>();
  for (const value of values.values()) {
    forms.add(value);
    forms.add(encodeURIComponent(value));
    forms.add(new URLSearchParams([["", value]]).toString().slice(1));
  }
  for (const rule of config.inject) {
    const value = renderTemplate(rule.template, values);
    if (rule.location === "header") injection.headers[rule.name.toLowerCase()] = value;
    if (rule.location === "basic") {
      const credential = Buffer.from(`${rule.name}:${value}`).toString("base64");
      injection.headers.authorization = `Basic ${credential}`;
      forms.add(credential);
    }
    if (rule.location === "query") injection.query.push([rule.name, value]);
  }
  injection.echoForms = [...forms];
  return injection;
}
