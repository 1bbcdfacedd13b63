import { parseSpiffeId } from "../identity/spiffe.js";
import type { RequestContext } from "../policy/engine.js";
import type { AccessTokenClaims } from "../tokens/access-token.js";

/** The actor chain of a token: `sub`, then each actor from the current one inwards. */
export interface ActorChain {
  sub: string;
  /** `act.sub` values, outermost (current actor) first. */
  actors: string[];
}

/** Reads the `act` claims of a token (RFC 8693 section 4.1) into a flat chain. */
export function actorChain(claims: AccessTokenClaims): ActorChain {
  const actors: string[] = [];
  let act = (claims as { act?: unknown }).act;
  while (typeof act === "object" && act !== null && typeof (act as { sub?: unknown }).sub === "string") {
    actors.push((act as { sub: string }).sub);
    act = (act as { act?: unknown }).act;
  }
  return { sub: claims.sub, actors };
}

/** The identity that acts: the outermost `act.sub`, else `sub`. Nested actors are history. */
export function currentActor(chain: ActorChain): string {
  return chain.actors[0] ?? chain.sub;
}

/** Returns the Cedar principal of a token's current actor: `Human` for a person's SPIFFE ID, else `Agent`. */
export function principalOf(claims: AccessTokenClaims): { type: "Agent" | "Human"; id: string } {
  const actor = currentActor(actorChain(claims));
  return { type: parseSpiffeId(actor)?.path[0] === "human" ? "Human" : "Agent", id: actor };
}

/** The facts of a task that its requests' Cedar context carries. */
export interface ContextTask {
  intent: string;
  /** Epoch seconds. */
  deadline_s: number;
  depth: number;
}

/** Builds the members of a request's Cedar context that come from its task, grant and token. */
export function taskContext(
  task: ContextTask,
  grant: { environment: string },
  claims: AccessTokenClaims,
): Pick<
  RequestContext,
  "intent" | "environment" | "deadline" | "delegation_depth" | "task_join" | "breakglass"
> {
  return {
    intent: task.intent,
    environment: grant.environment,
    deadline: task.deadline_s,
    delegation_depth: task.depth,
    task_join: claims.task_join === true,
    breakglass: typeof claims.breakglass_id === "string",
  };
}
