import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { decodeJwt } from "jose";
import * as oauth from "oauth4webapi";
import { readKeyFile } from "../../src/cli/admin-client.js";
import { revokeToken } from "../../src/revocation/revoke.js";
import { startTestBroker, type TestBroker } from "../support/broker.js";
import { discover, loopbackHttp, requestPersonToken } from "../support/agent-client.js";
import { EventStreamReader } from "../support/event-stream.js";

describe("revocation feed stream ending", () => {
  let broker: TestBroker;

  before(async () => {
    broker = await startTestBroker();
  });

  after(async () => {
    await broker?.close();
  });

  test("two peer revocations in one poll", async () => {
    const as = await discover(broker.issuer);
    const adminKey = await readKeyFile(broker.adminKeyFile);
    const follower = await requestPersonToken(as, adminKey);
    const bystander = await requestPersonToken(as, adminKey);
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => {
      uncaught.push(error);
    };
    process.on("uncaughtException", onUncaught);
    try {
      const response = await oauth.protectedResourceRequest(
        follower.accessToken,
        "GET",
        new URL(`${broker.issuer}/v1/revocations`),
        new Headers({ accept: "text/event-stream" }),
        null,
        { DPoP: follower.dpop, ...loopbackHttp },
      );
      assert.equal(response.status, 200);
      assert.ok(response.body !== null);
      const events = new EventStreamReader(response.body);
      assert.equal((await events.next(2000)).event, "snapshot");
      // Another broker process over the same store revokes the follower's token and then another
      // token between two polls of this process, so one poll emits both events back to back.
      const context = broker.server.broker.context;
      const expiresAtS = Math.floor(Date.now() / 1000) + 600;
      for (const token of [follower.accessToken, bystander.accessToken]) {
        await context.store.db.transaction().execute((trx) =>
          context.feed.insertWithin(trx, {
            reason: "token revoked by a peer",
            task_ids: [],
            agent_ids: [],
            jtis: [String(decodeJwt(token).jti)],
            expires_at_s: expiresAtS,
          }),
        );
      }
      await context.feed.poll();
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      process.off("uncaughtException", onUncaught);
    }
    assert.deepEqual(
      uncaught.map((error) => (error as { code?: string }).code),
      [],
      "the broker wrote to the stream after ending it",
    );
  });

  test("token revoked while the stream opens", async () => {
    const as = await discover(broker.issuer);
    const { accessToken, dpop } = await requestPersonToken(as, await readKeyFile(broker.adminKeyFile));
    const jti = String(decodeJwt(accessToken).jti);
    const context = broker.server.broker.context;

    // Forces the interleaving a real follower meets by chance: its token is revoked after the route
    // authenticated it and while it reads the revocations after the follower's cursor.
    const since = context.feed.since.bind(context.feed);
    context.feed.since = async (cursor) => {
      await revokeToken(context, "spiffe://example.org/test", jti);
      return since(cursor);
    };
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => {
      uncaught.push(error);
    };
    process.on("uncaughtException", onUncaught);
    try {
      const response = await oauth.protectedResourceRequest(
        accessToken,
        "GET",
        new URL(`${broker.issuer}/v1/revocations?cursor=${context.feed.cursor()}`),
        new Headers({ accept: "text/event-stream" }),
        null,
        { DPoP: dpop, ...loopbackHttp },
      );
      assert.equal(response.status, 200);
      assert.ok(response.body !== null);
      const events = new EventStreamReader(response.body);
      const first = await events.next(2000);
      assert.equal(first.event, "revocation");
      await assert.rejects(events.next(2000), /event stream ended/);
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      context.feed.since = since;
      process.off("uncaughtException", onUncaught);
    }
    assert.deepEqual(
      uncaught.map((error) => (error as { code?: string }).code),
      [],
      "the broker wrote to the stream after ending it",
    );
  });
});
