import { createSocket, type Socket } from "node:dgram";
import { connect } from "node:net";
import { hostname } from "node:os";
import type { Checkpoint } from "../checkpoint.js";
import { checkpointLine, type CheckpointSink } from "./sink.js";

/** Facility 13 (log audit) and severity 6 (informational), as RFC 5424 section 6.2.1 numbers them. */
const priority = 13 * 8 + 6;

/** How long one delivery to a unix socket may take, in milliseconds. */
const unixWriteTimeoutMs = 5000;

/** The destination of syslog messages: `udp://HOST:PORT` or `unix:PATH` (a stream socket). */
export type SyslogTarget = { kind: "udp"; host: string; port: number } | { kind: "unix"; path: string };

/** Parses a syslog target; throws Error naming the accepted forms on anything else. */
export function parseSyslogTarget(value: string): SyslogTarget {
  if (value.startsWith("unix:")) {
    const path = value.slice("unix:".length);
    if (path.startsWith("/")) return { kind: "unix", path };
  }
  if (value.startsWith("udp://")) {
    const url = new URL(value);
    const port = Number(url.port);
    if (url.hostname !== "" && Number.isInteger(port) && port > 0 && url.pathname === "") {
      return { kind: "udp", host: url.hostname.replace(/^\[|\]$/g, ""), port };
    }
  }
  throw new Error(`invalid syslog target "${value}": use udp://HOST:PORT or unix:/ABSOLUTE/PATH`);
}

/** Formats one RFC 5424 message whose MSG is the checkpoint as a JSON document. */
export function formatSyslogMessage(checkpoint: Checkpoint, host: string, pid: number): string {
  const timestamp = new Date(checkpoint.time).toISOString();
  return `<${priority}>1 ${timestamp} ${host} writ ${pid} checkpoint - ${JSON.stringify(checkpointLine(checkpoint))}`;
}

/**
 * Sends each checkpoint as an RFC 5424 message: one datagram over UDP (RFC 5426), or one
 * octet-counted frame over a unix stream socket (RFC 6587 section 3.4.1).
 *
 * NOTE: UDP gives no delivery receipt, so a lost datagram is not noticed. Unix datagram sockets
 * such as `/dev/log` are not supported because Node.js cannot open them.
 */
export function syslogSink(target: SyslogTarget): CheckpointSink {
  const host = hostname() || "-";
  let udp: Socket | undefined;
  if (target.kind === "udp") {
    udp = createSocket(target.host.includes(":") ? "udp6" : "udp4");
    udp.unref();
  }
  return {
    name: target.kind === "udp" ? `syslog udp://${target.host}:${target.port}` : `syslog unix:${target.path}`,
    async write(checkpoint) {
      const message = formatSyslogMessage(checkpoint, host, process.pid);
      if (target.kind === "udp" && udp !== undefined) {
        await new Promise<void>((resolve, reject) =>
          udp.send(message, target.port, target.host, (error) => (error ? reject(error) : resolve())),
        );
        return;
      }
      if (target.kind === "unix") await sendFrame(target.path, message);
    },
    async close() {
      udp?.close();
    },
  };
}

function sendFrame(path: string, message: string): Promise<void> {
  const body = Buffer.from(message, "utf8");
  return new Promise<void>((resolve, reject) => {
    const socket = connect(path);
    socket.setTimeout(unixWriteTimeoutMs, () => socket.destroy(new Error(`syslog socket ${path} timed out`)));
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.end(Buffer.concat([Buffer.from(`${body.length} `), body]), () => resolve());
    });
  });
}
