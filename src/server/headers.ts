import type { FastifyRequest } from "fastify";

/**
 * Returns every value of a request header field as received. Node joins repeated unknown fields with
 * a comma, which would hide a second `DPoP` or `Authorization` header; the raw list does not.
 */
export function headerValues(request: FastifyRequest, name: string): string[] {
  const raw = request.raw.rawHeaders;
  const values: string[] = [];
  for (let index = 0; index + 1 < raw.length; index += 2) {
    if ((raw[index] as string).toLowerCase() === name) values.push(raw[index + 1] as string);
  }
  return values;
}
