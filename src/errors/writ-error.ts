import { errorCodes, type ErrorCode } from "./codes.js";

/**
 * A domain error: a bad token, proof, assertion or request. `code` and `description` go on the wire;
 * `detail` carries the precise reason for the log and the audit event and is never sent to the caller.
 */
export class WritError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly description: string;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, description: string, options: { detail?: string; cause?: unknown } = {}) {
    super(`${code}: ${description}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "WritError";
    this.code = code;
    this.status = errorCodes[code].status;
    this.description = description;
    this.detail = options.detail;
  }
}

export function isWritError(value: unknown): value is WritError {
  return value instanceof WritError;
}
