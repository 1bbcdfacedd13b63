import { createPrivateKey, randomUUID, type KeyObject } from "node:crypto";
import type { JWK } from "jose";
import { signEd25519Jws } from "./jws.js";

/** An agent's keys, SPIFFE ID and task: everything it needs to request tokens for the task. */
export interface AgentCredentials {
  /** The agent's SPIFFE ID, its OAuth client_id. */
  clientId: string;
  /** The private half of the key registered for the agent, as a JWK. */
  clientJwk: JWK;
  /** The private half of the agent's DPoP key, as a JWK. */
  dpopJwk: JWK;
  taskId: string;
  /** The tool's resource URI, sent as `resource`. */
  resource: string;
}

/** The body and headers of one token request. */
export interface TokenRequestMessage {
  body: string;
  headers: Record<string, string>;
}

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** Lifetime of each client assertion, in seconds. The broker accepts up to 5 minutes by default. */
const assertionLifetimeSeconds = 60;

/**
 * Builds token requests for one agent: client_credentials with a private_key_jwt client assertion and
 * a DPoP proof, both signed anew with fresh `jti` values for every request, as a real client does.
 */
export class TokenRequestBuilder {
  private readonly clientKey: KeyObject;
  private readonly dpopKey: KeyObject;
  private readonly dpopPublicJwk: { kty: unknown; crv: unknown; x: unknown };
  private readonly tokenEndpoint: string;
  private readonly authorizationDetails: string;

  constructor(
    private readonly issuer: string,
    private readonly agent: AgentCredentials,
  ) {
    this.clientKey = createPrivateKey({ key: agent.clientJwk as Record<string, string>, format: "jwk" });
    this.dpopKey = createPrivateKey({ key: agent.dpopJwk as Record<string, string>, format: "jwk" });
    this.dpopPublicJwk = { kty: agent.dpopJwk.kty, crv: agent.dpopJwk.crv, x: agent.dpopJwk.x };
    this.tokenEndpoint = `${issuer}/oauth/token`;
    this.authorizationDetails = JSON.stringify([{ type: "agent_task", task_id: agent.taskId }]);
  }

  build(): TokenRequestMessage {
    const nowS = Math.floor(Date.now() / 1000);
    const assertion = signEd25519Jws(
      { typ: "JWT" },
      {
        iss: this.agent.clientId,
        sub: this.agent.clientId,
        aud: this.issuer,
        jti: randomUUID(),
        iat: nowS,
        exp: nowS + assertionLifetimeSeconds,
      },
      this.clientKey,
    );
    const proof = signEd25519Jws(
      { typ: "dpop+jwt", jwk: this.dpopPublicJwk },
      { htm: "POST", htu: this.tokenEndpoint, iat: nowS, jti: randomUUID() },
      this.dpopKey,
    );
    const body = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: this.agent.clientId,
      client_assertion_type: clientAssertionType,
      client_assertion: assertion,
      resource: this.agent.resource,
      authorization_details: this.authorizationDetails,
    }).toString();
    return {
      body,
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
        dpop: proof,
      },
    };
  }
}
