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
  approvals: ApprovalsTable;
  approval_votes: ApprovalVotesTable;
  breakglass: BreakglassTable;
  alert_deliveries: AlertDeliveriesTable;
  alert_signing_keys: AlertSigningKeysTable;
}

export interface ApprovalsTable {
  id: string;
  /** `step_up` for a held tool call, `breakglass` for an emergency window. */
  kind: string;
  requester: string;
  task_id: string | null;
  /** SHA-256 of the exact call a step-up approval is bound to. */
  digest: string | null;
  /** JSON: who may approve and how many distinct approvers are needed. */
  rule: string;
  /** JSON: what is to be approved, as shown to approvers. */
  subject: string;
  status: string;
  created_at: number;
  expires_at: number;
  decided_at: number | null;
  used_at: number | null;
}

export interface ApprovalVotesTable {
  approval_id: string;
  approver: string;
  decision: string;
  created_at: number;
}

export interface BreakglassTable {
  id: string;
  requester: string;
  /** The SPIFFE ID of the agent or person the window is for. */
  target: string;
  actions: string;
  reason: string;
  duration_s: number;
  status: string;
  approval_id: string;
  task_id: string | null;
  created_at: number;
  activated_at: number | null;
  ends_at_s: number | null;
  ended_at: number | null;
  note: string | null;
}

export interface AlertDeliveriesTable {
  id: string;
  event: string;
  url: string;
  attempts: number;
  status: string;
  next_attempt_at: number;
  created_at: number;
}

/** The broker's alert signing key; published in the JWKS beside the token keys under its own `kid`. */
export interface AlertSigningKeysTable {
  kid: string;
  alg: string;
  public_jwk: string;
  private_jwk: string;
  created_at: number;
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
  /** The SPIFFE ID of the root agent whose authority the task uses; null means its own agent. */
  subject: string | null;
  /** JSON array of the actors from the task's agent back to the root's delegate, for `act`. */
  actor_chain: string | null;
  depth: number | null;
  breakglass_id: string | null;
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
