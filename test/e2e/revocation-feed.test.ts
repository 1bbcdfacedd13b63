import { test, describe, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { decodeJwt, importJWK } from "jose";
import * as oauth from "oauth4webapi";
import { readKeyFile, type LoadedKey } from "../../src/cli/admin-client.js";
import { generateIdentityKey } from "../../src/identity/keys.js";
import type { RevocationEvent } from "../../src/revocation/feed.js";
import type { RevocationResult } from "../../src/revocation/revoke.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import {
  discover,
  loopbackHttp,
  registerAgent,
  registerTool,
  requestPersonToken,
  requestTaskToken,
  startTask,
  type PersonKey,
  type TestAgent,
} from "../support/agent-client.js";
import { EventStreamReader, type ServerSentEvent } from "../support/event-stream.js";

interface Snapshot {
  cursor: number;
  revocations: RevocationEvent[];
}

/** An open connection to `GET /v1/revocations`. */
interface Follower {
  response: Response;
  events: EventStreamReader;
  close(): void;
}

describe("revocation feed", () => {
  let broker: TestBroker;
  let as: oauth.AuthorizationServer;
  let adminKey: LoadedKey;
  let agent: TestAgent;
  const followers: Follower[] = [];

  /** Opens the feed as `person` (the admin by default) with oauth4webapi's DPoP-protected request. */
  async function follow(
    query = "",
    headers = new Headers(),
    person: PersonKey = adminKey,
  ): Promise<Follower> {
    const { accessToken, dpop } = await requestPersonToken(as, person);
    const abort = new AbortController();
    headers.set("accept", "text/event-stream");
    const response = await oauth.protectedResourceRequest(
      accessToken,
      "GET",
      new URL(`${broker.issuer}/v1/revocations${query}`),
      headers,
      null,
      { DPoP: dpop, signal: abort.signal, ...loopbackHttp },
    );
    assert.equal(response.status, 200, `feed answered ${response.status}`);
    assert.ok(response.body !== null, "feed response has no body");
    const follower = { response, events: new EventStreamReader(response.body), close: () => abort.abort() };
    followers.push(follower);
    return follower;
  }

  /** Starts a task, obtains one token for it and returns both, so that ending it revokes a token. */
  async function taskWithToken(): Promise<{ taskId: string; jti: string }> {
    const task = await startTask(broker, agent.name, ["github:read"]);
    const token = await requestTaskToken(as, agent, task.id);
    return { taskId: task.id, jti: String(decodeJwt(token.accessToken).jti) };
  }

  async function endTask(taskId: string): Promise<RevocationResult> {
    return broker.admin.call<RevocationResult>("POST", `/v1/tasks/${taskId}/end`);
  }

  function parse<T>(event: ServerSentEvent): T {
    return JSON.parse(event.data) as T;
  }

  before(async () => {
    broker = await startTestBroker();
    as = await discover(broker.issuer);
    adminKey = await readKeyFile(broker.adminKeyFile);
    agent = await registerAgent(broker, "follower-test");
    await registerTool(broker, "github");
  });

  afterEach(() => {
    for (const follower of followers.splice(0)) follower.close();
  });

  after(async () => {
    await broker.close();
  });

  test("feed is an event stream", async () => {
    const follower = await follow();
    assert.match(follower.response.headers.get("content-type") ?? "", /^text\/event-stream/);
  });

  test("new follower first gets snapshot", async () => {
    const follower = await follow();
    const first = await follower.events.next(2000);
    assert.equal(first.event, "snapshot");
    assert.equal(typeof parse<Snapshot>(first).cursor, "number");
  });

  test("snapshot lists earlier revocations", async () => {
    const { taskId, jti } = await taskWithToken();
    await endTask(taskId);
    const follower = await follow();
    const snapshot = parse<Snapshot>(await follower.events.next(2000));
    const entry = snapshot.revocations.find((revocation) => revocation.task_ids.includes(taskId));
    assert.deepEqual(entry?.jtis, [jti]);
  });

  test("task end is sent within 1 s", async () => {
    const follower = await follow();
    await follower.events.nextOfType("snapshot", 2000);
    const { taskId, jti } = await taskWithToken();

    const started = Date.now();
    const result = await endTask(taskId);
    const event = await follower.events.nextOfType("revocation", 1000);
    const elapsedMs = Date.now() - started;

    assert.ok(elapsedMs <= 1000, `revocation arrived after ${elapsedMs} ms`);
    assert.equal(event.id, String(result.seq));
    assert.deepEqual(parse<RevocationEvent>(event).task_ids, [taskId]);
    assert.deepEqual(parse<RevocationEvent>(event).jtis, [jti]);
  });

  test("cursor resumes after N", async () => {
    const first = await endTask((await taskWithToken()).taskId);
    const second = await taskWithToken();
    const secondResult = await endTask(second.taskId);

    const follower = await follow(`?cursor=${first.seq}`);
    const event = await follower.events.next(2000);
    assert.equal(event.event, "revocation");
    assert.equal(event.id, String(secondResult.seq));
    assert.deepEqual(parse<RevocationEvent>(event).task_ids, [second.taskId]);
  });

  test("Last-Event-ID resumes after N", async () => {
    const first = await endTask((await taskWithToken()).taskId);
    const second = await endTask((await taskWithToken()).taskId);

    const follower = await follow("", new Headers({ "last-event-id": String(first.seq) }));
    const event = await follower.events.next(2000);
    assert.equal(event.event, "revocation");
    assert.equal(event.id, String(second.seq));
  });

  test("unknown cursor gets snapshot", async () => {
    const follower = await follow("?cursor=999999");
    assert.equal((await follower.events.next(2000)).event, "snapshot");
  });

  test("malformed cursor gets snapshot", async () => {
    const follower = await follow("?cursor=abc");
    assert.equal((await follower.events.next(2000)).event, "snapshot");
  });

  test("revocation during snapshot is delivered", async () => {
    const { taskId } = await taskWithToken();
    const feed = broker.server.broker.context.feed;
    const readSnapshot = feed.snapshot.bind(feed);
    // The task ends after the snapshot was read but before it is sent, as a concurrent revocation can.
    feed.snapshot = async () => {
      feed.snapshot = readSnapshot;
      const revocations = await readSnapshot();
      await endTask(taskId);
      return revocations;
    };

    const follower = await follow();
    const snapshot = parse<Snapshot>(await follower.events.nextOfType("snapshot", 2000));
    const inSnapshot = snapshot.revocations.some((revocation) => revocation.task_ids.includes(taskId));
    const delivered =
      inSnapshot ||
      (await follower.events.nextOfType("revocation", 1000).then(
        (event) => parse<RevocationEvent>(event).task_ids.includes(taskId),
        () => false,
      ));
    assert.ok(delivered, "the follower never learned of the revocation");
  });

  test("heartbeat arrives within interval", async () => {
    const config = broker.server.broker.context.config;
    const configured = config.revocation_heartbeat_seconds;
    // The interval is read when a follower connects.
    config.revocation_heartbeat_seconds = 1;
    try {
      const follower = await follow();
      await follower.events.nextOfType("snapshot", 2000);
      const heartbeat = await follower.events.nextOfType("heartbeat", 2500);
      assert.equal(typeof parse<{ cursor: number }>(heartbeat).cursor, "number");
    } finally {
      config.revocation_heartbeat_seconds = configured;
    }
  });

  test("agent token is access_denied", async () => {
    const task = await startTask(broker, agent.name, ["github:read"]);
    const token = await requestTaskToken(as, agent, task.id);
    // A valid tool token authenticates the agent, so the API returns 403 rather than a 401 challenge.
    const response = await oauth.protectedResourceRequest(
      token.accessToken,
      "GET",
      new URL(`${broker.issuer}/v1/revocations`),
      new Headers(),
      null,
      { DPoP: token.dpop, ...loopbackHttp },
    );
    const body = (await response.json()) as { error: string };
    assert.equal(response.status, 403);
    assert.equal(body.error, "access_denied");
  });

  test("auditor is access_denied", async () => {
    const key = await generateIdentityKey("Ed25519");
    const auditor = await broker.admin.call<{ spiffe_id: string }>("POST", "/v1/humans", {
      display_name: "Feed Auditor",
      roles: ["auditor"],
      public_jwk: key.publicJwk,
    });
    const privateKey = (await importJWK(key.privateJwk, "Ed25519")) as PersonKey["privateKey"];
    const { accessToken, dpop } = await requestPersonToken(as, { clientId: auditor.spiffe_id, privateKey });
    const response = await oauth.protectedResourceRequest(
      accessToken,
      "GET",
      new URL(`${broker.issuer}/v1/revocations`),
      new Headers(),
      null,
      { DPoP: dpop, ...loopbackHttp },
    );
    const body = (await response.json()) as { error: string };
    assert.equal(response.status, 403);
    assert.equal(body.error, "access_denied");
  });

  test("stream ends when its token is revoked", async () => {
    const { accessToken, dpop } = await requestPersonToken(as, adminKey);
    const abort = new AbortController();
    const response = await oauth.protectedResourceRequest(
      accessToken,
      "GET",
      new URL(`${broker.issuer}/v1/revocations`),
      new Headers({ accept: "text/event-stream" }),
      null,
      { DPoP: dpop, signal: abort.signal, ...loopbackHttp },
    );
    assert.equal(response.status, 200);
    const events = new EventStreamReader(response.body as ReadableStream<Uint8Array>);
    try {
      await events.nextOfType("snapshot", 2000);
      const jti = String(decodeJwt(accessToken).jti);
      await broker.admin.call("POST", "/v1/revoke", { token: jti });
      const revocation = parse<RevocationEvent>(await events.nextOfType("revocation", 2000));
      assert.deepEqual(revocation.jtis, [jti]);
      await assert.rejects(events.next(2000), /event stream ended/);
    } finally {
      abort.abort();
    }
  });

  test("request without token is refused", async () => {
    const response = await fetch(`${broker.issuer}/v1/revocations`);
    await response.body?.cancel();
    assert.equal(response.status, 401);
  });
});
