import type { Logger } from "pino";
import type { AdminClient } from "../cli/admin-client.js";
import type { RevocationEvent } from "../revocation/feed.js";
import type { RevocationState } from "./revocation-state.js";

/** Delay before reconnecting to the feed, doubling from the first to the maximum. */
const reconnectInitialMs = 250;
const reconnectMaxMs = 5000;

/**
 * Follows the broker's revocation feed over server-sent events and applies it to the state:
 * a snapshot on first connect (or when the broker no longer knows the cursor), then each event.
 * It reconnects with its cursor after any failure, forever, until stopped.
 */
export class FeedFollower {
  private stopped = false;
  private controller: AbortController | undefined;
  private connected = false;

  constructor(
    private readonly client: AdminClient,
    private readonly state: RevocationState,
    private readonly log: Logger,
  ) {}

  /** Resolves once the first snapshot is loaded, or after `timeoutMs` when the broker is down. */
  start(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      void this.loop(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  stop(): void {
    this.stopped = true;
    this.controller?.abort();
  }

  private async loop(onSnapshot: () => void): Promise<void> {
    let delayMs = reconnectInitialMs;
    while (!this.stopped) {
      try {
        await this.follow(onSnapshot, () => {
          delayMs = reconnectInitialMs;
        });
      } catch (error) {
        if (this.stopped) return;
        this.log.warn(
          { err: error, retry_in_ms: delayMs, cursor: this.state.cursor() },
          "revocation feed lost; reconnecting",
        );
      }
      if (this.connected)
        this.log.warn({ cursor: this.state.cursor() }, "revocation feed closed; reconnecting");
      this.connected = false;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      delayMs = Math.min(delayMs * 2, reconnectMaxMs);
    }
  }

  private async follow(onSnapshot: () => void, onConnected: () => void): Promise<void> {
    const cursor = this.state.cursor();
    const response = await this.client.open(
      "GET",
      cursor > 0 ? `/v1/revocations?cursor=${cursor}` : "/v1/revocations",
      undefined,
      "text/event-stream",
    );
    if (response.status !== 200 || response.body === null) {
      throw new Error(`revocation feed request failed with status ${response.status}`);
    }
    this.connected = true;
    onConnected();
    this.log.info({ cursor }, "revocation feed connected");
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      if (this.stopped) return;
      buffer += decoder.decode(chunk, { stream: true });
      let boundary = buffer.indexOf("\n\n");
      while (boundary !== -1) {
        this.dispatch(buffer.slice(0, boundary), onSnapshot);
        buffer = buffer.slice(boundary + 2);
        boundary = buffer.indexOf("\n\n");
      }
    }
  }

  /** Applies one server-sent event: `event:` names its type and `data:` lines carry its JSON. */
  private dispatch(block: string, onSnapshot: () => void): void {
    let type = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) type = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (data.length === 0) return;
    const payload = JSON.parse(data.join("\n")) as unknown;
    if (type === "snapshot") {
      const snapshot = payload as { cursor: number; revocations: RevocationEvent[] };
      this.state.loadSnapshot(snapshot.cursor, snapshot.revocations);
      onSnapshot();
    } else if (type === "revocation") {
      this.state.apply(payload as RevocationEvent);
    } else if (type === "heartbeat") {
      this.state.heard();
    }
  }
}
