/** One server-sent event, whose `data` is its data lines joined by newlines. */
export interface ServerSentEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/**
 * A reader of a `text/event-stream` body. A background loop parses events as they arrive, so a test
 * can wait for the next one with a timeout without losing data read in the meantime. It handles the
 * subset of the format that writ sends: `event`, `id` and `data` fields, blank-line separated.
 */
export class EventStreamReader {
  private readonly events: ServerSentEvent[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private failure: unknown;

  constructor(body: ReadableStream<Uint8Array>) {
    void this.pump(body);
  }

  /** Resolves with the next event. Rejects when none arrives within `timeoutMs` or the stream ends first. */
  async next(timeoutMs: number): Promise<ServerSentEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const event = this.events.shift();
      if (event !== undefined) return event;
      if (this.ended)
        throw new Error(`event stream ended: ${String(this.failure ?? "closed by the server")}`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`no server-sent event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Resolves with the next event of type `type`, skipping others such as heartbeats. */
  async nextOfType(type: string, timeoutMs: number): Promise<ServerSentEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const event = await this.next(Math.max(0, deadline - Date.now()));
      if (event.event === type) return event;
    }
  }

  private async pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of body) {
        buffer += decoder.decode(chunk, { stream: true });
        let separator = buffer.indexOf("\n\n");
        while (separator !== -1) {
          this.events.push(parseEvent(buffer.slice(0, separator)));
          buffer = buffer.slice(separator + 2);
          separator = buffer.indexOf("\n\n");
        }
        this.wake();
      }
    } catch (error) {
      this.failure = error;
    }
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}

function parseEvent(block: string): ServerSentEvent {
  const parsed: ServerSentEvent = { event: "message", id: undefined, data: "" };
  const data: string[] = [];
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") parsed.event = value;
    else if (field === "id") parsed.id = value;
    else if (field === "data") data.push(value);
  }
  parsed.data = data.join("\n");
  return parsed;
}
