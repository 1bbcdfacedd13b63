import type { IncomingHttpHeaders } from "node:http";

/** The JSON-RPC error code of the 2026-07-28 revision for request headers that disagree with the body. */
export const headerMismatchCode = -32020;

/** A JSON-RPC message as it arrived, before the SDK validates it. */
export interface RawMessage {
  method?: unknown;
  params?: unknown;
}

/**
 * Returns why the MCP routing headers of a request disagree with its body, or undefined when they
 * agree or are absent. Proxies and gateways in front of this one may route on the headers alone, so
 * a request whose headers name another method, tool, resource or argument than its body is rejected.
 *
 * - `Mcp-Method` must equal the body's `method`.
 * - `Mcp-Name` must equal `params.name` of `tools/call` and `prompts/get`, or `params.uri` of
 *   `resources/read`; other methods have no name.
 * - `MCP-Protocol-Version` on `initialize` must equal `params.protocolVersion`.
 * - `Mcp-Param-NAME` must equal the string form of the `tools/call` argument NAME (matched
 *   without regard to case, as header names are).
 */
export function headerMismatch(headers: IncomingHttpHeaders, message: RawMessage): string | undefined {
  const params =
    typeof message.params === "object" && message.params !== null
      ? (message.params as Record<string, unknown>)
      : {};
  const method = typeof message.method === "string" ? message.method : undefined;

  const mcpMethod = single(headers["mcp-method"]);
  if (mcpMethod === null) return "Mcp-Method is repeated";
  if (mcpMethod !== undefined && mcpMethod !== method)
    return `Mcp-Method "${mcpMethod}" differs from method "${String(method)}"`;

  const mcpName = single(headers["mcp-name"]);
  if (mcpName === null) return "Mcp-Name is repeated";
  if (mcpName !== undefined) {
    const name =
      method === "resources/read"
        ? params.uri
        : method === "tools/call" || method === "prompts/get"
          ? params.name
          : undefined;
    if (typeof name !== "string" || name !== mcpName) return `Mcp-Name "${mcpName}" differs from the body`;
  }

  const version = single(headers["mcp-protocol-version"]);
  if (version === null) return "MCP-Protocol-Version is repeated";
  if (version !== undefined && method === "initialize" && params.protocolVersion !== version) {
    return `MCP-Protocol-Version "${version}" differs from protocolVersion`;
  }

  const args =
    typeof params.arguments === "object" && params.arguments !== null
      ? (params.arguments as Record<string, unknown>)
      : {};
  for (const [header, raw] of Object.entries(headers)) {
    if (!header.startsWith("mcp-param-")) continue;
    const value = single(raw);
    if (value === null) return `${header} is repeated`;
    if (method !== "tools/call") return `${header} on method "${String(method)}"`;
    const wanted = header.slice("mcp-param-".length);
    const key = Object.keys(args).find((name) => name.toLowerCase() === wanted);
    const argument = key === undefined ? undefined : args[key];
    const text =
      typeof argument === "string" ? argument : argument === undefined ? undefined : JSON.stringify(argument);
    if (text !== value) return `${header} differs from argument "${wanted}"`;
  }
  return undefined;
}

/** Returns the one value of a header, undefined when absent, null when repeated. */
function single(value: string | string[] | undefined): string | undefined | null {
  if (Array.isArray(value)) return value.length === 1 ? value[0] : null;
  return value;
}
