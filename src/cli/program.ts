import { Command } from "commander";
import { closeOnSignals } from "./signals.js";
import { initialise } from "../broker/init.js";
import { createLogger } from "../log/logger.js";
import { serve } from "../server/serve.js";
import { registerApprovalCommands } from "./commands/approvals.js";
import { registerAuditCommands } from "./commands/audit.js";
import { registerPolicyCommands } from "./commands/policies.js";
import { registerGatewayCommands } from "./commands/gateways.js";
import { registerDemoCommand } from "./commands/demo.js";
import { registerIdentityCommands } from "./commands/identities.js";
import { registerTaskCommands } from "./commands/tasks.js";
import { registerScanCommand } from "./commands/scan.js";
import { registerSystemCommands } from "./commands/systems.js";
import { registerLeaseCommands } from "./commands/leases.js";
import { registerAccountCommands } from "./commands/accounts.js";
import { emit } from "./output.js";
import { fail } from "./run.js";
import { dataDirectory, type GlobalOptions } from "./target.js";

/**
 * Builds the `writ` command tree without parsing anything, so that tests can inspect every command
 * and option. Each call returns a new program.
 */
export function buildProgram(): Command {
  const program = new Command("writ")
    .description("per-agent identities and task-bound, DPoP-bound credentials for AI agents")
    .option("--data <dir>", "the data directory (default: $WRIT_DATA, else ~/.local/share/writ)")
    .option("--url <url>", "act through the server at this URL")
    .option(
      "--admin-key <file>",
      "your private key file (default: $WRIT_ADMIN_KEY, else ~/.config/writ/admin-key.json)",
    )
    .option("--json", "print one JSON document")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text) });

  program
    .command("init")
    .description("create an installation and its first admin")
    .requiredOption("--trust-domain <domain>", "the SPIFFE trust domain, such as example.org")
    .option("--public-url <url>", "the URL agents reach writ at (https unless loopback)")
    .option("--listen <host:port>", "where `writ server` listens", "127.0.0.1:7400")
    .option("--admin-name <name>", "the first admin's display name", process.env.USER ?? "admin")
    .option("--admin-email <email>", "the first admin's e-mail, kept as an attribute")
    .option(
      "--admin-key-out <file>",
      "where to write the admin's private key (default ~/.config/writ/admin-key.json)",
    )
    .option(
      "--store-url-env <var>",
      "use PostgreSQL, reading its connection string from this environment variable",
    )
    .action(
      async (flags: {
        trustDomain: string;
        publicUrl?: string;
        listen: string;
        adminName: string;
        adminEmail?: string;
        adminKeyOut?: string;
        storeUrlEnv?: string;
      }) => {
        const options = program.opts<GlobalOptions>();
        try {
          const result = await initialise({
            dataDir: dataDirectory(options),
            trustDomain: flags.trustDomain,
            listen: flags.listen,
            adminName: flags.adminName,
            ...(flags.publicUrl === undefined ? {} : { publicUrl: flags.publicUrl }),
            ...(flags.adminEmail === undefined ? {} : { adminEmail: flags.adminEmail }),
            ...(flags.adminKeyOut === undefined ? {} : { adminKeyOut: flags.adminKeyOut }),
            ...(flags.storeUrlEnv === undefined
              ? {}
              : { store: { kind: "postgres", url_env: flags.storeUrlEnv } }),
          });
          emit(
            options,
            {
              data: dataDirectory(options),
              issuer: result.config.public_url,
              admin: result.admin,
              admin_key_file: result.admin_key_file,
            },
            () => [
              `initialised ${dataDirectory(options)} for trust domain ${result.config.trust_domain}`,
              `issuer ${result.config.public_url}`,
              `admin ${result.admin.spiffe_id}, private key written to ${result.admin_key_file}`,
            ],
          );
        } catch (error) {
          fail(options, error);
        }
      },
    );

  program
    .command("server")
    .description("run the broker's server")
    .option(
      "--listen <host:port>",
      "address to bind (default: the configured listen address, 127.0.0.1:7400)",
    )
    .option("--tls-cert <file>", "PEM certificate chain; required off loopback")
    .option("--tls-key <file>", "PEM private key")
    .action(async (flags: { listen?: string; tlsCert?: string; tlsKey?: string }) => {
      const options = program.opts<GlobalOptions>();
      const log = createLogger();
      try {
        const server = await serve({
          dataDir: dataDirectory(options),
          log,
          ...(flags.listen === undefined ? {} : { listen: flags.listen }),
          ...(flags.tlsCert === undefined ? {} : { tlsCert: flags.tlsCert }),
          ...(flags.tlsKey === undefined ? {} : { tlsKey: flags.tlsKey }),
        });
        closeOnSignals(log, () => server.close());
      } catch (error) {
        log.error({ err: error }, "server failed to start");
        fail(options, error);
      }
    });

  registerIdentityCommands(program);
  registerTaskCommands(program);
  registerAuditCommands(program);
  registerPolicyCommands(program);
  registerGatewayCommands(program);
  registerDemoCommand(program);
  registerScanCommand(program);
  registerApprovalCommands(program);
  registerSystemCommands(program);
  registerLeaseCommands(program);
  registerAccountCommands(program);
  return program;
}
