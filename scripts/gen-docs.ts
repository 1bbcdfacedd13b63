// Generates docs/configuration.md from the configuration schema and docs/errors.md from the error
// code registry. Usage: node --import tsx scripts/gen-docs.ts
// test/unit/docs-sync.test.ts fails when the committed files differ from what this script renders.

import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as prettier from "prettier";
import { configFileName, configSchema, parseConfig } from "../src/config/config.js";
import { errorCodes } from "../src/errors/codes.js";

const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

export const configurationDocPath = join(repositoryRoot, "docs", "configuration.md");
export const errorsDocPath = join(repositoryRoot, "docs", "errors.md");

export const regenerateCommand = "node --import tsx scripts/gen-docs.ts";

type KeySpec = (typeof configSchema)[keyof typeof configSchema];

/** Renders docs/configuration.md: where the file lives, its rules, and one table row per key. */
export async function renderConfigurationDoc(): Promise<string> {
  const rows = Object.entries(configSchema).map(([key, spec]) => [
    `\`${key}\``,
    typeName(spec),
    unitOf(key),
    defaultText(spec),
    rangeText(spec),
    spec.doc,
  ]);

  const example = exampleConfig();
  // The example must itself be a valid configuration, or the page would teach a broken file.
  parseConfig(example, "the example in docs/configuration.md");

  const text = `${generatedNotice("src/config/config.ts")}

# Configuration

Each writ installation keeps its configuration in one JSON file, \`${configFileName}\`, in its data
directory. The data directory is \`--data\` when given, else \`$WRIT_DATA\`, else
\`$XDG_DATA_HOME/writ\`, else \`~/.local/share/writ\`. \`writ init\` creates the file with mode 0600
and writes every key, defaults included. \`writ server\` and every CLI command that opens the broker
in-process read the file when they start, so a running server sees a change only after a restart.

## Rules

- The file holds one JSON object. A key that is not in the table below is rejected, so a misspelt
  key stops the program instead of being ignored.
- A key that is absent or \`null\` takes its default. \`trust_domain\` and \`public_url\` have no
  default; \`writ init\` always writes them.
- Loading stops at the first key of the wrong type or out of range, with a message that names the
  file and the key, such as
  \`invalid configuration in /home/ops/.local/share/writ/${configFileName}: "access_token_ttl_seconds" must be at most 3600\`.
- \`trust_domain\` must be a SPIFFE trust domain: 1 to 255 lowercase letters, digits, \`.\`, \`-\`
  and \`_\`.
- \`public_url\` must be an absolute URL with no query, fragment or credentials. It must use https
  unless its host is loopback (\`localhost\`, \`127.0.0.0/8\` or \`::1\`). A trailing slash is
  dropped when the URL becomes the issuer.
- \`tls_cert\` and \`tls_key\` are set together or not at all.
- \`writ server --listen\`, \`--tls-cert\` and \`--tls-key\` override \`listen\`, \`tls_cert\` and
  \`tls_key\` for one run. Without TLS the server refuses to listen on a host that is not loopback.
- Identities keep the SPIFFE IDs they were created with. Changing \`trust_domain\` or
  \`public_url\` later does not rewrite stored identities or tool resource URIs.

## Keys

${markdownTable(["Key", "Type", "Unit", "Default", "Range", "Meaning"], rows)}

## Example

The file \`writ init --trust-domain example.org\` writes, with every default:

\`\`\`json
${JSON.stringify(example, null, 2)}
\`\`\`

## PostgreSQL

With \`"store": {"kind": "postgres", "url_env": "WRIT_DATABASE_URL"}\` the broker reads the
connection string from the environment variable \`WRIT_DATABASE_URL\` each time it opens the store,
so the password never appears in \`${configFileName}\`. A missing or empty variable stops the
program with a message naming it. \`writ init --store-url-env VAR\` writes this form.
`;
  return formatMarkdown(text, configurationDocPath);
}

/** Renders docs/errors.md: how errors travel, and one table row per registered code. */
export async function renderErrorsDoc(): Promise<string> {
  const rows = Object.entries(errorCodes).map(([code, entry]) => [
    `\`${code}\``,
    String(entry.status),
    sentence(entry.summary),
  ]);

  const text = `${generatedNotice("src/errors/codes.ts")}

# Errors

## What the caller sees

Every error response of the HTTP server has the same JSON body:

\`\`\`json
{
  "error": "invalid_request",
  "error_description": "parameter \\"grant_type\\" is missing",
  "request_id": "5f0c2a64-3d2e-4d8e-9d51-0c6f1f7e2b9a"
}
\`\`\`

\`error\` is one of the codes below; where an OAuth RFC defines a code for the case, writ uses it.
\`error_description\` is a short sentence for the caller. \`request_id\` is a UUID the server
generates for each request; it never takes one from a request header. Error responses carry
\`Cache-Control: no-store\`, except the 404 for a path the server does not serve.

## What the operator sees

The precise reason for a refusal (which check failed, on which key, binding or claim) never goes on
the wire, so a caller cannot use the answers to probe the broker. The server log records it with
the same \`request_id\`: refusals at level \`info\`, errors with status 500 or more at level
\`error\` together with their cause. A refused token request is also written to the audit log as a
\`token.refused\` event with the code, the description, the detail, the claimed client id and the
request id.

## Status codes

- **400** marks a malformed or unacceptable request. At the token endpoint this includes a bad DPoP
  proof (\`invalid_dpop_proof\`) and a missing or stale server nonce (\`use_dpop_nonce\`, sent with a
  fresh \`DPoP-Nonce\` header), as RFC 9449 sections 5 and 8 describe.
- **401** marks a caller that is not authenticated. At the token, introspection and revocation
  endpoints, failed client authentication is \`invalid_client\`. The admin API under \`/v1/\`
  answers a missing, malformed, expired or revoked access token (\`invalid_token\`) and a bad DPoP
  proof (\`invalid_dpop_proof\`) with 401 and a challenge of the form
  \`WWW-Authenticate: DPoP error="invalid_token", error_description="…", algs="…"\` (RFC 9449
  section 7.1). A \`use_dpop_nonce\` there is also 401, with a \`DPoP-Nonce\` header.
- **403** marks a caller whose token or client authentication is valid but who is not allowed to
  make the request: an admin API call without the needed role, or an introspection request by
  anyone but an admin (\`access_denied\`).
- **404** marks an object that does not exist, and any path the server does not serve.
- **409** marks an object that already exists or whose state forbids the change, such as ending a
  task that has already ended.
- **500** and **503** mark faults of the broker or of a dependency; retry \`temporarily_unavailable\`
  later.

## Not found and not authorized read the same

A caller learns nothing about objects it may not use:

- The admin API checks the caller's role before it looks anything up, so a caller without the role
  gets 403 whether the object exists or not.
- The token endpoint answers an unknown client and a disabled agent with the same
  \`invalid_client\`, and an unknown task, another agent's task and an ended task with the same
  \`invalid_authorization_details\`. The JWT bearer grant answers an unknown or disabled agent, an
  agent without bindings and an assertion that matches no binding with the same \`invalid_grant\`.
- The revocation endpoint answers unknown tokens, invalid tokens and other clients' tokens with the
  same empty 200 (RFC 7009).
- Introspection answers every token that is not active with \`{"active": false}\` (RFC 7662).

## The CLI

A failed \`writ\` command prints \`writ: <error_description>\` on standard error, followed by
\`(request <request_id>)\` when the server sent one, and exits with status 1. With \`--json\` it also
prints \`{"error": "<code>", "error_description": "…"}\` on standard output; errors raised by the CLI
itself, such as an unreadable key file or a refused connection, have the code \`error\`.

## Codes

The registry in \`src/errors/codes.ts\` defines these codes. The status is the one sent unless the
rules above say otherwise.

${markdownTable(["Code", "HTTP status", "Meaning"], rows)}
`;
  return formatMarkdown(text, errorsDocPath);
}

function generatedNotice(source: string): string {
  return `<!-- Generated from ${source} by scripts/gen-docs.ts. Edit the source and run: ${regenerateCommand} -->`;
}

function typeName(spec: KeySpec): string {
  switch (spec.type) {
    case "string":
      return "string";
    case "integer":
      return "integer";
    case "boolean":
      return "boolean";
    case "path":
      return "path or `null`";
    case "algorithm":
      return '`"Ed25519"` or `"ES256"`';
    case "store":
      return "object";
    case "urls":
      return "array of URLs";
  }
}

/** Returns the unit a key's name declares by its suffix, or "–" for a key without one. */
function unitOf(key: string): string {
  if (key.endsWith("_seconds")) return "seconds";
  if (key.endsWith("_ms")) return "milliseconds";
  if (key.endsWith("_bytes")) return "bytes";
  return "–";
}

function defaultText(spec: KeySpec): string {
  if (spec.default === "required") return "required";
  return `\`${JSON.stringify(spec.default)}\``;
}

function rangeText(spec: KeySpec): string {
  const { min, max } = spec;
  if (min !== undefined && max !== undefined) return `${min} to ${max}`;
  if (min !== undefined) return `at least ${min}`;
  if (max !== undefined) return `at most ${max}`;
  return "–";
}

/** Builds the configuration `writ init --trust-domain example.org` writes: every default filled in. */
function exampleConfig(): Record<string, unknown> {
  const example: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(configSchema)) example[key] = spec.default;
  example.trust_domain = "example.org";
  example.public_url = `http://${String(configSchema.listen.default)}`;
  return example;
}

function sentence(text: string): string {
  const capitalised = `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
  return capitalised.endsWith(".") ? capitalised : `${capitalised}.`;
}

function markdownTable(header: string[], rows: string[][]): string {
  const escape = (cell: string): string => cell.replaceAll("|", "\\|").replaceAll("\n", " ");
  const lines = [
    `| ${header.map(escape).join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.map(escape).join(" | ")} |`),
  ];
  return lines.join("\n");
}

/**
 * Formats with the repository's Prettier settings, so that `prettier --check .` accepts the files
 * as generated and the docs-sync test compares like with like.
 */
async function formatMarkdown(text: string, path: string): Promise<string> {
  const options = (await prettier.resolveConfig(path)) ?? {};
  return prettier.format(text, { ...options, filepath: path });
}

async function main(): Promise<void> {
  await writeFile(configurationDocPath, await renderConfigurationDoc());
  await writeFile(errorsDocPath, await renderErrorsDoc());
  console.log(`wrote ${configurationDocPath} and ${errorsDocPath}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
