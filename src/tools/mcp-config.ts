import { WritError } from "../errors/writ-error.js";
import { secretNameProblem } from "../secrets/secrets.js";
import { parseInjectRule, type InjectRule } from "./http-config.js";

/** What an MCP action stands for: an MCP tool name, a resource URI pattern or a prompt name. */
export type McpTargetKind = "tool" | "resource" | "prompt";

export interface McpTarget {
  kind: McpTargetKind;
  /** The MCP tool or prompt name, or a resource URI pattern where `*` spans one segment and `**` any. */
  name: string;
}

/** The types an argument may take in the Cedar context; `path` values are resolved before Cedar sees them. */
export type ArgType = "string" | "long" | "path";

/** One argument of an MCP tool call that enters the action's Cedar context as `context.args.NAME`. */
export interface ArgDeclaration {
  name: string;
  type: ArgType;
}

/** A variable set in the environment of a stdio upstream; `${secret:NAME}` in the template is filled in. */
export interface EnvVariable {
  name: string;
  template: string;
  secrets: string[];
}

/** A variable pointed at a file in the task's private state folder, such as `MEMORY_FILE_PATH`. */
export interface StatePath {
  name: string;
  /** A file name inside the per-task state folder. */
  file: string;
}

/** What the gateway needs to reach an MCP tool: a command it starts per task, or a Streamable HTTP URL. */
export interface McpToolConfig {
  /** argv of a stdio server; `${task_dir}` in an element is replaced with the per-task working folder. */
  command?: string[];
  /** URL of a Streamable HTTP server. */
  upstream?: string;
  inject: InjectRule[];
  env: EnvVariable[];
  state_paths: StatePath[];
  /** The system user a stdio server runs as; without it, the broker's own user. */
  run_as?: string;
  /**
   * A registered system whose per-task credential a stdio server receives: `PGPASSWORD` in its
   * environment, and `${system_url}` in the command replaced by the role's password-less URL.
   */
  system?: string;
  /** Upstream request timeout, in milliseconds. */
  timeout_ms: number;
}

export const defaultMcpTimeoutMs = 60_000;

const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const argNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const userPattern = /^[a-z_][a-z0-9_-]{0,31}$/;
const systemNamePattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const secretReference = /\$\{secret:([^}]*)\}/g;
/** Variables the gateway sets itself, which a declaration may not replace. */
const reservedVariables = new Set(["PATH", "HOME", "TMPDIR"]);

/**
 * Parses an MCP action spec: `NAME` or `tool:NAME` for an MCP tool, `resource:URI-PATTERN`, or
 * `prompt:NAME`. Throws `invalid_request` naming the action.
 */
export function parseMcpTarget(action: string, spec: string): McpTarget {
  const colon = spec.indexOf(":");
  const prefix = colon === -1 ? "" : spec.slice(0, colon);
  if (prefix === "resource" || prefix === "prompt" || prefix === "tool") {
    const name = spec.slice(colon + 1);
    if (name === "" || /\s/.test(name)) {
      throw new WritError(
        "invalid_request",
        `invalid action "${action}=${spec}": the ${prefix} name is empty or has spaces`,
      );
    }
    return { kind: prefix, name };
  }
  if (spec === "" || /[\s:/]/.test(spec)) {
    throw new WritError(
      "invalid_request",
      `invalid action "${action}=${spec}": use NAME, tool:NAME, resource:URI-PATTERN or prompt:NAME`,
    );
  }
  return { kind: "tool", name: spec };
}

/** Parses `NAME:TYPE` with TYPE string, long or path. */
export function parseArgDeclaration(text: string): ArgDeclaration {
  const [name, type, ...rest] = text.split(":");
  if (name === undefined || !argNamePattern.test(name) || rest.length > 0) {
    throw new WritError(
      "invalid_request",
      `invalid argument "${text}": use NAME:TYPE with TYPE string, long or path`,
    );
  }
  if (type !== "string" && type !== "long" && type !== "path") {
    throw new WritError("invalid_request", `invalid argument type in "${text}": use string, long or path`);
  }
  return { name, type };
}

/** Validates the MCP part of a tool registration. */
export function parseMcpToolConfig(input: Record<string, unknown>): McpToolConfig {
  const hasCommand = input.command !== undefined;
  const hasUpstream = input.upstream !== undefined;
  if (hasCommand === hasUpstream) {
    throw new WritError("invalid_request", "an mcp tool needs exactly one of --command and --upstream");
  }
  const config: McpToolConfig = {
    inject: stringArray(input.inject, "inject").map(parseInjectRule),
    env: stringArray(input.env, "env").map(parseEnvVariable),
    state_paths: stringArray(input.state_paths, "state_paths").map(parseStatePath),
    timeout_ms: positiveInteger(input.timeout_ms, defaultMcpTimeoutMs, "timeout_ms"),
  };
  if (hasCommand) {
    const command = stringArray(input.command, "command");
    if (command.length === 0 || command[0] === "")
      throw new WritError("invalid_request", '"command" must name a program');
    // argv is visible to every user of the machine through the process table, so it never carries secrets.
    if (command.some((part) => part.includes("${secret:"))) {
      throw new WritError(
        "invalid_request",
        "the command may not name secrets: pass them with --env-var NAME='${secret:NAME}'",
      );
    }
    if (config.inject.length > 0)
      throw new WritError(
        "invalid_request",
        "--inject applies to --upstream tools: use --env-var for a command",
      );
    config.command = command;
  } else {
    config.upstream = parseUpstream(input.upstream);
    if (config.inject.some((rule) => rule.location === "query")) {
      throw new WritError(
        "invalid_request",
        "an mcp upstream takes header: and basic: injection rules, not query:",
      );
    }
    if (config.env.length > 0 || config.state_paths.length > 0) {
      throw new WritError("invalid_request", "--env-var and --state-path apply to --command tools");
    }
  }
  if (input.run_as !== undefined) {
    if (typeof input.run_as !== "string" || !userPattern.test(input.run_as) || !hasCommand) {
      throw new WritError(
        "invalid_request",
        `invalid run_as "${String(input.run_as)}": a user name, for --command tools`,
      );
    }
    config.run_as = input.run_as;
  }
  if (input.system !== undefined) {
    if (typeof input.system !== "string" || !systemNamePattern.test(input.system) || !hasCommand) {
      throw new WritError(
        "invalid_request",
        `invalid system "${String(input.system)}": a registered system's name, for --command tools`,
      );
    }
    if (config.env.some((entry) => entry.name === "PGPASSWORD")) {
      throw new WritError("invalid_request", "PGPASSWORD is set from the system's per-task credential");
    }
    config.system = input.system;
  }
  const names = [...config.env.map((entry) => entry.name), ...config.state_paths.map((entry) => entry.name)];
  const repeated = names.find((name, index) => names.indexOf(name) !== index);
  if (repeated !== undefined)
    throw new WritError("invalid_request", `environment variable "${repeated}" is declared twice`);
  return config;
}

function parseEnvVariable(text: string): EnvVariable {
  const equals = text.indexOf("=");
  const name = equals === -1 ? "" : text.slice(0, equals);
  if (!envNamePattern.test(name) || reservedVariables.has(name)) {
    throw new WritError(
      "invalid_request",
      `invalid environment variable "${text}": use NAME=VALUE, where VALUE may contain \${secret:NAME}; PATH, HOME and TMPDIR are set by the gateway`,
    );
  }
  const template = text.slice(equals + 1);
  const secrets = [...template.matchAll(secretReference)].map((match) => match[1] as string);
  for (const secret of secrets) {
    const problem = secretNameProblem(secret);
    if (problem !== undefined)
      throw new WritError("invalid_request", `invalid secret "${secret}" in "${text}": ${problem}`);
  }
  return { name, template, secrets };
}

function parseStatePath(text: string): StatePath {
  const equals = text.indexOf("=");
  const name = equals === -1 ? text : text.slice(0, equals);
  const file = equals === -1 ? name.toLowerCase() : text.slice(equals + 1);
  if (
    !envNamePattern.test(name) ||
    reservedVariables.has(name) ||
    !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(file)
  ) {
    throw new WritError(
      "invalid_request",
      `invalid state path "${text}": use VARIABLE or VARIABLE=FILE, with FILE a plain file name`,
    );
  }
  return { name, file };
}

function parseUpstream(value: unknown): string {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new WritError("invalid_request", `invalid upstream "${String(value)}": not an absolute URL`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.username !== "" || url.password !== "") {
    throw new WritError(
      "invalid_request",
      `invalid upstream "${String(value)}": use http or https, without credentials`,
    );
  }
  return url.href;
}

function stringArray(value: unknown, name: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((entry) => typeof entry === "string")) {
    throw new WritError("invalid_request", `"${name}" must be an array of strings`);
  }
  return value as string[];
}

function positiveInteger(value: unknown, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new WritError("invalid_request", `"${name}" must be a positive integer`);
  }
  return value;
}
