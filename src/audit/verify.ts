import { chainVersion, genesisHash, hashRecord, type AuditRecord } from "./chain.js";

/**
 * The reason verification failed. `truncated`: a signed checkpoint or the chain's head row names an
 * event past the end of the log. `bad_signature`: a checkpoint's signature or signed fields do not
 * verify. `unanchored`: a chain that starts after the first event has no signed checkpoint to vouch
 * for it.
 */
export type ChainFault =
  "edited" | "missing" | "reordered" | "truncated" | "bad_signature" | "unknown_version" | "unanchored";

/** The verdict on a chain: `ok` with its head, or the first bad sequence number and why. */
export type ChainVerdict =
  | { ok: true; events: number; head: { seq: number; hash: string } | null }
  | { ok: false; events: number; seq: number; fault: ChainFault; reason: string };

/** Where a chain that does not begin at the first event continues from: the event before its first. */
export interface ChainStart {
  seq: number;
  hash: string;
}

/**
 * Checks a chain given in storage order (ascending `seq` for a database, line order for an export).
 * Each event must carry the next sequence number, name the previous event's hash, and hash to its
 * stored hash. An event that names the hash of some other event of the chain was moved; one that
 * names no event of the chain, or does not hash to its stored hash, was edited; a gap in the numbers
 * means events are missing. With `start`, the chain continues from that event instead of the genesis.
 */
export function verifyChain(records: readonly AuditRecord[], start?: ChainStart): ChainVerdict {
  const seqByHash = new Map<string, number>();
  for (const record of records) seqByHash.set(record.hash, record.seq);

  let expectedSeq = (start?.seq ?? 0) + 1;
  let previousHash = start?.hash ?? genesisHash;
  for (const record of records) {
    const events = records.length;
    if (record.chain_version !== chainVersion) {
      return fail(
        events,
        record.seq,
        "unknown_version",
        `chain_version ${record.chain_version} is not supported`,
      );
    }
    if (record.seq > expectedSeq) {
      return fail(events, expectedSeq, "missing", `events ${expectedSeq} to ${record.seq - 1} are missing`);
    }
    if (record.seq < expectedSeq) {
      return fail(
        events,
        record.seq,
        "reordered",
        `event ${record.seq} appears after event ${expectedSeq - 1}`,
      );
    }
    // An event that names another event of the chain as its predecessor was moved there.
    const predecessor = seqByHash.get(record.prev_hash);
    if (
      record.prev_hash !== previousHash &&
      (predecessor !== undefined || record.prev_hash === genesisHash)
    ) {
      const after = predecessor ?? 0;
      return fail(events, record.seq, "reordered", `event ${record.seq} belongs after event ${after}`);
    }
    // An event that does not hash to its own hash was edited in place, whatever it names before it.
    const { hash, ...unhashed } = record;
    if (hashRecord(unhashed) !== hash) {
      return fail(events, record.seq, "edited", `event ${record.seq} does not match its hash`);
    }
    if (record.prev_hash !== previousHash) {
      // The event before this one no longer hashes to what this one recorded: it was rewritten and
      // rehashed.
      const edited = record.seq - 1;
      return fail(
        events,
        edited,
        "edited",
        `event ${edited} was rewritten after event ${record.seq} chained to it`,
      );
    }
    previousHash = hash;
    expectedSeq++;
  }

  const last = records.at(-1);
  return {
    ok: true,
    events: records.length,
    head: last === undefined ? null : { seq: last.seq, hash: last.hash },
  };
}

export function fail(events: number, seq: number, fault: ChainFault, reason: string): ChainVerdict {
  return { ok: false, events, seq, fault, reason };
}
