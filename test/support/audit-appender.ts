// A second broker process for store tests: opens the store given as JSON in argv[2] and appends
// argv[3] audit events in rounds of ten concurrent appends, so that its transactions interleave with
// those of another process. Prints one JSON line: how many appends failed and their messages.
//
// Usage: node --import tsx test/support/audit-appender.ts '{"kind":"sqlite","file":"..."}' COUNT ACTOR

import { AuditLog } from "../../src/audit/log.js";
import { systemClock } from "../../src/clock.js";
import { silentLogger } from "../../src/log/logger.js";
import { Store, type StoreLocation } from "../../src/store/store.js";
import { WriteQueue } from "../../src/store/write-queue.js";

/** Result line printed on standard output. */
export interface AppenderResult {
  appended: number;
  failed: number;
  errors: string[];
}

const roundSize = 10;

const [locationJson, countText, actor] = process.argv.slice(2);
if (locationJson === undefined || countText === undefined || actor === undefined) {
  throw new Error("usage: audit-appender.ts LOCATION_JSON COUNT ACTOR");
}
const location = JSON.parse(locationJson) as StoreLocation;
const count = Number(countText);

const store = await Store.open(location);
const audit = new AuditLog(store, new WriteQueue(store), systemClock, silentLogger());
const result: AppenderResult = { appended: 0, failed: 0, errors: [] };
try {
  for (let start = 0; start < count; start += roundSize) {
    const round = Array.from({ length: Math.min(roundSize, count - start) }, (_, offset) =>
      audit.append({ kind: "test.appended", actor, data: { index: start + offset } }),
    );
    for (const outcome of await Promise.allSettled(round)) {
      if (outcome.status === "fulfilled") {
        result.appended++;
        continue;
      }
      result.failed++;
      const message = outcome.reason instanceof Error ? outcome.reason.message : String(outcome.reason);
      if (!result.errors.includes(message)) result.errors.push(message);
    }
  }
} finally {
  await store.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
