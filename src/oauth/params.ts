import { WritError } from "../errors/writ-error.js";

/** Parameters of a form-encoded OAuth request; a name may appear several times. */
export type FormParams = Map<string, string[]>;

/** Parses an `application/x-www-form-urlencoded` body. */
export function parseForm(body: string): FormParams {
  const params: FormParams = new Map();
  for (const [name, value] of new URLSearchParams(body)) {
    const values = params.get(name);
    if (values === undefined) params.set(name, [value]);
    else values.push(value);
  }
  return params;
}

/**
 * Returns a parameter that must appear at most once (RFC 6749 section 3.2); a repeated one is
 * `invalid_request`.
 */
export function single(params: FormParams, name: string): string | undefined {
  const values = params.get(name);
  if (values === undefined) return undefined;
  if (values.length > 1)
    throw new WritError("invalid_request", `parameter "${name}" is given more than once`);
  return values[0];
}

export function required(params: FormParams, name: string): string {
  const value = single(params, name);
  if (value === undefined || value === "")
    throw new WritError("invalid_request", `parameter "${name}" is missing`);
  return value;
}
