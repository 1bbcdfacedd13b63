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
  audit_checkpoints: AuditCheckpointsTable;
  secrets: SecretsTable;
  policies: PoliciesTable;
  gateways: GatewaysTable;
  approvals: ApprovalsTable;
  approval_votes: ApprovalVotesTable;
  breakglass: BreakglassTable;
  alert_deliveries: AlertDeliveriesTable;
  alert_signing_keys: AlertSigningKeysTable;
  systems: SystemsTable;
  system_templates: SystemTemplatesTable;
  leases: LeasesTable;
  accounts: AccountsTable;
  account_checkouts: AccountCheckoutsTable;
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

/** One signed checkpoint of the audit chain's head; `jws` signs `seq`, `hash` and `time`. */
export interface AuditCheckpointsTable {
  seq: number;
  hash: string;
  time: number;
  jws: string;
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

/** A registered database server; `dsn` carries no password, which lives in the secret store. */
export interface SystemsTable {
  name: string;
  kind: string;
  dsn: string;
  password_secret: string;
  environment: string;
  created_at: number;
}

/** What a task's role on a system may do: group roles (JSON array) and GRANT clauses (JSON array). */
export interface SystemTemplatesTable {
  system: string;
  name: string;
  member_of: string;
  grants: string;
  /** The database where the grants apply and where the role's objects are dropped. */
  database: string;
  /** The role that receives the task role's objects at cleanup; null drops them. */
  successor: string | null;
  connection_limit: number;
  created_at: number;
}

/** One task's login role on a system, from creation until `DROP ROLE` succeeded. */
export interface LeasesTable {
  id: string;
  system: string;
  template: string;
  role: string;
  task_id: string;
  /** `active`, `cleanup_pending` or `cleaned`. */
  state: string;
  /** The role's `VALID UNTIL`, the task's deadline. */
  valid_until: number;
  /** Failed cleanup attempts so far. */
  attempts: number;
  last_error: string | null;
  next_attempt_at: number;
  /** The role's password, sealed under the master key; cleared once the lease is cleaned. */
  wrapped_key: string | null;
  ciphertext: string | null;
  created_at: number;
  cleaned_at: number | null;
}

/** A legacy shared role that writ checks out to one holder at a time and rotates after use. */
export interface AccountsTable {
  name: string;
  kind: string;
  system: string;
  role: string;
  /** Rotation interval in seconds even when unused; null rotates only after use. */
  rotate_every_s: number | null;
  /** The open checkout, or null when the account is free. */
  checkout_id: string | null;
  /** The reason of a rotation that failed and must happen before the next checkout, else null. */
  rotation_due: string | null;
  /** While a broker rotates the password, until when its claim keeps other brokers away (ms). */
  rotation_claimed_until: number | null;
  rotated_at: number;
  /** The current password, sealed under the master key. */
  wrapped_key: string;
  ciphertext: string;
  created_at: number;
}

export interface AccountCheckoutsTable {
  id: string;
  account: string;
  /** `task` or `human`. */
  holder_kind: string;
  /** The task id or the human id. */
  holder_id: string;
  /** JSON: the holder as audit events record it. */
  holder: string;
  checked_out_at: number;
  expires_at: number;
  checked_in_at: number | null;
}
