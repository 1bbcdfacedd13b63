import type { CryptoKey } from "jose";
import type { StepUpRequest, StepUpResult } from "../approvals/step-up.js";
import type { AuditInput } from "../audit/log.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { Tool } from "../tools/registry.js";
import type { RevocationState } from "./revocation-state.js";

/** What a gateway needs of a task beyond its token: the facts policies read. */
export interface TaskFacts {
  id: string;
  intent: string;
  environment: string;
  /** Epoch seconds. */
  deadline_s: number;
  initiator: string;
  /** Delegation depth: 0 for a root task. */
  depth: number;
}

/** A key of the broker's JWKS, with the one algorithm it verifies. */
export interface VerificationKey {
  key: CryptoKey;
  alg: string;
}

/**
 * Everything a gateway depends on, all of it published by the broker: keys, tools, tasks, policies,
 * revocations, the audit log and upstream credentials. In the embedded default it is the broker's
 * own state; a separate gateway reaches the same through the broker's API as its own identity.
 */
export interface GatewayBackend {
  /** The broker's issuer identifier, which tokens must name in `iss`. */
  readonly issuer: string;
  /** The public URL agents reach this gateway at; DPoP `htu` and tool resource URIs derive from it. */
  readonly publicUrl: string;
  readonly revocations: RevocationState;
  readonly policy: PolicyEngine;
  /** Returns the key with `kid`, refreshing the key set at most once per interval on a miss. */
  verificationKey(kid: string): Promise<VerificationKey | undefined>;
  tool(name: string): Promise<Tool | undefined>;
  task(id: string): Promise<TaskFacts | undefined>;
  /** Appends an audit event and resolves once it is durable; rejects when it could not be written. */
  record(event: AuditInput): Promise<void>;
  /**
   * Settles a call to an action that needs approval: spends a granted approval of the exact call, or
   * reports the open or rejected one, or opens a new request. Rejects when the broker cannot be asked.
   */
  stepUp(request: StepUpRequest): Promise<StepUpResult>;
  /** Returns a secret's value for injection into a request to `tool`. Never log or return it. */
  secret(tool: string, name: string): Promise<string>;
  /**
   * Returns a task's credential on a system for a stdio server the gateway starts for that task.
   * Only the backend embedded in the broker has it. Never log or return the password.
   */
  systemCredential?(system: string, taskId: string): Promise<{ url: string; password: string }>;
  close(): Promise<void>;
}
