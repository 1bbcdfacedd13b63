import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { openBroker } from "../broker/broker.js";
import { defaultAdminKeyPath } from "../broker/init.js";
import { silentLogger } from "../log/logger.js";
import { buildApp } from "../server/app.js";
import { serverFileName, type ServerRecord } from "../server/serve.js";
import { AdminClient, readKeyFile, type Fetch } from "./admin-client.js";

export interface GlobalOptions {
  data?: string;
  url?: string;
  adminKey?: string;
  json?: boolean;
}

/** The data directory: `--data`, else `WRIT_DATA`, else `~/.local/share/writ`. */
export function dataDirectory(options: GlobalOptions): string {
  const base = process.env.XDG_DATA_HOME ?? join(homedir(), ".local", "share");
  return resolve(options.data ?? process.env.WRIT_DATA ?? join(base, "writ"));
}

export interface Target {
  client: AdminClient;
  /** `remote` when a running server answers, `local` when the command runs the broker itself. */
  mode: "remote" | "local";
  close(): Promise<void>;
}

/**
 * Connects the CLI to the API it acts through. With `--url`, or when a server runs on the data
 * directory, the CLI calls that server, so a change takes effect there at once; otherwise it opens
 * the broker in-process and calls the same API without a network. Either way the person
 * authenticates with their own key, so every change is attributed to them.
 */
export async function connect(options: GlobalOptions): Promise<Target> {
  const keyPath = options.adminKey ?? process.env.WRIT_ADMIN_KEY ?? defaultAdminKeyPath();
  const key = await readKeyFile(keyPath);
  const dataDir = dataDirectory(options);

  const remoteUrl = options.url ?? (await runningServerUrl(dataDir));
  if (remoteUrl !== undefined) {
    const issuer = await discoverIssuer(remoteUrl);
    return { client: await AdminClient.connect({ issuer, key }), mode: "remote", close: async () => {} };
  }

  const broker = await openBroker({ dataDir, log: silentLogger() });
  const app = buildApp(broker.context);
  await app.ready();
  const injectFetch: Fetch = async (url, init) => {
    const target = new URL(url);
    const response = await app.inject({
      method: (init.method ?? "GET") as "GET" | "POST",
      url: `${target.pathname}${target.search}`,
      headers: Object.fromEntries(new Headers(init.headers).entries()),
      ...(init.body === undefined || init.body === null ? {} : { payload: init.body.toString() }),
    });
    return new Response(response.statusCode === 204 ? null : response.body, {
      status: response.statusCode,
      headers: response.headers as Record<string, string>,
    });
  };
  const client = await AdminClient.connect({ issuer: broker.context.issuer, key, fetch: injectFetch });
  return {
    client,
    mode: "local",
    async close() {
      await app.close();
      await broker.close();
    },
  };
}

/** Returns the URL of a server running on the data directory, if its process is alive. */
async function runningServerUrl(dataDir: string): Promise<string | undefined> {
  let record: ServerRecord;
  try {
    record = JSON.parse(await readFile(join(dataDir, serverFileName), "utf8")) as ServerRecord;
  } catch {
    return undefined;
  }
  try {
    process.kill(record.pid, 0);
    return record.url;
  } catch {
    return undefined;
  }
}

/** Reads the issuer from the server's metadata, so a URL with a trailing slash or path still works. */
async function discoverIssuer(url: string): Promise<string> {
  const base = url.replace(/\/+$/, "");
  const response = await fetch(`${base}/.well-known/oauth-authorization-server`);
  if (!response.ok)
    throw new Error(`no writ server at "${url}": metadata request returned ${response.status}`);
  const metadata = (await response.json()) as { issuer?: unknown };
  if (typeof metadata.issuer !== "string")
    throw new Error(`no writ server at "${url}": metadata has no issuer`);
  return metadata.issuer;
}
