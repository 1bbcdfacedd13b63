/**
 * SPIFFE IDs as writ uses them: `spiffe://<trust domain>/<kind>/<name>`. The rules follow the SPIFFE
 * ID specification: a lowercase trust domain of letters, digits, `.`, `-` and `_`; path segments of
 * letters, digits, `.`, `-` and `_`, none empty, `.` or `..`; no percent-encoding, query or fragment.
 */

export type IdentityKind = "agent" | "human" | "gateway";

const trustDomainPattern = /^[a-z0-9._-]+$/;
const segmentPattern = /^[A-Za-z0-9._-]+$/;

/** The longest trust domain accepted, in bytes, as a DNS name is bounded. */
const maxTrustDomainLength = 255;
/** The longest SPIFFE ID accepted, in bytes, as the SPIFFE specification bounds URI SANs. */
const maxSpiffeIdLength = 2048;

/** Returns a reason when `domain` is not a valid trust domain name, else undefined. */
export function trustDomainProblem(domain: string): string | undefined {
  if (domain.length === 0) return "the trust domain is empty";
  if (domain.length > maxTrustDomainLength)
    return `the trust domain is longer than ${maxTrustDomainLength} bytes`;
  if (!trustDomainPattern.test(domain)) {
    return "a trust domain has only lowercase letters, digits, '.', '-' and '_'";
  }
  return undefined;
}

/** Returns a reason when `segment` is not a valid SPIFFE path segment, else undefined. */
export function pathSegmentProblem(segment: string): string | undefined {
  if (segment.length === 0) return "the name is empty";
  if (segment === "." || segment === "..") return "'.' and '..' are not valid names";
  if (!segmentPattern.test(segment)) return "a name has only letters, digits, '.', '-' and '_'";
  return undefined;
}

/** Builds the SPIFFE ID of an identity; throws TypeError on an invalid trust domain or name. */
export function spiffeId(trustDomain: string, kind: IdentityKind, name: string): string {
  const domainProblem = trustDomainProblem(trustDomain);
  if (domainProblem !== undefined)
    throw new TypeError(`invalid trust domain "${trustDomain}": ${domainProblem}`);
  const nameProblem = pathSegmentProblem(name);
  if (nameProblem !== undefined) throw new TypeError(`invalid ${kind} name "${name}": ${nameProblem}`);
  return `spiffe://${trustDomain}/${kind}/${name}`;
}

export interface ParsedSpiffeId {
  trustDomain: string;
  path: string[];
}

/** Parses a SPIFFE ID, returning undefined for anything that is not a valid one. */
export function parseSpiffeId(value: string): ParsedSpiffeId | undefined {
  if (value.length > maxSpiffeIdLength || !value.startsWith("spiffe://")) return undefined;
  const rest = value.slice("spiffe://".length);
  const slash = rest.indexOf("/");
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  if (trustDomainProblem(trustDomain) !== undefined) return undefined;
  if (slash === -1) return { trustDomain, path: [] };
  const path = rest.slice(slash + 1).split("/");
  if (path.some((segment) => pathSegmentProblem(segment) !== undefined)) return undefined;
  return { trustDomain, path };
}

/** Returns the name of an identity of `kind` in `trustDomain`, or undefined when `value` is not one. */
export function identityName(value: string, trustDomain: string, kind: IdentityKind): string | undefined {
  const parsed = parseSpiffeId(value);
  if (parsed === undefined || parsed.trustDomain !== trustDomain) return undefined;
  if (parsed.path.length !== 2 || parsed.path[0] !== kind) return undefined;
  return parsed.path[1];
}
