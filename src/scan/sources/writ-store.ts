import { join } from "node:path";
import { readAuditEvents } from "../../audit/read.js";
import { storeLocation } from "../../broker/broker.js";
import { loadConfig } from "../../config/config.js";
import { Store } from "../../store/store.js";
import type { RawRecord } from "./records.js";

/** Events read from the store per query, so memory stays bounded on a long audit log. */
const pageSize = 1000;

/**
 * Yields the audit events of a writ data directory as raw records, page by page. The location's line
 * is the event's sequence number.
 */
export async function* writAuditRecords(dataDir: string): AsyncGenerator<RawRecord> {
  const store = await Store.open(storeLocation(dataDir, await loadConfig(dataDir)));
  const file = join(dataDir, "audit");
  try {
    let after = 0;
    for (;;) {
      const events = await readAuditEvents(store, { after, limit: pageSize });
      for (const event of events) yield { text: JSON.stringify(event), location: { file, line: event.seq } };
      if (events.length < pageSize) return;
      after = (events[events.length - 1] as { seq: number }).seq;
    }
  } finally {
    await store.close();
  }
}
