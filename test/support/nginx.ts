import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { delimiter, join } from "node:path";

/** An nginx process run by a test, with its own configuration and prefix folder. */
export interface RunningNginx {
  /** `http://127.0.0.1:<port>`, where the `server` block listens. */
  url: string;
  /** Returns the contents of nginx's error log, for failure messages. */
  errorLog(): Promise<string>;
  /** Stops nginx and waits for it to exit. */
  close(): Promise<void>;
}

/** Returns the nginx binary from PATH or /usr/sbin, where Debian installs it. Throws Error when missing. */
export function findNginx(): string {
  const folders = [
    ...(process.env.PATH ?? "").split(delimiter).filter((folder) => folder !== ""),
    "/usr/sbin",
  ];
  for (const folder of folders) {
    const file = join(folder, "nginx");
    try {
      accessSync(file, fsConstants.X_OK);
      return file;
    } catch {
      // Not in this folder; try the next.
    }
  }
  throw new Error(
    "nginx not found on PATH or at /usr/sbin/nginx. Install it (Debian: apt-get install nginx); " +
      ".ci/run installs it when missing.",
  );
}

/**
 * Starts nginx in the foreground with `server` as its only server block, which must listen on
 * 127.0.0.1:`port`. Every file nginx writes (pid, logs, temporary bodies) stays under `prefix`.
 * nginx runs as one process (`master_process off`), so it never switches to the `nobody` user, which
 * could not enter a test's private temporary folder when the tests run as root.
 */
export async function startNginx(options: {
  prefix: string;
  port: number;
  server: string;
}): Promise<RunningNginx> {
  const { prefix, port } = options;
  const errorLogFile = join(prefix, "error.log");
  const configFile = join(prefix, "nginx.conf");
  await mkdir(prefix, { recursive: true });
  const config = [
    "daemon off;",
    "master_process off;",
    `pid ${join(prefix, "nginx.pid")};`,
    `error_log ${errorLogFile} info;`,
    "events { worker_connections 64; }",
    "http {",
    `  access_log ${join(prefix, "access.log")};`,
    // Debian's build points these at /var/lib/nginx, which a test must not touch.
    `  client_body_temp_path ${join(prefix, "client-body")};`,
    `  proxy_temp_path ${join(prefix, "proxy")};`,
    `  fastcgi_temp_path ${join(prefix, "fastcgi")};`,
    `  uwsgi_temp_path ${join(prefix, "uwsgi")};`,
    `  scgi_temp_path ${join(prefix, "scgi")};`,
    options.server,
    "}",
    "",
  ].join("\n");
  await writeFile(configFile, config);

  // `-e` sets the error log used before the configuration is read, in place of /var/log/nginx.
  const child = spawn(findNginx(), ["-p", prefix, "-c", configFile, "-e", errorLogFile], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const errorLog = async () => {
    const logged = await readFile(errorLogFile, "utf8").catch(() => "");
    return `${stderr}${logged}`;
  };

  try {
    await waitForListener(child, port, 10_000);
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    throw new Error(`nginx did not start: ${(error as Error).message}\n${await errorLog()}`, {
      cause: error,
    });
  }

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    errorLog,
    close() {
      closing ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
        await exited;
      })();
      return closing;
    },
  };
}

/** Connects to 127.0.0.1:`port` every 50 ms until it accepts, the process exits or `limitMs` passes. */
async function waitForListener(child: ChildProcess, port: number, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`nginx exited with ${child.exitCode ?? child.signalCode}`);
    }
    if (await accepts(port)) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
