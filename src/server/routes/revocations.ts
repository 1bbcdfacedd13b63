import type { FastifyInstance } from "fastify";
import type { BrokerContext } from "../../broker/context.js";
import type { RevocationEvent } from "../../revocation/feed.js";
import { logFields } from "../../log/fields.js";
import { apiRoute } from "./api.js";

/**
 * Registers `GET /v1/revocations`, the revocation feed as server-sent events. A follower resumes with
 * `?cursor=N` or `Last-Event-ID`; one that starts, or whose cursor is unknown or purged, first gets a
 * `snapshot` event with every revocation whose tokens may still be unexpired. Each later revocation
 * is a `revocation` event whose id is its sequence number, and a `heartbeat` event arrives at least
 * every `revocation_heartbeat_seconds`, so a follower can tell a quiet feed from a broken one. The
 * stream ends when the follower's token expires or is revoked, and the follower reconnects with a new
 * token from its cursor.
 */
export function registerRevocationFeed(app: FastifyInstance, context: BrokerContext): void {
  apiRoute(app, context, "GET", "/v1/revocations", ["admin", "gateway"], async (caller, request, reply) => {
    const query = request.query as { cursor?: string };
    const requested = query.cursor ?? (request.headers["last-event-id"] as string | undefined);
    const cursor = requested === undefined ? undefined : Number(requested);

    // Subscribe before reading, so no revocation falls between the read and the live stream.
    const buffered: RevocationEvent[] = [];
    const stream: { live?: (event: RevocationEvent) => void } = {};
    const unsubscribe = context.feed.subscribe((event) =>
      stream.live === undefined ? buffered.push(event) : stream.live(event),
    );

    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-store",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });

    let lastSent = 0;
    let closed = false;
    const timers: { heartbeat?: NodeJS.Timeout; expiry?: NodeJS.Timeout } = {};
    const release = (): void => {
      clearInterval(timers.heartbeat);
      clearTimeout(timers.expiry);
      unsubscribe();
    };
    const send = (event: string, id: number | undefined, data: unknown): void => {
      if (closed || raw.writableEnded || raw.destroyed) return;
      raw.write(`${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    // The stream lives no longer than the token that opened it: a follower whose token expired or
    // was revoked must authenticate again to go on reading.
    const end = (why: string): void => {
      if (closed) return;
      closed = true;
      release();
      request.log.info(
        { follower: caller.id, [logFields.jti]: caller.claims.jti, why },
        "revocation feed closed",
      );
      if (!raw.writableEnded) raw.end();
    };
    // An identity's revocation covers the tokens issued before it, as at the gateways.
    const revokesFollower = (event: RevocationEvent): boolean =>
      event.jtis.includes(caller.claims.jti) ||
      (event.agent_ids.includes(caller.id) && caller.claims.iat * 1000 <= event.created_at);
    const sendRevocation = (event: RevocationEvent): void => {
      if (closed || event.seq <= lastSent) return;
      lastSent = event.seq;
      send("revocation", event.seq, event);
      if (revokesFollower(event)) end("the follower's token or identity was revoked");
    };
    raw.on("close", () => {
      closed = true;
      release();
      request.log.info({ follower: caller.id }, "revocation feed follower disconnected");
    });

    const resumed =
      cursor !== undefined && Number.isInteger(cursor) && cursor >= 0
        ? await context.feed.since(cursor)
        : undefined;
    if (resumed === undefined) {
      // The cursor is read before the snapshot. A revocation emitted while the snapshot is read is
      // then sent again as an event, which a follower applies twice harmlessly, instead of being lost.
      const snapshotCursor = context.feed.cursor();
      const snapshot = await context.feed.snapshot();
      lastSent = snapshotCursor;
      send("snapshot", lastSent, { cursor: lastSent, revocations: snapshot });
      if (snapshot.some(revokesFollower)) end("the follower's token or identity was revoked");
    } else {
      lastSent = cursor as number;
      resumed.forEach(sendRevocation);
    }
    buffered.forEach(sendRevocation);
    if (closed) return undefined;
    stream.live = sendRevocation;
    // A follower that resumed with nothing missed is caught up now; telling it at once spares it a
    // wait for the next interval before it trusts its state again.
    send("heartbeat", undefined, { cursor: lastSent, time: context.clock.nowMs() });

    timers.expiry = setTimeout(
      () => end("the follower's token expired"),
      Math.min(Math.max(0, caller.claims.exp * 1000 - context.clock.nowMs()), 2 ** 31 - 1),
    );
    timers.heartbeat = setInterval(
      () => send("heartbeat", undefined, { cursor: lastSent, time: context.clock.nowMs() }),
      context.config.revocation_heartbeat_seconds * 1000,
    );
    request.log.info({ follower: caller.id, cursor: lastSent }, "revocation feed follower connected");
    return undefined;
  });
}
