import * as oauth from "oauth4webapi";
import { requestTaskToken, type AgentCredentials, type DpopKeyPair } from "./task-token.js";

/** A task's credential on a system, as the broker returns it. Keep the password out of logs. */
export interface SystemCredential {
  system: string;
  lease_id: string;
  role: string;
  password: string;
  host: string;
  port: number;
  database: string;
  /** A connection URL without the password. */
  url: string;
  /** The role's `VALID UNTIL`, in ms since the epoch; new logins fail after it. */
  valid_until: number;
}

/**
 * Fetches the task's own credential on a registered system: obtains a DPoP-bound token whose
 * audience is the system's resource URI (`<issuer>/v1/systems/<name>`), then calls the credential
 * endpoint with a proof by the same key. The broker audits each fetch.
 */
export async function fetchSystemCredential(
  agent: AgentCredentials,
  request: { taskId: string; system: string; dpopKeys: DpopKeyPair },
): Promise<SystemCredential> {
  const issuer = agent.issuer.replace(/\/+$/, "");
  const resource = `${issuer}/v1/systems/${encodeURIComponent(request.system)}`;
  const token = await requestTaskToken(agent, {
    taskId: request.taskId,
    resource,
    dpopKeys: request.dpopKeys,
  });
  const options = {
    ...(agent.allowInsecureHttp === true ? { [oauth.allowInsecureRequests]: true } : {}),
    ...(agent.fetch === undefined ? {} : { [oauth.customFetch]: agent.fetch }),
  };
  const client: oauth.Client = { client_id: agent.clientId };
  const dpop = oauth.DPoP(client, request.dpopKeys);
  const url = new URL(`${resource}/credentials`);

  let response: Response;
  for (let attempt = 0; ; attempt += 1) {
    try {
      response = await oauth.protectedResourceRequest(token.accessToken, "GET", url, new Headers(), null, {
        ...options,
        DPoP: dpop,
      });
      break;
    } catch (error) {
      if (attempt === 0 && oauth.isDPoPNonceError(error)) continue;
      throw error;
    }
  }

  const body = (await response.json()) as Record<string, unknown>;
  if (!response.ok) {
    throw new Error(
      `fetching the credential of system "${request.system}" failed: ${String(body.error)}: ${String(body.error_description)}`,
    );
  }
  return body as unknown as SystemCredential;
}
