import { randomUUID } from "node:crypto";
import type { Transaction } from "kysely";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { getHumanBySpiffeId } from "../identity/humans.js";
import type { ApprovalsTable, Database } from "../store/schema.js";
import { mayApprove, type ApproverRule } from "./rule.js";

export type ApprovalKind = "step_up" | "breakglass";
/** `used` applies to step-up approvals only: a granted one is consumed by the one call it is bound to. */
export type ApprovalStatus = "pending" | "granted" | "rejected" | "used" | "expired" | "cancelled";
export type VoteDecision = "approve" | "reject";

export interface ApprovalVote {
  /** The voter's SPIFFE ID. */
  approver: string;
  decision: VoteDecision;
  created_at: number;
}

/** A request for people to approve a held tool call or a break-glass window. */
export interface Approval {
  id: string;
  kind: ApprovalKind;
  /** The SPIFFE ID of who asked: the agent of a held call, or the person who requested break-glass. */
  requester: string;
  task_id: string | null;
  /** Step-up only: the SHA-256 digest of the exact call, lowercase hex. */
  digest: string | null;
  rule: ApproverRule;
  /** The facts shown to approvers; for step-up also the task's initiator, who may not approve either. */
  subject: Record<string, unknown>;
  status: ApprovalStatus;
  created_at: number;
  /** A pending request closes at this time; a granted step-up approval can no longer be used after it. */
  expires_at: number;
  decided_at: number | null;
  used_at: number | null;
  votes: ApprovalVote[];
}

export interface NewApproval {
  kind: ApprovalKind;
  requester: string;
  task_id: string | null;
  digest: string | null;
  rule: ApproverRule;
  subject: Record<string, unknown>;
}

/** Inserts a pending approval and its `approval.requested` event within the caller's transaction. */
export async function openApprovalWithin(
  context: BrokerContext,
  trx: Transaction<Database>,
  input: NewApproval,
): Promise<Approval> {
  const now = context.clock.nowMs();
  const approval: Approval = {
    id: randomUUID(),
    ...input,
    status: "pending",
    created_at: now,
    expires_at: now + context.config.approval_ttl_seconds * 1000,
    decided_at: null,
    used_at: null,
    votes: [],
  };
  await trx.insertInto("approvals").values(toRow(approval)).execute();
  await context.audit.appendWithin(trx, {
    kind: "approval.requested",
    actor: approval.requester,
    task_id: approval.task_id,
    data: {
      approval_id: approval.id,
      approval_kind: approval.kind,
      digest: approval.digest,
      rule: approval.rule,
      subject: approval.subject,
      expires_at: approval.expires_at,
    },
  });
  return approval;
}

export async function getApproval(context: BrokerContext, id: string): Promise<Approval | undefined> {
  const row = await context.store.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", id)
    .executeTakeFirst();
  if (row === undefined) return undefined;
  const votes = await context.store.db
    .selectFrom("approval_votes")
    .select(["approver", "decision", "created_at"])
    .where("approval_id", "=", id)
    .orderBy("created_at")
    .execute();
  return fromRow(row, votes as ApprovalVote[]);
}

export async function requireApproval(context: BrokerContext, id: string): Promise<Approval> {
  const approval = await getApproval(context, id);
  if (approval === undefined) throw new WritError("not_found", `approval "${id}" not found`);
  return approval;
}

/** Lists approvals, newest first, optionally of one status; votes are left out (`votes` is empty). */
export async function listApprovals(
  context: BrokerContext,
  filter: { status?: string } = {},
): Promise<Approval[]> {
  let query = context.store.db.selectFrom("approvals").selectAll();
  if (filter.status !== undefined) query = query.where("status", "=", filter.status);
  const rows = await query.orderBy("created_at", "desc").limit(1000).execute();
  return rows.map((row) => fromRow(row, []));
}

/**
 * Records one person's vote. The voter must be an active person the rule names (by role or SPIFFE
 * ID), may not be the requester (nor, for a step-up, the person who started the task), and votes once.
 * One rejection rejects the request; it is granted once `rule.count` distinct people approved.
 * The vote and the resulting grant or rejection commit in one transaction with their audit events.
 */
export async function voteOnApproval(
  context: BrokerContext,
  voter: string,
  id: string,
  decision: VoteDecision,
): Promise<Approval> {
  const person = await getHumanBySpiffeId(context, voter);
  await context.queue.write(async (trx) => {
    let query = trx.selectFrom("approvals").selectAll().where("id", "=", id);
    if (context.store.dialect === "postgres") query = query.forUpdate();
    const row = await query.executeTakeFirst();
    if (row === undefined) throw new WritError("not_found", `approval "${id}" not found`);
    const approval = fromRow(row, []);
    const now = context.clock.nowMs();

    if (approval.status !== "pending" || approval.expires_at <= now) {
      const status = approval.status === "pending" ? "expired" : approval.status;
      throw new WritError("conflict", `approval "${id}" is ${status}; it takes no more votes`);
    }
    // Identities are compared by SPIFFE ID, which carries a random UUID for people: never by name.
    if (voter === approval.requester || voter === approval.subject.initiator) {
      throw new WritError(
        "access_denied",
        `you requested approval "${id}" (or started its task); another person must approve it`,
      );
    }
    if (person === undefined || !mayApprove(approval.rule, person)) {
      throw new WritError("access_denied", `you are not among the approvers of approval "${id}"`);
    }
    const earlier = await trx
      .selectFrom("approval_votes")
      .select(["approver", "decision"])
      .where("approval_id", "=", id)
      .execute();
    if (earlier.some((vote) => vote.approver === voter)) {
      throw new WritError("conflict", `you have already voted on approval "${id}"`);
    }

    await trx
      .insertInto("approval_votes")
      .values({ approval_id: id, approver: voter, decision, created_at: now })
      .execute();
    await context.audit.appendWithin(trx, {
      kind: "approval.voted",
      actor: voter,
      task_id: approval.task_id,
      data: { approval_id: id, approval_kind: approval.kind, decision },
    });

    const approvals = earlier.filter((vote) => vote.decision === "approve").length + 1;
    let status: "rejected" | "granted" | undefined;
    if (decision === "reject") status = "rejected";
    else if (approvals >= approval.rule.count) status = "granted";
    if (status === undefined) return;
    // A granted step-up approval stays usable for one approval lifetime from the grant.
    const expiresAt =
      status === "granted" && approval.kind === "step_up"
        ? now + context.config.approval_ttl_seconds * 1000
        : approval.expires_at;
    await trx
      .updateTable("approvals")
      .set({ status, decided_at: now, expires_at: expiresAt })
      .where("id", "=", id)
      .execute();
    await context.audit.appendWithin(trx, {
      kind: `approval.${status}`,
      actor: voter,
      task_id: approval.task_id,
      data: {
        approval_id: id,
        approval_kind: approval.kind,
        approvers: status === "granted" ? [...earlier.map((vote) => vote.approver), voter] : [voter],
      },
    });
  });
  return requireApproval(context, id);
}

/**
 * Marks pending requests and unused step-up grants past `expires_at` as expired, and returns them;
 * the sweeper calls it. The events are appended after the change, retried until written.
 */
export async function expireApprovals(context: BrokerContext): Promise<Approval[]> {
  const now = context.clock.nowMs();
  const rows = await context.queue.write((trx) =>
    trx
      .updateTable("approvals")
      .set({ status: "expired", decided_at: now })
      .where("status", "in", ["pending", "granted"])
      .where("expires_at", "<=", now)
      .returningAll()
      .execute(),
  );
  const expired = rows.map((row) => fromRow(row, []));
  for (const approval of expired) {
    context.audit.appendEventually({
      kind: "approval.expired",
      actor: "writ",
      task_id: approval.task_id,
      data: { approval_id: approval.id, approval_kind: approval.kind },
    });
  }
  return expired;
}

function toRow(approval: Approval): ApprovalsTable {
  const { votes: _votes, ...rest } = approval;
  return { ...rest, rule: JSON.stringify(approval.rule), subject: JSON.stringify(approval.subject) };
}

export function fromRow(row: ApprovalsTable, votes: ApprovalVote[]): Approval {
  return {
    ...row,
    kind: row.kind as ApprovalKind,
    status: row.status as ApprovalStatus,
    rule: JSON.parse(row.rule) as ApproverRule,
    subject: JSON.parse(row.subject) as Record<string, unknown>,
    created_at: Number(row.created_at),
    expires_at: Number(row.expires_at),
    decided_at: row.decided_at === null ? null : Number(row.decided_at),
    used_at: row.used_at === null ? null : Number(row.used_at),
    votes,
  };
}
