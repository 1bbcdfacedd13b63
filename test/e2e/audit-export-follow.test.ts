import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { ExportHeader } from "../../src/audit/export-file.js";
import type { AdminClient } from "../../src/cli/admin-client.js";
import {
  connectAdmin,
  initBroker,
  requireBuiltCli,
  runWritJson,
  spawnWrit,
  startBrokerProcess,
  type BrokerInstallation,
  type WritProcess,
} from "../support/writ-process.js";

/** How long a follower may take to write events that are already committed, in milliseconds. */
const catchUpLimitMs = 30_000;

/** One complete line of an export file, parsed; a trailing line without its newline is left out. */
type ExportLine = { seq?: number; metadata?: { sequence?: number }; type?: string };

async function exportedLines(file: string): Promise<ExportLine[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return [];
  }
  const complete = text.slice(0, text.lastIndexOf("\n") + 1);
  return complete
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as ExportLine);
}

/** Returns the writ sequence numbers a file contains, in line order: `seq` for stored events, `metadata.sequence` for OCSF. */
async function exportedSeqs(file: string): Promise<number[]> {
  return (await exportedLines(file))
    .map((line) => line.seq ?? line.metadata?.sequence)
    .filter((seq): seq is number => seq !== undefined);
}

/** Reads the sequence number of the newest audit event, paging through `GET /v1/audit`. */
async function headSeq(admin: AdminClient): Promise<number> {
  let head = 0;
  for (;;) {
    const page = await admin.call<{ events: AuditRecord[] }>("GET", `/v1/audit?after=${head}&limit=1000`);
    const last = page.events.at(-1);
    if (last === undefined) return head;
    head = last.seq;
  }
}

/** Waits until `file` contains event `seq`, failing with the follower's output when it exits or stalls. */
async function waitForSeq(file: string, seq: number, follower: WritProcess): Promise<void> {
  const started = Date.now();
  for (;;) {
    if ((await exportedSeqs(file)).includes(seq)) return;
    assert.equal(follower.child.exitCode, null, `the follower exited early:\n${follower.output()}`);
    assert.ok(
      Date.now() - started < catchUpLimitMs,
      `event ${seq} never reached ${file}:\n${follower.output()}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Stops a follower with SIGTERM and checks that it exited cleanly. */
async function stopFollower(follower: WritProcess): Promise<void> {
  await follower.stop();
  assert.equal(follower.child.exitCode, 0, `the follower did not exit cleanly:\n${follower.output()}`);
}

/**
 * Checks that `seqs` runs from 1 without a gap or a repeat and reaches at least `head`. It may go past
 * `head`: a follower's own admin token is an audit event that it may or may not write before it stops.
 */
function assertContinuous(seqs: number[], head: number): void {
  const last = Math.max(0, ...seqs);
  assert.ok(last >= head, `the export ends at event ${last}, before the head ${head}`);
  assert.deepEqual(
    seqs,
    Array.from({ length: last }, (_, i) => i + 1),
  );
}

describe("audit export follow", () => {
  let root: string;
  let installation: BrokerInstallation;
  let agentCount = 0;

  /** Registers `count` agents through the CLI, each one audit event (and a token for the CLI's admin). */
  async function addAgents(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      agentCount++;
      await runWritJson([
        "--data",
        installation.dataDir,
        "--admin-key",
        installation.adminKeyFile,
        "agent",
        "add",
        `follow-bot-${agentCount}`,
        "--owner",
        "team-test",
        "--env",
        "prod",
        "--key-out",
        join(root, `follow-bot-${agentCount}.jwk`),
      ]);
    }
  }

  function follow(format: "jsonl" | "ocsf", out: string, sinceSeq?: number): WritProcess {
    return spawnWrit([
      "--data",
      installation.dataDir,
      "--admin-key",
      installation.adminKeyFile,
      "audit",
      "export",
      "--format",
      format,
      "--follow",
      "--out",
      out,
      ...(sinceSeq === undefined ? [] : ["--since-seq", String(sinceSeq)]),
    ]);
  }

  before(async () => {
    requireBuiltCli();
    root = await mkdtemp(join(tmpdir(), "writ-export-follow-"));
    installation = await initBroker(root);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  describe("through the server", () => {
    let server: WritProcess;
    let admin: AdminClient;

    before(async () => {
      server = await startBrokerProcess(installation);
      admin = await connectAdmin(installation);
    });

    after(async () => {
      await server.stop();
    });

    test("restarted OCSF follower has no gap or duplicate", async () => {
      await addAgents(2);
      const first = join(root, "first.ocsf.jsonl");
      const second = join(root, "second.ocsf.jsonl");

      const followerA = follow("ocsf", first);
      await waitForSeq(first, await headSeq(admin), followerA);
      await addAgents(2);
      await waitForSeq(first, await headSeq(admin), followerA);
      await stopFollower(followerA);
      const firstSeqs = await exportedSeqs(first);
      const resumeAfter = firstSeqs.at(-1) ?? 0;

      // Events committed while no follower runs must arrive after the restart.
      await addAgents(2);
      const followerB = follow("ocsf", second, resumeAfter);
      await waitForSeq(second, await headSeq(admin), followerB);
      await addAgents(1);
      const head = await headSeq(admin);
      await waitForSeq(second, head, followerB);
      await stopFollower(followerB);

      assertContinuous([...firstSeqs, ...(await exportedSeqs(second))], head);
    });

    test("restarted JSON-lines follower continues the chain", async () => {
      const first = join(root, "first.jsonl");
      const second = join(root, "second.jsonl");
      const followerA = follow("jsonl", first);
      await waitForSeq(first, await headSeq(admin), followerA);
      await stopFollower(followerA);
      const firstLines = await exportedLines(first);
      const lastEvent = firstLines.at(-1) as AuditRecord;

      await addAgents(1);
      const followerB = follow("jsonl", second, lastEvent.seq);
      const head = await headSeq(admin);
      await waitForSeq(second, head, followerB);
      await stopFollower(followerB);
      const [header, ...events] = await exportedLines(second);

      assert.deepEqual((header as ExportHeader).after, { seq: lastEvent.seq, hash: lastEvent.hash });
      assert.equal((events[0] as AuditRecord).prev_hash, lastEvent.hash);
      assertContinuous([...(await exportedSeqs(first)), ...(await exportedSeqs(second))], head);

      // The second file continues the first: together they verify. Alone, no signed checkpoint names
      // the event it continues from or one of its own, so nothing vouches for it.
      const joined = join(root, "joined.jsonl");
      const secondText = await readFile(second, "utf8");
      await writeFile(
        joined,
        (await readFile(first, "utf8")) + secondText.slice(secondText.indexOf("\n") + 1),
      );
      const verify = (file: string): Promise<{ ok: boolean; fault?: string }> =>
        runWritVerdict(["--data", installation.dataDir, "audit", "verify", "--file", file]);
      for (const file of [first, joined]) {
        const verdict = await verify(file);
        assert.equal(verdict.ok, true, `${file} does not verify: ${JSON.stringify(verdict)}`);
      }
      const alone = await verify(second);
      assert.equal(alone.fault, "unanchored", JSON.stringify(alone));
    });
  });

  describe("from the store without a server", () => {
    test("restarted follower has no gap or duplicate", async () => {
      const first = join(root, "local-first.jsonl");
      const second = join(root, "local-second.jsonl");
      const followerA = follow("ocsf", first);
      // Without a server, each CLI command opens the broker in-process and appends to the same store.
      await addAgents(1);
      const afterFirst = Math.max(...(await exportedSeqsAfter(followerA, first)));
      await stopFollower(followerA);

      await addAgents(1);
      const followerB = follow("ocsf", second, afterFirst);
      await addAgents(1);
      const head = await localHeadSeq();
      await waitForSeq(second, head, followerB);
      await stopFollower(followerB);

      const seqs = [...(await exportedSeqs(first)), ...(await exportedSeqs(second))];
      assertContinuous(seqs, head);
    });

    /** Waits until the follower wrote the store's head, and returns what it wrote. */
    async function exportedSeqsAfter(follower: WritProcess, file: string): Promise<number[]> {
      await waitForSeq(file, await localHeadSeq(), follower);
      return exportedSeqs(file);
    }

    /** Reads the store's head with a one-off export from the store. */
    async function localHeadSeq(): Promise<number> {
      const file = join(root, `head-${Date.now()}.jsonl`);
      const once = spawnWrit(["--data", installation.dataDir, "audit", "export", "--out", file]);
      await new Promise((resolve) => once.child.once("exit", resolve));
      assert.equal(once.child.exitCode, 0, once.output());
      return Math.max(0, ...(await exportedSeqs(file)));
    }
  });
});

/** Runs a CLI command that prints one JSON verdict and exits 1 when it is not ok. */
async function runWritVerdict(args: string[]): Promise<{ ok: boolean; fault?: string }> {
  try {
    return await runWritJson<{ ok: boolean; fault?: string }>(args);
  } catch (error) {
    const stdout = (error as { stdout?: string }).stdout;
    if (typeof stdout === "string" && stdout.trim() !== "") return JSON.parse(stdout) as { ok: boolean };
    throw error;
  }
}
