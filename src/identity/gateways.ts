import { calculateJwkThumbprint, type JWK } from "jose";
import type { BrokerContext } from "../broker/context.js";
import { checkPublicUrl } from "../config/public-url.js";
import { WritError } from "../errors/writ-error.js";
import type { GatewaysTable } from "../store/schema.js";
import { publicMembers } from "./keys.js";
import { pathSegmentProblem, spiffeId } from "./spiffe.js";

/** A registered gateway: an identity of its own that may read what enforcement needs. */
export interface RegisteredGateway {
  name: string;
  spiffe_id: string;
  public_jwk: JWK;
  jkt: string;
  /** SHA-256 of the DER certificate it presents for mutual TLS, lowercase hex, or null. */
  tls_cert_sha256: string | null;
  /** The URL agents reach it at, for DPoP `htu` checks by the decision API, or null. */
  public_url: string | null;
  status: "active" | "disabled";
  created_at: number;
}

export interface NewGateway {
  name: string;
  public_jwk: JWK;
  tls_cert_sha256?: string | null;
  public_url?: string | null;
}

/** Registers a gateway with its own key. */
export async function addGateway(
  context: BrokerContext,
  actor: string,
  input: NewGateway,
): Promise<RegisteredGateway> {
  const problem = pathSegmentProblem(input.name);
  if (problem !== undefined)
    throw new WritError("invalid_request", `invalid gateway name "${input.name}": ${problem}`);
  const fingerprint = input.tls_cert_sha256?.toLowerCase() ?? null;
  if (fingerprint !== null && !/^[0-9a-f]{64}$/.test(fingerprint)) {
    throw new WritError("invalid_request", "tls_cert_sha256 must be 64 hex digits");
  }
  let publicUrl: string | null = null;
  if (input.public_url !== undefined && input.public_url !== null) {
    try {
      publicUrl = checkPublicUrl(input.public_url).href.replace(/\/+$/, "");
    } catch (error) {
      throw new WritError("invalid_request", (error as Error).message);
    }
  }
  let publicJwk: JWK;
  try {
    publicJwk = publicMembers(input.public_jwk);
  } catch (error) {
    throw new WritError("invalid_request", `invalid public key: ${(error as Error).message}`);
  }
  const gateway: RegisteredGateway = {
    name: input.name,
    spiffe_id: spiffeId(context.config.trust_domain, "gateway", input.name),
    public_jwk: publicJwk,
    jkt: await calculateJwkThumbprint(publicJwk, "sha256"),
    tls_cert_sha256: fingerprint,
    public_url: publicUrl,
    status: "active",
    created_at: context.clock.nowMs(),
  };
  if ((await getGateway(context, input.name)) !== undefined) {
    throw new WritError("conflict", `gateway "${input.name}" already exists`);
  }

  // The decision API identifies its caller only by this fingerprint, so two gateways sharing it would
  // make the caller, and the public URL its DPoP proofs are checked against, ambiguous.
  if (fingerprint !== null) {
    const holder = await context.store.db
      .selectFrom("gateways")
      .select("name")
      .where("tls_cert_sha256", "=", fingerprint)
      .executeTakeFirst();
    if (holder !== undefined) {
      throw new WritError(
        "conflict",
        `gateway "${holder.name}" already has this TLS certificate; give each gateway its own certificate`,
      );
    }
  }
  await context.audit.append(
    {
      kind: "gateway.created",
      actor,
      data: {
        gateway: gateway.spiffe_id,
        jkt: gateway.jkt,
        tls_cert_sha256: fingerprint,
        public_url: publicUrl,
      },
    },
    async (trx) => {
      await trx
        .insertInto("gateways")
        .values({ ...gateway, public_jwk: JSON.stringify(gateway.public_jwk) })
        .execute();
    },
  );
  return gateway;
}

export async function getGateway(
  context: BrokerContext,
  name: string,
): Promise<RegisteredGateway | undefined> {
  const row = await context.store.db
    .selectFrom("gateways")
    .selectAll()
    .where("name", "=", name)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function getGatewayBySpiffeId(
  context: BrokerContext,
  id: string,
): Promise<RegisteredGateway | undefined> {
  const row = await context.store.db
    .selectFrom("gateways")
    .selectAll()
    .where("spiffe_id", "=", id)
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

/** Finds the active gateway whose registered certificate has this SHA-256 fingerprint. */
export async function getGatewayByCertificate(
  context: BrokerContext,
  fingerprint: string,
): Promise<RegisteredGateway | undefined> {
  const row = await context.store.db
    .selectFrom("gateways")
    .selectAll()
    .where("tls_cert_sha256", "=", fingerprint.toLowerCase())
    .where("status", "=", "active")
    .executeTakeFirst();
  return row === undefined ? undefined : fromRow(row);
}

export async function listGateways(context: BrokerContext): Promise<RegisteredGateway[]> {
  const rows = await context.store.db.selectFrom("gateways").selectAll().orderBy("name").execute();
  return rows.map(fromRow);
}

function fromRow(row: GatewaysTable): RegisteredGateway {
  return {
    ...row,
    public_jwk: JSON.parse(row.public_jwk) as JWK,
    status: row.status as RegisteredGateway["status"],
  };
}

/**
 * Enables or disables a gateway. A disabled gateway gets no new token, and its tokens stop working at
 * the broker at once: it can no longer fetch credentials, ask for decisions, introspect, read the
 * revocation feed anew or ship audit events. Throws `not_found` for an unknown name.
 */
export async function setGatewayStatus(
  context: BrokerContext,
  actor: string,
  name: string,
  status: RegisteredGateway["status"],
): Promise<RegisteredGateway> {
  const gateway = await getGateway(context, name);
  if (gateway === undefined)
    throw new WritError(
      "not_found",
      `no gateway named "${name}": writ gateway list shows the registered ones`,
    );
  await context.audit.append(
    {
      kind: status === "active" ? "gateway.enabled" : "gateway.disabled",
      actor,
      data: { gateway: gateway.spiffe_id },
    },
    async (trx) => {
      await trx.updateTable("gateways").set({ status }).where("name", "=", name).execute();
    },
  );
  return { ...gateway, status };
}
