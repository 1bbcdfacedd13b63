import type { FastifyInstance } from "fastify";
import { dpopAlgorithms } from "../../dpop/verify-proof.js";
import type { GatewayBackend } from "../backend.js";

/** Returns the path of an MCP tool's Protected Resource Metadata, as RFC 9728 section 3.1 derives it. */
export function metadataPath(tool: string): string {
  return `/.well-known/oauth-protected-resource/mcp/${tool}`;
}

/**
 * Registers the Protected Resource Metadata (RFC 9728) of each MCP tool, which MCP clients read after
 * a 401 to find the authorization server and learn that tokens must be DPoP-bound. Unknown tools and
 * HTTP tools get 404.
 */
export function registerMetadataRoute(app: FastifyInstance, backend: GatewayBackend): void {
  app.get("/.well-known/oauth-protected-resource/mcp/:tool", async (request, reply) => {
    const name = (request.params as { tool: string }).tool;
    const tool = await backend.tool(name);
    if (tool === undefined || tool.kind !== "mcp") {
      return reply.code(404).send({ error: "not_found", error_description: "no such tool" });
    }
    return reply.header("Cache-Control", "max-age=300").send({
      resource: tool.resource_uri,
      authorization_servers: [backend.issuer],
      bearer_methods_supported: ["header"],
      dpop_bound_access_tokens_required: true,
      dpop_signing_alg_values_supported: dpopAlgorithms,
      resource_name: tool.name,
    });
  });
}
