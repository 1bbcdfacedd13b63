import { renderTemplate, type HttpToolConfig } from "../../tools/http-config.js";
import type { GatewayBackend } from "../backend.js";

/** The credentials an allowed request carries upstream. Values are secrets: never log them. */
export interface Injection {
  /** Header fields to set, lowercased names. */
  headers: Record<string, string>;
  /** Query parameters to set, replacing any the client sent under the same name. */
  query: [string, string][];
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
  const injection: Injection = { headers: {}, query: [] };
  for (const rule of config.inject) {
    const value = renderTemplate(rule.template, values);
    if (rule.location === "header") injection.headers[rule.name.toLowerCase()] = value;
    if (rule.location === "basic") {
      injection.headers.authorization = `Basic ${Buffer.from(`${rule.name}:${value}`).toString("base64")}`;
    }
    if (rule.location === "query") injection.query.push([rule.name, value]);
  }
  return injection;
}
