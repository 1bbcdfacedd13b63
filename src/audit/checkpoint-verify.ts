import type { JSONWebKeySet } from "jose";
import type { AuditRecord } from "./chain.js";
import { CheckpointError, verifyCheckpoint, type Checkpoint } from "./checkpoint.js";
import { fail, verifyChain, type ChainStart, type ChainVerdict } from "./verify.js";

/** Checkpoints from one place: the store, a checkpoint file, an export header. */
export interface CheckpointSource {
  /** Names the place in verdicts, such as `store` or `file /mnt/audit/checkpoints.jsonl`. */
  source: string;
  checkpoints: Checkpoint[];
}

/** The verdict on a chain and its checkpoints; a good one also counts the checkpoints it checked. */
export type EvidenceVerdict = ChainVerdict & { checkpoints: number };

/**
 * Verifies the chain, then every checkpoint from every source against it. A checkpoint must carry a
 * valid signature by a key of `jwks`. It must name an event the log still contains, else the log
 * was truncated after it, and that event must have the hash it signed. The first fault by event
 * sequence number is reported, and chain faults come before checkpoint faults.
 *
 * Throws Error when there are checkpoints but no JWKS to check them with, rather than pass them.
 */
export async function verifyEvidence(
  records: readonly AuditRecord[],
  sources: readonly CheckpointSource[],
  jwks: JSONWebKeySet | undefined,
  start?: ChainStart,
  storedHead?: { seq: number; hash: string },
): Promise<EvidenceVerdict> {
  const total = sources.reduce((sum, source) => sum + source.checkpoints.length, 0);
  const chain = verifyChain(records, start);
  if (!chain.ok) return { ...chain, checkpoints: total };
  // The head row moves with every commit, so a log cut short without it still names the lost events.
  const chainHeadSeq = chain.head?.seq ?? start?.seq ?? 0;
  if (storedHead !== undefined && storedHead.seq > chainHeadSeq) {
    return {
      ...fail(
        records.length,
        chainHeadSeq + 1,
        "truncated",
        `the chain's head row names event ${storedHead.seq}, but the log ends at event ${chainHeadSeq}`,
      ),
      checkpoints: total,
    };
  }
  if (total > 0 && jwks === undefined) {
    throw new Error(
      "the log has signed checkpoints but no audit JWKS was given to verify them: use --audit-jwks",
    );
  }

  const hashBySeq = new Map<number, string>();
  for (const record of records) hashBySeq.set(record.seq, record.hash);
  const headSeq = chain.head?.seq ?? start?.seq ?? 0;
  const firstSeq = (start?.seq ?? 0) + 1;

  const faults: ChainVerdict[] = [];
  for (const { source, checkpoints } of sources) {
    for (const checkpoint of checkpoints) {
      const fault = await checkOne(
        checkpoint,
        source,
        jwks as JSONWebKeySet,
        hashBySeq,
        headSeq,
        firstSeq,
        records.length,
      );
      if (fault !== undefined) faults.push(fault);
    }
  }
  const first = faults.sort((a, b) => (a.ok || b.ok ? 0 : a.seq - b.seq))[0];
  if (first !== undefined) return { ...first, checkpoints: total };

  // A chain that continues from a later event needs an anchor, or it could be invented whole. The
  // anchor is a signed checkpoint of the event it continues from, or of one of its own events.
  if (start !== undefined && start.seq > 0) {
    const anchors = sources.flatMap((source) =>
      source.checkpoints.filter((checkpoint) => checkpoint.seq === start.seq),
    );
    const coveredInside = sources.some((source) =>
      source.checkpoints.some((checkpoint) => checkpoint.seq > start.seq && checkpoint.seq <= headSeq),
    );
    if (anchors.length === 0 && !coveredInside) {
      return {
        ...fail(
          records.length,
          start.seq,
          "unanchored",
          `the chain continues from event ${start.seq}, and no signed checkpoint names that event`,
        ),
        checkpoints: total,
      };
    }
    if (anchors.some((checkpoint) => checkpoint.hash !== start.hash)) {
      return {
        ...fail(
          records.length,
          start.seq,
          "edited",
          `the chain continues from event ${start.seq} with a hash its signed checkpoint does not name`,
        ),
        checkpoints: total,
      };
    }
  }
  return { ...chain, checkpoints: total };
}

async function checkOne(
  checkpoint: Checkpoint,
  source: string,
  jwks: JSONWebKeySet,
  hashBySeq: ReadonlyMap<number, string>,
  headSeq: number,
  firstSeq: number,
  events: number,
): Promise<ChainVerdict | undefined> {
  const signedAt = new Date(checkpoint.time).toISOString();
  try {
    await verifyCheckpoint(checkpoint, jwks);
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    return fail(
      events,
      checkpoint.seq,
      "bad_signature",
      `checkpoint of event ${checkpoint.seq} in ${source}: ${error.message}`,
    );
  }
  if (checkpoint.seq > headSeq) {
    return fail(
      events,
      headSeq + 1,
      "truncated",
      `checkpoint in ${source} signed at ${signedAt} names event ${checkpoint.seq}, but the log ends at event ${headSeq}`,
    );
  }
  // A partial chain, such as an export that starts later, cannot vouch for events before its start.
  if (checkpoint.seq < firstSeq) return undefined;
  if (hashBySeq.get(checkpoint.seq) !== checkpoint.hash) {
    // The chain links are intact, so the events were rewritten and rehashed up to here. Only the
    // checkpoint shows it, and the rewrite began between the chain's first event and this one.
    return fail(
      events,
      checkpoint.seq,
      "edited",
      `event ${checkpoint.seq} differs from the checkpoint in ${source} signed at ${signedAt}: ` +
        `an event from ${firstSeq} to ${checkpoint.seq} was rewritten and the chain rehashed after it`,
    );
  }
  return undefined;
}
