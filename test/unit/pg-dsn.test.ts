import assert from "node:assert/strict";
import { test } from "node:test";
import { WritError } from "../../src/errors/writ-error.js";
import { cleanupBackoffMs, cleanupRetryMaxMs } from "../../src/leases/worker.js";
import { connectionUrl, parseDsn } from "../../src/systems/dsn.js";

test("DSN parts", () => {
  assert.deepEqual(parseDsn("postgres://writ_admin@db.internal:6543/app"), {
    host: "db.internal",
    port: 6543,
    database: "app",
    user: "writ_admin",
    sslmode: "disable",
  });
  assert.deepEqual(parseDsn("postgresql://writ%20admin@[::1]/my%20db?sslmode=verify-full"), {
    host: "::1",
    port: 5432,
    database: "my db",
    user: "writ admin",
    sslmode: "verify-full",
  });
});

test("DSN rejections", () => {
  for (const text of [
    "postgres://writ_admin:secret@db/app",
    "mysql://writ_admin@db/app",
    "postgres://db/app",
    "postgres://writ_admin@db/",
    "postgres://writ_admin@db/app?sslmode=prefer",
    "postgres://writ_admin@db/app?password=x",
    "not a url",
  ]) {
    assert.throws(
      () => parseDsn(text),
      (error: unknown) => error instanceof WritError && error.code === "invalid_request",
      text,
    );
  }
});

test("connection URL has no password", () => {
  const dsn = parseDsn("postgres://writ_admin@[::1]:5433/app?sslmode=require");
  assert.equal(connectionUrl(dsn, "writ_1"), "postgres://writ_1@[::1]:5433/app?sslmode=require");
});

test("cleanup backoff doubles up to the cap", () => {
  assert.deepEqual([1, 2, 3, 4].map(cleanupBackoffMs), [1000, 2000, 4000, 8000]);
  assert.equal(cleanupBackoffMs(20), cleanupRetryMaxMs);
  assert.equal(cleanupBackoffMs(1000), cleanupRetryMaxMs);
});

test("DSN errors never repeat a password", () => {
  for (const dsn of [
    "postgres://writ_admin:Leaky-Pass-77@127.0.0.1:99999/app",
    "postgres://writ_admin@127.0.0.1/app?password=Leaky-Pass-77",
    "postgres://:Leaky-Pass-77@127.0.0.1/app",
    "not a url Leaky-Pass-77",
  ]) {
    assert.throws(
      () => parseDsn(dsn),
      (error: Error) =>
        !error.message.includes("Leaky-Pass-77") &&
        !String((error as { description?: string }).description).includes("Leaky-Pass-77"),
    );
  }
});
