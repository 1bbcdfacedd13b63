import type { CredentialNaming, Location, PrincipalKind, Seen, UsageEvent } from "./model.js";
import { isDesktopAgent, toolchainCategory } from "./toolchain.js";

/**
 * Distinct values kept per dimension of one credential. Memory then grows with the number of
 * credentials and workloads, never with the number of events; values past the cap are counted in
 * `overflow` only.
 */
export const maxDistinctValues = 1000;

/** Resolution of the per-workload use counts behind the timeline chart. */
export const timelineResolutionMs = 60_000;

/** The earlier of two times, ignoring NaN (an event without a time). */
export function earliest(a: number, b: number): number {
  return Number.isNaN(a) ? b : Number.isNaN(b) ? a : Math.min(a, b);
}

/** The later of two times, ignoring NaN. */
export function latest(a: number, b: number): number {
  return Number.isNaN(a) ? b : Number.isNaN(b) ? a : Math.max(a, b);
}

/** Source addresses kept in the address-to-credentials index, which links stolen credentials. */
export const maxIndexedSources = 100_000;

/** A tally of distinct values with counts and first and last times. */
export class Tally {
  readonly values = new Map<string, Seen>();
  overflow = 0;

  add(value: string | undefined, time: number): void {
    if (value === undefined) return;
    const seen = this.values.get(value);
    if (seen !== undefined) {
      seen.count += 1;
      seen.first = earliest(seen.first, time);
      seen.last = latest(seen.last, time);
    } else if (this.values.size < maxDistinctValues) {
      this.values.set(value, { value, count: 1, first: time, last: time });
    } else {
      this.overflow += 1;
    }
  }

  get size(): number {
    return this.values.size;
  }

  list(): Seen[] {
    return [...this.values.values()].sort((a, b) => b.count - a.count);
  }
}

/** What one workload did with one credential. */
export interface WorkloadTally {
  id: string;
  toolchain: string;
  source?: string;
  repository?: string;
  environment?: string;
  count: number;
  first: number;
  last: number;
  actions: Tally;
  location: Location;
  /** Events per minute (key: ms since the epoch divided by `timelineResolutionMs`), for the chart. */
  perMinute: Map<number, number>;
}

/** Everything the scan keeps about one credential. */
export interface CredentialUsage {
  credential: string;
  naming: CredentialNaming;
  credentialKind: string;
  longLived: boolean;
  principal: string;
  principalKind: PrincipalKind;
  count: number;
  first: number;
  last: number;
  location: Location;
  sources: Tally;
  toolchains: Tally;
  userAgents: Tally;
  namespaces: Tally;
  repositories: Tally;
  environments: Tally;
  hosts: Tally;
  /** Per pod or instance the credential was issued to: the sources and toolchains it was used from. */
  bound: Map<string, { sources: Tally; toolchains: Tally; desktopAgents: Tally; location: Location }>;
  workloads: Map<string, WorkloadTally>;
}

/** Workload identity: the toolchain and where it ran (source address, repository, environment). */
export function workloadId(event: UsageEvent): string {
  const parts = [event.toolchain ?? "unknown"];
  if (event.source !== undefined) parts.push(`from ${event.source}`);
  if (event.repository !== undefined) parts.push(`in ${event.repository}`);
  if (event.environment !== undefined) parts.push(`env ${event.environment}`);
  return parts.join(" ");
}

/** Folds usage events into per-credential tallies, and records the time window of the whole scan. */
export class UsageAggregator {
  readonly credentials = new Map<string, CredentialUsage>();
  /** Principals seen using an interactive toolchain: a person stands behind them. */
  readonly interactivePrincipals = new Set<string>();
  /** Per source address, the credentials not bound to an instance or pod that were used from it. */
  readonly sourceCredentials = new Map<string, Set<string>>();
  windowStart = Number.POSITIVE_INFINITY;
  windowEnd = Number.NEGATIVE_INFINITY;
  events = 0;

  add(event: UsageEvent): void {
    this.events += 1;
    const time = event.time;
    this.windowStart = earliest(this.windowStart, time);
    this.windowEnd = latest(this.windowEnd, time);
    const usage = this.usageOf(event);
    usage.count += 1;
    usage.first = earliest(usage.first, time);
    usage.last = latest(usage.last, time);
    if (event.internal) return;

    const toolchain = event.toolchain ?? "unknown";
    if (toolchainCategory(toolchain) === "interactive") this.interactivePrincipals.add(event.principal);
    usage.sources.add(event.source, time);
    usage.toolchains.add(toolchain, time);
    usage.userAgents.add(event.userAgent, time);
    usage.namespaces.add(event.namespace, time);
    usage.repositories.add(event.repository, time);
    usage.environments.add(event.environment, time);
    usage.hosts.add(event.host, time);
    if (event.boundTo !== undefined) this.addBound(usage, event, toolchain);
    else if (event.source !== undefined) this.indexSource(event.source, event.credential);
    this.addWorkload(usage, event, toolchain);
  }

  private indexSource(source: string, credential: string): void {
    let credentials = this.sourceCredentials.get(source);
    if (credentials === undefined) {
      if (this.sourceCredentials.size >= maxIndexedSources) return;
      credentials = new Set();
      this.sourceCredentials.set(source, credentials);
    }
    if (credentials.size < maxDistinctValues) credentials.add(credential);
  }

  private usageOf(event: UsageEvent): CredentialUsage {
    const existing = this.credentials.get(event.credential);
    if (existing !== undefined) return existing;
    const usage: CredentialUsage = {
      credential: event.credential,
      naming: event.naming,
      credentialKind: event.credentialKind,
      longLived: event.longLived,
      principal: event.principal,
      principalKind: event.principalKind,
      count: 0,
      first: event.time,
      last: event.time,
      location: event.location,
      sources: new Tally(),
      toolchains: new Tally(),
      userAgents: new Tally(),
      namespaces: new Tally(),
      repositories: new Tally(),
      environments: new Tally(),
      hosts: new Tally(),
      bound: new Map(),
      workloads: new Map(),
    };
    this.credentials.set(event.credential, usage);
    return usage;
  }

  private addBound(usage: CredentialUsage, event: UsageEvent, toolchain: string): void {
    const key = event.boundTo as string;
    let bound = usage.bound.get(key);
    if (bound === undefined) {
      if (usage.bound.size >= maxDistinctValues) return;
      bound = {
        sources: new Tally(),
        toolchains: new Tally(),
        desktopAgents: new Tally(),
        location: event.location,
      };
      usage.bound.set(key, bound);
    }
    bound.sources.add(event.source, event.time);
    bound.toolchains.add(toolchain, event.time);
    if (isDesktopAgent(event.userAgent)) bound.desktopAgents.add(event.userAgent, event.time);
  }

  private addWorkload(usage: CredentialUsage, event: UsageEvent, toolchain: string): void {
    const id = workloadId(event);
    let workload = usage.workloads.get(id);
    if (workload === undefined) {
      if (usage.workloads.size >= maxDistinctValues) return;
      workload = {
        id,
        toolchain,
        count: 0,
        first: event.time,
        last: event.time,
        actions: new Tally(),
        location: event.location,
        perMinute: new Map(),
      };
      if (event.source !== undefined) workload.source = event.source;
      if (event.repository !== undefined) workload.repository = event.repository;
      if (event.environment !== undefined) workload.environment = event.environment;
      usage.workloads.set(id, workload);
    }
    workload.count += 1;
    workload.first = earliest(workload.first, event.time);
    workload.last = latest(workload.last, event.time);
    const action = [event.service, event.action].filter((part) => part !== undefined).join(" ");
    workload.actions.add(action === "" ? undefined : action, event.time);
    if (Number.isNaN(event.time)) return;
    const minute = Math.floor(event.time / timelineResolutionMs);
    const perMinute = workload.perMinute.get(minute);
    if (perMinute !== undefined) workload.perMinute.set(minute, perMinute + 1);
    else if (workload.perMinute.size < maxDistinctValues) workload.perMinute.set(minute, 1);
  }
}
