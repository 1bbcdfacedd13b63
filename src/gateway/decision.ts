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
