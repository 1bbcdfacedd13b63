import { deliverDueAlerts, sendAlert } from "../alerts/alerts.js";
import type { BrokerContext } from "../broker/context.js";
import { activateBreakglass, closePendingBreakglass, expireDueBreakglass } from "../breakglass/breakglass.js";
import { expireApprovals, voteOnApproval, type Approval, type VoteDecision } from "./approvals.js";

/**
 * Records a person's vote and carries out its effect: a granted break-glass request opens its
 * window, a rejected one closes it. Every vote on a break-glass request is also sent as an alert.
 */
export async function decideApproval(
  context: BrokerContext,
  voter: string,
  id: string,
  decision: VoteDecision,
): Promise<Approval> {
  const approval = await voteOnApproval(context, voter, id, decision);
  if (approval.kind !== "breakglass") return approval;
  const breakglassId = approval.subject.breakglass_id;
  sendAlert(context, decision === "approve" ? "breakglass.approved" : "breakglass.rejected", {
    breakglass_id: breakglassId,
    approval_id: approval.id,
    approver: voter,
    approval_status: approval.status,
  });
  if (approval.status === "granted") await activateBreakglass(context, voter, approval);
  if (approval.status === "rejected") await closePendingBreakglass(context, voter, approval, "rejected");
  return approval;
}

/**
 * The sweeper's upkeep for approvals: expires open requests and unused grants, closes break-glass
 * windows whose request expired or whose time is up, and starts a pass over due alert deliveries
 * without waiting for it, so a slow receiver never delays task expiry.
 */
export async function sweepApprovals(context: BrokerContext): Promise<void> {
  for (const approval of await expireApprovals(context)) {
    if (approval.kind === "breakglass") await closePendingBreakglass(context, "writ", approval, "expired");
  }
  await expireDueBreakglass(context);
  void deliverDueAlerts(context);
}
