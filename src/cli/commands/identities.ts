import type { Command } from "commander";
import { generateIdentityKey, reservePrivateKeyFile, type KeyAlgorithm } from "../../identity/keys.js";
import type { Agent } from "../../identity/agents.js";
import type { Human } from "../../identity/humans.js";
import { collect, emit, printable, table } from "../output.js";
import { run } from "../run.js";

/** Registers `writ agent …` and `writ human …`. */
export function registerIdentityCommands(program: Command): void {
  const agent = program.command("agent").description("register and manage agents");

  agent
    .command("add <name>")
    .description("register an agent with its own key pair; the private key goes to --key-out")
    .requiredOption("--owner <owner>", "the accountable owner: a person or team")
    .requiredOption("--env <environment>", "the agent's environment, such as dev or prod")
    .option("--key-out <file>", "where to write the agent's private JWK (mode 0600, must not exist)")
    .option("--alg <alg>", "key type: Ed25519 or ES256", "Ed25519")
    .option("--federated", "register without a key; attest with a federated binding (see agent bind)")
    .action(
      (
        name: string,
        flags: { owner: string; env: string; keyOut?: string; alg: string; federated?: boolean },
      ) =>
        run(program, async (target, options) => {
          if (flags.alg !== "Ed25519" && flags.alg !== "ES256")
            throw new Error(`invalid --alg "${flags.alg}": use Ed25519 or ES256`);
          if (flags.federated === true && flags.keyOut !== undefined) {
            throw new Error(
              "--federated registers no key, so --key-out has nothing to write; give one or the other",
            );
          }
          if (flags.federated !== true && flags.keyOut === undefined) {
            throw new Error(
              "give --key-out FILE for the agent's private key, or --federated for a key-less agent",
            );
          }
          const key =
            flags.federated === true ? undefined : await generateIdentityKey(flags.alg as KeyAlgorithm);
          const file =
            key === undefined || flags.keyOut === undefined
              ? undefined
              : await reservePrivateKeyFile(flags.keyOut);
          let created: Agent;
          try {
            created = await target.client.call<Agent>("POST", "/v1/agents", {
              name,
              owner: flags.owner,
              environment: flags.env,
              ...(key === undefined ? {} : { public_jwk: key.publicJwk }),
            });
          } catch (error) {
            await file?.abandon();
            throw error;
          }
          if (key !== undefined) await file?.write({ ...key.privateJwk, client_id: created.spiffe_id });
          emit(options, { ...created, client_id: created.spiffe_id, key_file: flags.keyOut ?? null }, () => [
            `agent ${created.name} added: client_id ${created.spiffe_id}`,
            ...(flags.keyOut === undefined ? [] : [`private key written to ${flags.keyOut}`]),
          ]);
        }),
    );

  agent
    .command("list")
    .description("list agents")
    .action(() =>
      run(program, async (target, options) => {
        const { agents } = await target.client.call<{ agents: Agent[] }>("GET", "/v1/agents");
        emit(options, { agents }, () =>
          table(
            ["NAME", "STATUS", "ENV", "OWNER", "ATTESTATION"],
            agents.map((a) => [a.name, a.status, a.environment, a.owner, a.attestation]),
          ),
        );
      }),
    );

  agent
    .command("show <name>")
    .description("show one agent and its federated bindings")
    .action((name: string) =>
      run(program, async (target, options) => {
        const shown = await target.client.call<Agent & { bindings: unknown[] }>(
          "GET",
          `/v1/agents/${encodeURIComponent(name)}`,
        );
        emit(options, shown, () => [
          `name         ${printable(shown.name)}`,
          `client_id    ${printable(shown.spiffe_id)}`,
          `status       ${shown.status}`,
          `environment  ${printable(shown.environment)}`,
          `owner        ${printable(shown.owner)}`,
          `attestation  ${shown.attestation}${shown.jkt === null ? "" : ` (key ${shown.jkt})`}`,
          `bindings     ${shown.bindings.length}`,
        ]);
      }),
    );

  for (const verb of ["disable", "enable"] as const) {
    agent
      .command(`${verb} <name>`)
      .description(verb === "disable" ? "disable an agent: it gets no new token" : "enable a disabled agent")
      .action((name: string) =>
        run(program, async (target, options) => {
          const changed = await target.client.call<Agent>(
            "POST",
            `/v1/agents/${encodeURIComponent(name)}/${verb}`,
          );
          emit(options, changed, () => [`agent ${changed.name} is ${changed.status}`]);
        }),
      );
  }

  agent
    .command("bind <name>")
    .description("bind an agent to an external issuer (Kubernetes, GitHub Actions, SPIRE, OIDC)")
    .requiredOption("--kind <kind>", "kubernetes, github, spire or oidc")
    .option("--issuer <url>", "the expected iss")
    .requiredOption("--audience <aud>", "the expected aud")
    .option("--jwks-url <url>", "where the issuer's JWKS (or SPIFFE bundle) is served")
    .option("--jwks-file <file>", "a file holding the issuer's JWKS (or SPIFFE bundle)")
    .option("--claim <name=value>", "an exact claim to match; repeat for each", collect, [])
    .action(
      (
        name: string,
        flags: {
          kind: string;
          issuer?: string;
          audience: string;
          jwksUrl?: string;
          jwksFile?: string;
          claim: string[];
        },
      ) =>
        run(program, async (target, options) => {
          const claims: Record<string, string> = {};
          for (const entry of flags.claim) {
            const separator = entry.indexOf("=");
            if (separator < 1) throw new Error(`invalid --claim "${entry}": use NAME=VALUE`);
            claims[entry.slice(0, separator)] = entry.slice(separator + 1);
          }
          const binding = await target.client.call<{ id: string }>(
            "POST",
            `/v1/agents/${encodeURIComponent(name)}/bindings`,
            {
              kind: flags.kind,
              ...(flags.issuer === undefined ? {} : { issuer: flags.issuer }),
              audience: flags.audience,
              ...(flags.jwksUrl === undefined ? {} : { jwksUrl: flags.jwksUrl }),
              ...(flags.jwksFile === undefined ? {} : { jwksFile: flags.jwksFile }),
              claims,
            },
          );
          emit(options, binding, () => [`binding ${binding.id} added to agent ${name}`]);
        }),
    );

  const human = program.command("human").description("register people: admins, approvers, auditors");

  human
    .command("add <display-name>")
    .description("register a person with their own key pair; the private key goes to --key-out")
    .requiredOption("--key-out <file>", "where to write the person's private JWK (mode 0600, must not exist)")
    .option("--role <role>", "admin, approver or auditor; repeat for several", collect, [])
    .option("--email <email>", "an e-mail address, kept as an attribute")
    .action((displayName: string, flags: { keyOut: string; role: string[]; email?: string }) =>
      run(program, async (target, options) => {
        const key = await generateIdentityKey("Ed25519");
        const file = await reservePrivateKeyFile(flags.keyOut);
        let created: Human;
        try {
          created = await target.client.call<Human>("POST", "/v1/humans", {
            display_name: displayName,
            roles: flags.role,
            email: flags.email ?? null,
            public_jwk: key.publicJwk,
          });
        } catch (error) {
          await file.abandon();
          throw error;
        }
        await file.write({ ...key.privateJwk, client_id: created.spiffe_id });
        emit(options, { ...created, client_id: created.spiffe_id, key_file: flags.keyOut }, () => [
          `person ${printable(created.display_name)} added: ${created.spiffe_id}`,
          `private key written to ${flags.keyOut}`,
        ]);
      }),
    );

  human
    .command("list")
    .description("list people")
    .action(() =>
      run(program, async (target, options) => {
        const { humans } = await target.client.call<{ humans: Human[] }>("GET", "/v1/humans");
        emit(options, { humans }, () =>
          table(
            ["ID", "NAME", "ROLES", "STATUS"],
            humans.map((h) => [h.spiffe_id, h.display_name, h.roles.join(","), h.status]),
          ),
        );
      }),
    );
}
