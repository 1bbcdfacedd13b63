import { WritError } from "../errors/writ-error.js";
import type { Human, Role } from "../identity/humans.js";
import { parseSpiffeId } from "../identity/spiffe.js";

/**
 * The approval rule of a tool action, as registered on the action: people holding `role`, or the people
 * named in `people` by SPIFFE ID, and how many distinct ones must approve.
 */
export interface ApprovalRule {
  role?: Role;
  /** SPIFFE IDs of people; never display names or e-mail addresses, which are not unique. */
  people?: string[];
  count: number;
}

/** The rule an approval request stores: every role and person that qualifies, and the count. */
export interface ApproverRule {
  roles: Role[];
  people: string[];
  count: number;
}

/** Maximum approvers a rule may demand; more would make the action unusable in practice. */
const maxApprovers = 10;
const roles: readonly Role[] = ["admin", "approver", "auditor"];

/** Validates an action's `approval` member; throws `invalid_request` naming the action. */
export function parseApprovalRule(value: unknown, action: string): ApprovalRule {
  if (typeof value === "string") return parseApprovalSpec(value, action);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new WritError(
      "invalid_request",
      `action "${action}": "approval" must be an object {role?, people?, count}`,
    );
  }
  const input = value as Record<string, unknown>;
  const unknown = Object.keys(input).find((key) => key !== "role" && key !== "people" && key !== "count");
  if (unknown !== undefined)
    throw new WritError("invalid_request", `action "${action}": unknown approval member "${unknown}"`);

  const rule: ApprovalRule = { count: approverCount(input.count, action) };
  if (input.role !== undefined) {
    if (!roles.includes(input.role as Role)) {
      throw new WritError(
        "invalid_request",
        `action "${action}": unknown approval role "${String(input.role)}"; use admin, approver or auditor`,
      );
    }
    rule.role = input.role as Role;
  }
  if (input.people !== undefined) {
    if (!Array.isArray(input.people) || !input.people.every((entry) => typeof entry === "string")) {
      throw new WritError("invalid_request", `action "${action}": approval "people" must be SPIFFE IDs`);
    }
    for (const person of input.people as string[]) {
      if (parseSpiffeId(person)?.path[0] !== "human" || parseSpiffeId(person)?.path.length !== 2) {
        throw new WritError(
          "invalid_request",
          `action "${action}": approver "${person}" is not a person's SPIFFE ID (spiffe://DOMAIN/human/UUID)`,
        );
      }
    }
    rule.people = [...new Set(input.people as string[])];
  }
  if (rule.role === undefined && (rule.people === undefined || rule.people.length === 0)) {
    throw new WritError("invalid_request", `action "${action}": an approval rule needs a role or people`);
  }
  if (rule.role === undefined && rule.people !== undefined && rule.people.length < rule.count) {
    throw new WritError(
      "invalid_request",
      `action "${action}": the rule demands ${rule.count} approvers but names only ${rule.people.length} people`,
    );
  }
  return rule;
}

/**
 * Parses the command-line form of a rule: `ROLE:COUNT`, such as `approver:1`, or
 * `people:ID,ID:COUNT` with SPIFFE IDs.
 */
export function parseApprovalSpec(spec: string, action: string): ApprovalRule {
  const countAt = spec.lastIndexOf(":");
  const who = countAt === -1 ? spec : spec.slice(0, countAt);
  const count = countAt === -1 ? 1 : Number(spec.slice(countAt + 1));
  if (who.startsWith("people:")) {
    return parseApprovalRule({ people: who.slice("people:".length).split(","), count }, action);
  }
  return parseApprovalRule({ role: who, count }, action);
}

function approverCount(value: unknown, action: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > maxApprovers) {
    throw new WritError(
      "invalid_request",
      `action "${action}": invalid approval count ${String(value)}; use 1 to ${maxApprovers}`,
    );
  }
  return value;
}

/** Converts an action's rule into the form an approval request stores. */
export function approverRule(rule: ApprovalRule): ApproverRule {
  return { roles: rule.role === undefined ? [] : [rule.role], people: rule.people ?? [], count: rule.count };
}

/**
 * Returns whether `person` may vote under `rule`. People are compared by SPIFFE ID only: a display
 * name that looks the same in another case or Unicode form belongs to a different person.
 */
export function mayApprove(rule: ApproverRule, person: Human): boolean {
  if (person.status !== "active") return false;
  if (rule.people.includes(person.spiffe_id)) return true;
  return person.roles.some((role) => rule.roles.includes(role));
}
