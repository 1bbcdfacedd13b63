import { createHash } from "node:crypto";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { getTask } from "../tasks/tasks.js";
import { getTool } from "../tools/registry.js";
import { fromRow, openApprovalWithin } from "./approvals.js";
import { approverRule } from "./rule.js";

/** One held tool call, as a gateway describes it to the broker. */
export interface StepUpRequest {
  task_id: string;
  /** The SPIFFE ID of the agent making the call. */
  requester: string;
  tool: string;
  action: string;
  method: string;
  /** The normalised path, plus `?` and the query exactly as received when there is one. */
  target: string;
  /** SHA-256 of the request body as forwarded, lowercase hex; of the empty string when there is none. */
  body_sha256: string;
}

/** `granted` means the call may go on: the approval it used is now spent. */
export interface StepUpResult {
  status: "granted" | "pending" | "rejected";
  approval_id: string;
}

/** Returns the digest an approval is bound to: SHA-256 over the task, action, method, target and body. */
export function callDigest(request: StepUpRequest): string {
  const fields = [
    request.task_id,
    `${request.tool}:${request.action}`,
    request.method.toUpperCase(),
    request.target,
    request.body_sha256,
  ];
  return createHash("sha256").update(JSON.stringify(fields)).digest("hex");
}

/**
 * Settles a call to an action that needs approval. A granted, unexpired, unused approval of the same
 * digest is spent and the call goes on; an open or rejected one is reported as is; otherwise a new
 * request is opened. Runs in one transaction, so two gateways cannot spend one approval twice.
 */
export async function requestStepUp(context: BrokerContext, request: StepUpRequest): Promise<StepUpResult> {
  const tool = await getTool(context, request.tool);
  const rule = tool?.actions.find((action) => action.name === request.action)?.approval;
  if (rule === undefined) {
    throw new WritError("invalid_request", `action "${request.tool}:${request.action}" needs no approval`);
  }
  const task = await getTask(context, request.task_id);
  if (task === undefined) throw new WritError("not_found", `task "${request.task_id}" not found`);
  const digest = callDigest(request);

  return context.queue.write(async (trx) => {
    const now = context.clock.nowMs();
    const row = await trx
      .selectFrom("approvals")
      .selectAll()
      .where("kind", "=", "step_up")
      .where("digest", "=", digest)
      .where("status", "in", ["granted", "pending", "rejected"])
      .where("expires_at", ">", now)
      .orderBy("created_at", "desc")
      .executeTakeFirst();
    const existing = row === undefined ? undefined : fromRow(row, []);

    if (existing?.status === "granted") {
      await trx
        .updateTable("approvals")
        .set({ status: "used", used_at: now })
        .where("id", "=", existing.id)
        .execute();
      await context.audit.appendWithin(trx, {
        kind: "approval.used",
        actor: request.requester,
        task_id: request.task_id,
        data: { approval_id: existing.id, digest, tool: request.tool, action: request.action },
      });
      return { status: "granted", approval_id: existing.id };
    }
    if (existing?.status === "pending" || existing?.status === "rejected") {
      return { status: existing.status, approval_id: existing.id };
    }
    const opened = await openApprovalWithin(context, trx, {
      kind: "step_up",
      requester: request.requester,
      task_id: request.task_id,
      digest,
      rule: approverRule(rule),
      subject: {
        tool: request.tool,
        action: request.action,
        method: request.method,
        target: request.target,
        body_sha256: request.body_sha256,
        agent: task.agent_name,
        initiator: task.initiator,
        intent: task.intent,
      },
    });
    return { status: "pending", approval_id: opened.id };
  });
}
