// A broker killed with SIGKILL in the middle of a burst of token requests. The broker returns a token
// only after the token's `token.issued` audit event has committed, so after a restart every token
// that a client received must have its event, and the chain must still verify.
//
// Needs `npm run build` first: the server and every CLI call run dist/cli/main.js as a user would.

import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { decodeJwt } from "jose";
import * as oauth from "oauth4webapi";
import type { AuditRecord } from "../../src/audit/chain.js";
import type { ChainVerdict } from "../../src/audit/verify.js";
import { readKeyFile } from "../../src/cli/admin-client.js";
import { discover, requestTaskToken } from "../support/agent-client.js";
import { freePort } from "../support/broker.js";

const execFileAsync = promisify(execFile);
const cliPath = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

/** Token requests kept in flight, and how many tokens must be issued before the server is killed. */
const concurrentRequests = 300;
const killAfterIssued = 300;

/** How long a starting server may take before its metadata endpoint responds. */
const startTimeoutMs = 30_000;

let root: string;
let dataDir: string;
let adminKeyFile: string;
let issuer: string;
let serverLog: string;
let server: ChildProcess | undefined;

/** Runs the CLI with `--json` on the test's data directory and returns its parsed output. */
async function cli<T>(...args: string[]): Promise<T> {
  const { stdout } = await execFileAsync(process.execPath, [
    cliPath,
    "--data",
    dataDir,
    "--admin-key",
    adminKeyFile,
    "--json",
    ...args,
  ]);
  return JSON.parse(stdout) as T;
}

/** Starts `writ server` and resolves once its metadata endpoint responds. */
async function startServer(): Promise<ChildProcess> {
  const logFd = openSync(serverLog, "a");
  const child = spawn(process.execPath, [cliPath, "--data", dataDir, "server"], {
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  let exited = false;
  child.once("exit", () => (exited = true));

  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    if (exited)
      assert.fail(`writ server exited during start; its log:\n${await readFile(serverLog, "utf8")}`);
    try {
      const response = await fetch(`${issuer}/.well-known/oauth-authorization-server`);
      if (response.ok) return child;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill("SIGKILL");
  throw new Error(
    `writ server did not respond within ${startTimeoutMs} ms; its log:\n${await readFile(serverLog, "utf8")}`,
  );
}

/** Sends `signal` to the server and resolves once it has exited. */
async function stopServer(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(signal);
  await exited;
}

/**
 * Reads the audit events through the running server's API, page by page, up to a short page. Each CLI
 * call appends a `token.issued` event for its own admin token, so the log never ends on an empty page.
 */
async function allAuditEvents(): Promise<AuditRecord[]> {
  const pageSize = 1000;
  const events: AuditRecord[] = [];
  for (;;) {
    const after = events.at(-1)?.seq ?? 0;
    const page = await cli<{ events: AuditRecord[] }>(
      "audit",
      "list",
      "--after",
      String(after),
      "--limit",
      String(pageSize),
    );
    events.push(...page.events);
    if (page.events.length < pageSize) return events;
  }
}

before(async () => {
  assert.ok(existsSync(cliPath), `${cliPath} is missing: run npm run build first`);
  root = await mkdtemp(join(tmpdir(), "writ-crash-"));
  dataDir = join(root, "data");
  adminKeyFile = join(root, "admin-key.json");
  serverLog = join(root, "server.log");
  const port = await freePort();
  const initialised = await cli<{ issuer: string }>(
    "init",
    "--trust-domain",
    "example.org",
    "--listen",
    `127.0.0.1:${port}`,
    "--admin-key-out",
    adminKeyFile,
  );
  issuer = initialised.issuer;
});

after(async () => {
  if (server !== undefined) await stopServer(server, "SIGKILL");
  await rm(root, { recursive: true, force: true });
});

test("killed server keeps issued tokens", async (t) => {
  server = await startServer();
  const agentKeyFile = join(root, "agent-key.json");
  await cli("agent", "add", "crash-bot", "--owner", "team-crash", "--env", "prod", "--key-out", agentKeyFile);
  await cli("tool", "add", "github", "--kind", "http", "--env", "prod", "--action", "read=GET /repos/**");
  const task = await cli<{ id: string }>(
    "task",
    "start",
    "--agent",
    "crash-bot",
    "--tool",
    "github:read",
    "--intent",
    "survive a crash",
    "--env",
    "prod",
    "--ttl",
    "1h",
  );
  const agent = await readKeyFile(agentKeyFile);
  const as = await discover(issuer);

  // Each worker sends one request after another, so that about `concurrentRequests` are in flight
  // when the server is killed. A worker stops at its first failure, which the kill causes for all.
  const running = server;
  const issuedJtis: string[] = [];
  const outcomes: string[] = [];
  let killing: Promise<void> | undefined;
  const worker = async (): Promise<void> => {
    for (;;) {
      const sentBeforeKill = killing === undefined;
      try {
        const token = await requestTaskToken(as, agent, task.id);
        const { jti } = decodeJwt(token.accessToken);
        assert.ok(typeof jti === "string", "access token has no jti");
        issuedJtis.push(jti);
        outcomes.push("issued");
        if (issuedJtis.length >= killAfterIssued) killing ??= stopServer(running, "SIGKILL");
      } catch (error) {
        // An OAuth error response means the broker refused the request, which the kill cannot cause.
        if (error instanceof oauth.ResponseBodyError) outcomes.push(`refused: ${error.error}`);
        else outcomes.push(sentBeforeKill ? "interrupted" : "failed");
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrentRequests }, worker));
  await killing;

  const interruptedCount = outcomes.filter((outcome) => outcome === "interrupted").length;
  t.diagnostic(`${issuedJtis.length} tokens issued, ${interruptedCount} requests in flight at the kill`);
  assert.deepEqual(
    outcomes.filter((outcome) => outcome.startsWith("refused")),
    [],
  );
  assert.ok(issuedJtis.length >= killAfterIssued, `only ${issuedJtis.length} tokens issued before the kill`);
  assert.ok(interruptedCount > 0, "every request finished before the kill, so it did not interrupt any");

  server = await startServer();
  const events = await allAuditEvents();
  const audited = new Set(events.filter((event) => event.kind === "token.issued").map((event) => event.jti));
  assert.deepEqual(
    issuedJtis.filter((jti) => !audited.has(jti)),
    [],
  );

  // Every CLI call above authenticated with a new admin token, so the chain has grown since the list.
  const verify = await cli<ChainVerdict>("audit", "verify");
  assert.equal(verify.ok, true, `audit verify returned ${JSON.stringify(verify)}`);
  assert.ok(verify.events >= events.length, `audit verify saw ${verify.events} of ${events.length} events`);

  const afterRestart = await requestTaskToken(as, agent, task.id);
  assert.equal(afterRestart.response.token_type.toLowerCase(), "dpop");

  await stopServer(server, "SIGTERM");
  assert.equal(
    server.exitCode,
    0,
    `writ server exited with ${server.exitCode}; log:\n${await readFile(serverLog, "utf8")}`,
  );
});
