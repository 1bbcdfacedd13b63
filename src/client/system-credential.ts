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

/** A checkout of a shared account, as the broker returns it. Keep the password out of logs. */
export interface SharedAccountCheckout {
  checkout_id: string;
  account: string;
  system: string;
  role: string;
  /** When the checkout ends and the password is rotated, in ms since the epoch. */
  expires_at: number;
  password: string;
}

/**
 * Checks out a shared account for the agent's own task, which must list `SYSTEM:account.NAME`. One
 * holder at a time: a second checkout fails with `conflict` unless `waitS` lets it wait. The password
 * is rotated when the checkout is returned or ends.
 */
export async function checkOutSharedAccount(
  agent: AgentCredentials,
  request: {
    taskId: string;
    system: string;
    account: string;
    dpopKeys: DpopKeyPair;
    durationS?: number;
    waitS?: number;
  },
): Promise<SharedAccountCheckout> {
  const body = {
    ...(request.durationS === undefined ? {} : { duration_s: request.durationS }),
    ...(request.waitS === undefined ? {} : { wait_s: request.waitS }),
  };
  return (await accountRequest(agent, request, "checkout", body)) as unknown as SharedAccountCheckout;
}

/** Returns a shared account the agent's task checked out; the broker then rotates its password. */
export async function checkInSharedAccount(
  agent: AgentCredentials,
  request: { taskId: string; system: string; account: string; dpopKeys: DpopKeyPair },
): Promise<{ account: string; rotated: boolean }> {
  return (await accountRequest(agent, request, "checkin", {})) as { account: string; rotated: boolean };
}

async function accountRequest(
  agent: AgentCredentials,
  request: { taskId: string; system: string; account: string; dpopKeys: DpopKeyPair },
  operation: "checkout" | "checkin",
  body: Record<string, unknown>,
): Promise<Record<string, unknown>> {
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

  const url = new URL(`${resource}/accounts/${encodeURIComponent(request.account)}/${operation}`);
  let response: Response;
  for (let attempt = 0; ; attempt += 1) {
    try {
      response = await oauth.protectedResourceRequest(
        token.accessToken,
        "POST",
        url,
        new Headers({ "content-type": "application/json" }),
        JSON.stringify(body),
        { ...options, DPoP: dpop },
      );
      break;
    } catch (error) {
      if (attempt === 0 && oauth.isDPoPNonceError(error)) continue;
      throw error;
    }
  }
  const answer = (await response.json()) as Record<string, unknown>;
  if (!response.ok) {
    throw new Error(
      `${operation} of account "${request.account}" failed: ${String(answer.error)}: ${String(answer.error_description)}`,
    );
  }
  return answer;
}
