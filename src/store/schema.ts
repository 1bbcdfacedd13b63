import type { Generated } from "kysely";

/**
 * The tables of writ's store. Times are integers in milliseconds since the Unix epoch unless a column
 * name ends in `_s` (seconds, as JWT claims count them). JSON values are stored as text so that both
 * dialects read them the same way.
 */
export interface Database {
  humans: HumansTable;
  agents: AgentsTable;
  federated_bindings: FederatedBindingsTable;
  tools: ToolsTable;
  tasks: TasksTable;
  tokens: TokensTable;
  replay_jtis: ReplayJtisTable;
  revocations: RevocationsTable;
  signing_keys: SigningKeysTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
  secrets: SecretsTable;
  policies: PoliciesTable;
  gateways: GatewaysTable;
}

export interface SecretsTable {
  name: string;
  wrapped_key: string;
  ciphertext: string;
  created_at: number;
  updated_at: number;
}

export interface PoliciesTable {
  id: string;
  text: string;
  created_by: string;
  created_at: number;
  updated_at: number;
}

export interface GatewaysTable {
  name: string;
  spiffe_id: string;
  public_jwk: string;
  jkt: string;
  /** SHA-256 of the DER certificate a gateway presents for mutual TLS, lowercase hex. */
  tls_cert_sha256: string | null;
  /** The URL agents reach this gateway at, which its DPoP `htu` checks use. */
  public_url: string | null;
  status: string;
  created_at: number;
}

export interface HumansTable {
  id: string;
  spiffe_id: string;
  display_name: string;
  email: string | null;
  roles: string;
  public_jwk: string;
  jkt: string;
  status: string;
  created_at: number;
}

export interface AgentsTable {
  name: string;
  spiffe_id: string;
  owner: string;
  environment: string;
  status: string;
  attestation: string;
  public_jwk: string | null;
  jkt: string | null;
  created_at: number;
  updated_at: number;
}

export interface FederatedBindingsTable {
  id: string;
  agent_name: string;
  spec: string;
  created_at: number;
}

export interface ToolsTable {
  name: string;
  kind: string;
  environment: string;
  resource_uri: string;
  actions: string;
  config: string;
  created_at: number;
}

export interface TasksTable {
  id: string;
  agent_name: string;
  initiator: string;
  intent: string;
  tools: string;
  actions: string;
  environment: string;
  deadline_s: number;
  status: string;
  parent_task_id: string | null;
  created_at: number;
  ended_at: number | null;
  end_reason: string | null;
}

export interface TokensTable {
  jti: string;
  task_id: string | null;
  subject: string;
  client_id: string;
  audience: string;
  jkt: string;
  issued_at_s: number;
  expires_at_s: number;
  revoked_at: number | null;
}

export interface ReplayJtisTable {
  scope: string;
  jti: string;
  expires_at_s: number;
}

export interface RevocationsTable {
  seq: Generated<number>;
  created_at: number;
  reason: string;
  task_ids: string;
  agent_ids: string;
  jtis: string;
  expires_at_s: number;
}

export interface SigningKeysTable {
  kid: string;
  alg: string;
  public_jwk: string;
  private_jwk: string;
  created_at: number;
  retired_at: number | null;
}

export interface AuditEventsTable {
  seq: number;
  time: number;
  kind: string;
  actor: string;
  task_id: string | null;
  jti: string | null;
  data: string;
  prev_hash: string;
  hash: string;
  chain_version: number;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}
