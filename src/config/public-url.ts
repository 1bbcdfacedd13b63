/** Hosts that count as loopback, where plain http is allowed. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Checks the configured public URL: absolute, https unless the host is loopback, and with no query,
 * fragment or credentials, since it becomes the issuer and the base of every endpoint URL.
 */
export function checkPublicUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`invalid public URL "${value}": not an absolute URL`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
    throw new Error(`invalid public URL "${value}": use https unless the host is loopback`);
  }
  // `search` and `hash` are empty for a bare `?` or `#`, which `href` keeps, so `href` is checked.
  if (url.href.includes("?") || url.href.includes("#") || url.username !== "" || url.password !== "") {
    throw new Error(`invalid public URL "${value}": no query, fragment or credentials allowed`);
  }
  return url;
}

/** Returns the public URL without a trailing slash, the form used as issuer and as endpoint base. */
export function normalisePublicUrl(value: string): string {
  return checkPublicUrl(value).href.replace(/\/+$/, "");
}
