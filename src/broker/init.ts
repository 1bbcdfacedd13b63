import { access, mkdir, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { configFileName, parseConfig, type WritConfig } from "../config/config.js";
import { defaultPort } from "../config/defaults.js";
import { normalisePublicUrl } from "../config/public-url.js";
import { addHuman, type Human } from "../identity/humans.js";
import { generateIdentityKey, writePrivateKeyFile } from "../identity/keys.js";
import { openBroker } from "./broker.js";
import { createMasterKeyFile, masterKeyVariable } from "../secrets/master-key.js";

export interface InitOptions {
  dataDir: string;
  trustDomain: string;
  publicUrl?: string;
  listen?: string;
  adminName: string;
  adminEmail?: string;
  adminKeyOut?: string;
  store?: WritConfig["store"];
}

export interface InitResult {
  config: WritConfig;
  admin: Human;
  admin_key_file: string;
}

/** The file a person's private key goes to when no path is given: the user's configuration folder. */
export function defaultAdminKeyPath(): string {
  const base = process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config");
  return join(base, "writ", "admin-key.json");
}

/**
 * Creates an installation: configuration, store, the first signing key, and the first admin, whose
 * private key is written outside the data directory with mode 0600.
 */
export async function initialise(options: InitOptions): Promise<InitResult> {
  const dataDir = resolve(options.dataDir);
  const configPath = join(dataDir, configFileName);
  if (await exists(configPath)) throw new Error(`"${dataDir}" already holds a writ installation`);

  const keyPath = resolve(options.adminKeyOut ?? defaultAdminKeyPath());
  const fromData = relative(dataDir, keyPath);
  if (!fromData.startsWith("..") && !fromData.startsWith("/")) {
    throw new Error(
      `the admin key must not be kept inside the data directory "${dataDir}"; choose another --admin-key-out`,
    );
  }
  if (await exists(keyPath))
    throw new Error(`key file "${keyPath}" already exists; choose another --admin-key-out or remove it`);

  const listen = options.listen ?? `127.0.0.1:${defaultPort}`;
  const config = parseConfig(
    {
      trust_domain: options.trustDomain,
      public_url: normalisePublicUrl(options.publicUrl ?? `http://${listen}`),
      listen,
      store: options.store ?? { kind: "sqlite" },
    },
    "writ init",
  );

  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (process.env[masterKeyVariable] === undefined || process.env[masterKeyVariable] === "") {
    await createMasterKeyFile(dataDir);
  }
  const broker = await openBroker({ dataDir, config });
  try {
    const key = await generateIdentityKey("Ed25519");
    const admin = await addHuman(broker.context, null, {
      display_name: options.adminName,
      email: options.adminEmail ?? null,
      roles: ["admin"],
      public_jwk: key.publicJwk,
    });
    await mkdir(dirname(keyPath), { recursive: true, mode: 0o700 });
    await writePrivateKeyFile(keyPath, { ...key.privateJwk, client_id: admin.spiffe_id });
    await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600, flag: "wx" });
    return { config, admin, admin_key_file: keyPath };
  } finally {
    await broker.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
