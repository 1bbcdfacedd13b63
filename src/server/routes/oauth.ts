import type { FastifyInstance, FastifyRequest } from "fastify";
import type { BrokerContext } from "../../broker/context.js";
import { acceptedClientAlgorithms } from "../../identity/keys.js";
import { dpopAlgorithms } from "../../dpop/verify-proof.js";
import { handleIntrospection } from "../../oauth/introspection.js";
import { alertJwks } from "../../alerts/alert-key.js";
import { WritError } from "../../errors/writ-error.js";
import { parseForm, type FormParams } from "../../oauth/params.js";
import { handleRevocation } from "../../oauth/revocation-endpoint.js";
import { clientCredentialsGrant, handleTokenRequest, jwtBearerGrant } from "../../oauth/token-endpoint.js";
import { tokenExchangeGrant } from "../../oauth/token-exchange.js";
import { agentTaskType } from "../../tokens/authorization-details.js";
import { sendError } from "../errors.js";
import { headerValues } from "../headers.js";

/** Authorization server metadata (RFC 8414); every URL is built from the configured public URL. */
export function authorizationServerMetadata(context: BrokerContext): Record<string, unknown> {
  const issuer = context.issuer;
  return {
    issuer,
    token_endpoint: `${issuer}/oauth/token`,
    jwks_uri: `${issuer}/jwks.json`,
    introspection_endpoint: `${issuer}/oauth/introspect`,
    revocation_endpoint: `${issuer}/oauth/revoke`,
    grant_types_supported: [clientCredentialsGrant, jwtBearerGrant, tokenExchangeGrant],
    response_types_supported: [],
    token_endpoint_auth_methods_supported: ["private_key_jwt"],
    token_endpoint_auth_signing_alg_values_supported: [...acceptedClientAlgorithms],
    introspection_endpoint_auth_methods_supported: ["private_key_jwt"],
    introspection_endpoint_auth_signing_alg_values_supported: [...acceptedClientAlgorithms],
    revocation_endpoint_auth_methods_supported: ["private_key_jwt"],
    revocation_endpoint_auth_signing_alg_values_supported: [...acceptedClientAlgorithms],
    dpop_signing_alg_values_supported: dpopAlgorithms,
    authorization_details_types_supported: [agentTaskType],
  };
}

/** Registers the OAuth endpoints: metadata, JWKS, token, introspection and revocation. */
export function registerOAuthRoutes(app: FastifyInstance, context: BrokerContext): void {
  app.get("/.well-known/oauth-authorization-server", async (_request, reply) =>
    reply.header("Cache-Control", "max-age=300").send(authorizationServerMetadata(context)),
  );

  app.get("/jwks.json", async (_request, reply) =>
    reply
      .header("Cache-Control", "max-age=60")
      .send({ keys: [...context.keys.jwks().keys, ...alertJwks(context)] }),
  );

  app.post("/oauth/token", async (request, reply) => {
    try {
      const response = await handleTokenRequest(context, {
        params: formParams(request),
        proofs: headerValues(request, "dpop"),
        requestId: request.id,
      });
      if (context.config.dpop_nonce_required) reply.header("DPoP-Nonce", context.nonces.issue());
      return reply.header("Cache-Control", "no-store").header("Pragma", "no-cache").send(response);
    } catch (error) {
      return sendError(context, request, reply, error);
    }
  });

  app.post("/oauth/introspect", async (request, reply) => {
    try {
      const response = await handleIntrospection(context, formParams(request));
      return reply.header("Cache-Control", "no-store").send(response);
    } catch (error) {
      return sendError(context, request, reply, error);
    }
  });

  app.post("/oauth/revoke", async (request, reply) => {
    try {
      await handleRevocation(context, formParams(request));
      return reply.header("Cache-Control", "no-store").send();
    } catch (error) {
      return sendError(context, request, reply, error);
    }
  });
}

/**
 * Parses the body of an OAuth endpoint request. RFC 6749 section 3.2 allows only a form body, so any
 * other media type, which Fastify would parse as JSON or text, is `invalid_request`.
 */
function formParams(request: FastifyRequest): FormParams {
  const mediaType = request.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
  if (mediaType !== "application/x-www-form-urlencoded" || typeof request.body !== "string") {
    throw new WritError(
      "invalid_request",
      `invalid request body of type ${mediaType ?? "none"}: send application/x-www-form-urlencoded`,
    );
  }
  return parseForm(request.body);
}
