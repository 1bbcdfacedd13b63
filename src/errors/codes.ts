/**
 * The registry of writ's error codes. Each entry names the OAuth or HTTP error sent on the wire (the
 * RFC's code where one exists), the HTTP status, and a one-line summary that docs/errors.md repeats.
 */
export const errorCodes = {
  invalid_request: { status: 400, summary: "the request is missing a parameter or is malformed" },
  invalid_client: { status: 401, summary: "client authentication failed (RFC 6749 section 5.2)" },
  invalid_grant: { status: 400, summary: "the grant or assertion is invalid, expired or replayed" },
  unauthorized_client: { status: 400, summary: "the client may not use this grant type" },
  unsupported_grant_type: { status: 400, summary: "the grant type is not supported" },
  invalid_scope: { status: 400, summary: "the requested scope is invalid or wider than allowed" },
  invalid_target: { status: 400, summary: "the resource is not one the task may use (RFC 8707)" },
  invalid_authorization_details: {
    status: 400,
    summary: "the authorization_details are malformed or name a task the caller may not use (RFC 9396)",
  },
  invalid_dpop_proof: { status: 400, summary: "the DPoP proof is invalid (RFC 9449 section 5)" },
  use_dpop_nonce: { status: 400, summary: "the server requires a DPoP nonce; retry with the one given" },
  invalid_token: { status: 401, summary: "the access token is invalid, expired or revoked (RFC 6750)" },
  insufficient_scope: { status: 403, summary: "the token is valid but does not allow this request" },
  access_denied: { status: 403, summary: "the caller is authenticated but may not do this" },
  not_found: { status: 404, summary: "the object does not exist or the caller may not see it" },
  conflict: { status: 409, summary: "the object already exists or is in a state that forbids the change" },
  invalid_binding: {
    status: 400,
    summary: "the federated binding is malformed or could match more than one workload",
  },
  invalid_configuration: { status: 500, summary: "the configuration is invalid; fix it and restart" },
  server_error: { status: 500, summary: "an internal error occurred; the log has the detail" },
  temporarily_unavailable: { status: 503, summary: "a dependency is unavailable; retry later" },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof errorCodes;
