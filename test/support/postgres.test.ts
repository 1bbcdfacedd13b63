import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import pg from "pg";

import { startPostgres, type PostgresCluster } from "./postgres.js";

let cluster: PostgresCluster;

before(async () => {
  cluster = await startPostgres();
});

after(async () => {
  await cluster?.stop();
});

async function queryOne<T>(connection: string | pg.ClientConfig, sql: string): Promise<T | undefined> {
  const client = new pg.Client(connection);
  await client.connect();
  try {
    const result = await client.query(sql);
    return result.rows[0] as T | undefined;
  } finally {
    await client.end();
  }
}

test("cluster exposes loopback connection settings", () => {
  assert.equal(cluster.host, "127.0.0.1");
  assert.equal(cluster.user, "postgres");
  assert.equal(cluster.database, "postgres");
  assert.ok(cluster.port > 0, `port ${cluster.port} should be positive`);
  assert.ok(cluster.port < 65536, `port ${cluster.port} should be below 65536`);
  assert.ok(cluster.password.length >= 32, "password should be long and random");
  assert.equal(
    cluster.url,
    `postgres://postgres:${encodeURIComponent(cluster.password)}@127.0.0.1:${cluster.port}/postgres`,
  );
  assert.ok(existsSync(cluster.dataDir), `data directory ${cluster.dataDir} missing`);
});

test("password connection over TCP succeeds", async () => {
  const row = await queryOne<{ user: string; addr: string | null }>(
    cluster.url,
    "select current_user as user, inet_server_addr()::text as addr",
  );
  assert.equal(row?.user, "postgres");
  // A Unix socket connection would report a null server address.
  assert.equal(row?.addr, "127.0.0.1/32");
});

test("wrong password fails with 28P01", async () => {
  const client = new pg.Client({
    host: cluster.host,
    port: cluster.port,
    user: cluster.user,
    database: cluster.database,
    password: `${cluster.password}-wrong`,
  });
  await assert.rejects(client.connect(), (error: { code?: string }) => {
    assert.equal(error.code, "28P01");
    return true;
  });
});

test("clusters use distinct random passwords", async () => {
  const second = await startPostgres();
  try {
    assert.notEqual(second.password, cluster.password);
    assert.notEqual(second.port, cluster.port);
    assert.notEqual(second.dataDir, cluster.dataDir);
  } finally {
    await second.stop();
  }
});

test("createDatabase returns a working URL", async () => {
  const url = await cluster.createDatabase("writ_helper_check");
  assert.match(url, /\/writ_helper_check$/);
  const row = await queryOne<{ name: string }>(url, "select current_database() as name");
  assert.equal(row?.name, "writ_helper_check");
});

test("createDatabase rejects an invalid name", async () => {
  await assert.rejects(cluster.createDatabase(""), /Invalid database name/);
  await assert.rejects(cluster.createDatabase("x".repeat(64)), /Invalid database name/);
});

test("stopServer and startServer keep data", async () => {
  const url = await cluster.createDatabase("writ_restart_check");
  await queryOne(url, "create table note (body text)");
  await queryOne(url, "insert into note values ('kept')");

  await cluster.stopServer();
  await assert.rejects(queryOne(url, "select 1"), (error: { code?: string }) => {
    assert.equal(error.code, "ECONNREFUSED");
    return true;
  });
  // A second stop of a stopped server is a no-op.
  await cluster.stopServer();

  await cluster.startServer();
  const row = await queryOne<{ body: string }>(url, "select body from note");
  assert.equal(row?.body, "kept");

  await cluster.restart();
  const afterRestart = await queryOne<{ body: string }>(url, "select body from note");
  assert.equal(afterRestart?.body, "kept");
});

test("stop removes the folder and is idempotent", async () => {
  const throwaway = await startPostgres();
  await throwaway.stop();
  assert.equal(existsSync(throwaway.dataDir), false);
  await throwaway.stop();
  await assert.rejects(queryOne(throwaway.url, "select 1"), (error: { code?: string }) => {
    assert.equal(error.code, "ECONNREFUSED");
    return true;
  });
  await assert.rejects(throwaway.startServer(), /already removed the cluster/);
});
