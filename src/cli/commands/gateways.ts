import { createHash, X509Certificate } from "node:crypto";
import { closeOnSignals } from "../signals.js";
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { generateIdentityKey, reservePrivateKeyFile } from "../../identity/keys.js";
import type { RegisteredGateway } from "../../identity/gateways.js";
import { createLogger } from "../../log/logger.js";
import { runStandaloneGateway } from "../../gateway/standalone.js";
import { emit, table } from "../output.js";
import { fail, run } from "../run.js";
import { dataDirectory, type GlobalOptions } from "../target.js";

/** Registers `writ gateway` (run a separate gateway) and `writ gateway add|disable|enable|list`. */
export function registerGatewayCommands(program: Command): void {
  const gateway = program
    .command("gateway")
    .description("run a gateway apart from the broker, or register one (gateway add)")
    .option("--broker <url>", "the broker's URL")
    .option("--key <file>", "the gateway's private key file, from gateway add")
    .option("--listen <host:port>", "where the gateway listens", "127.0.0.1:7401")
    .option("--public-url <url>", "the URL agents reach this gateway at (default http://LISTEN)")
    .option(
      "--silence-bound <seconds>",
      "deny every request after this long without hearing the revocation feed",
      "30",
    )
    .action(
      async (flags: {
        broker?: string;
        key?: string;
        listen: string;
        publicUrl?: string;
        silenceBound: string;
      }) => {
        const options = program.opts<GlobalOptions>();
        const log = createLogger();
        try {
          if (flags.broker === undefined || flags.key === undefined) {
            throw new Error(
              "give --broker URL and --key FILE to run a gateway, or use gateway add NAME to register one",
            );
          }
          const running = await runStandaloneGateway({
            brokerUrl: flags.broker,
            keyFile: flags.key,
            listen: flags.listen,
            ...(flags.publicUrl === undefined ? {} : { publicUrl: flags.publicUrl }),
            dataDir: dataDirectory(options),
            silenceBoundSeconds: Number(flags.silenceBound),
            log,
          });
          closeOnSignals(log, () => running.close());
        } catch (error) {
          log.error({ err: error }, "gateway failed to start");
          fail(options, error);
        }
      },
    );

  gateway
    .command("add <name>")
    .description("register a gateway as an identity of its own; its private key goes to --key-out")
    .requiredOption(
      "--key-out <file>",
      "where to write the gateway's private JWK (mode 0600, must not exist)",
    )
    .option("--tls-cert <file>", "the PEM client certificate it presents to the decision API over mutual TLS")
    .option("--public-url <url>", "the URL agents reach it at, for DPoP htu checks by the decision API")
    .action((name: string, flags: { keyOut: string; tlsCert?: string; publicUrl?: string }) =>
      run(program, async (target, options) => {
        // `writ gateway` has a --public-url of its own, and the parser gives a value written after
        // `add` to that parent option, so the value is read from either.
        const publicUrl = flags.publicUrl ?? gateway.opts<{ publicUrl?: string }>().publicUrl;
        const fingerprint =
          flags.tlsCert === undefined
            ? null
            : createHash("sha256")
                .update(new X509Certificate(await readFile(flags.tlsCert)).raw)
                .digest("hex");
        const key = await generateIdentityKey("Ed25519");
        const file = await reservePrivateKeyFile(flags.keyOut);
        let created: RegisteredGateway;
        try {
          created = await target.client.call<RegisteredGateway>("POST", "/v1/gateways", {
            name,
            public_jwk: key.publicJwk,
            tls_cert_sha256: fingerprint,
            public_url: publicUrl ?? null,
          });
        } catch (error) {
          await file.abandon();
          throw error;
        }
        await file.write({ ...key.privateJwk, client_id: created.spiffe_id });
        emit(options, { ...created, client_id: created.spiffe_id, key_file: flags.keyOut }, () => [
          `gateway ${created.name} added: ${created.spiffe_id}`,
          `private key written to ${flags.keyOut}`,
        ]);
      }),
    );

  for (const [verb, description] of [
    ["disable", "disable a gateway: its tokens stop working at the broker, and it gets no new one"],
    ["enable", "enable a disabled gateway again"],
  ] as const) {
    gateway
      .command(`${verb} <name>`)
      .description(description)
      .action((name: string) =>
        run(program, async (target, options) => {
          const changed = await target.client.call<RegisteredGateway>(
            "POST",
            `/v1/gateways/${encodeURIComponent(name)}/${verb}`,
          );
          emit(options, changed, () => [`gateway ${changed.name} ${changed.status}`]);
        }),
      );
  }

  gateway
    .command("list")
    .description("list registered gateways")
    .action(() =>
      run(program, async (target, options) => {
        const { gateways } = await target.client.call<{ gateways: RegisteredGateway[] }>(
          "GET",
          "/v1/gateways",
        );
        emit(options, { gateways }, () =>
          table(
            ["NAME", "ID", "STATUS", "MTLS", "PUBLIC URL"],
            gateways.map((g) => [
              g.name,
              g.spiffe_id,
              g.status,
              g.tls_cert_sha256 === null ? "no" : "yes",
              g.public_url ?? "",
            ]),
          ),
        );
      }),
    );
}
