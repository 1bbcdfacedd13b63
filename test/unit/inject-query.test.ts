import { test } from "node:test";
import assert from "node:assert/strict";
import { withInjectedQuery } from "../../src/gateway/http/inject.js";

const key: [string, string][] = [["api_key", "s3cret value"]];

test("agent parameters forwarded byte for byte", () => {
  assert.equal(withInjectedQuery("a=b%20c;d&e=%zz&f=1+2", key), "a=b%20c;d&e=%zz&f=1+2&api_key=s3cret+value");
});

test("agent's copy of injected name dropped", () => {
  assert.equal(withInjectedQuery("api_key=mine&page=2", key), "page=2&api_key=s3cret+value");
});

test("injected name matched without case or encoding", () => {
  assert.equal(
    withInjectedQuery("API_KEY=mine&api%5Fkey=x&Api_Key&page=2", key),
    "page=2&api_key=s3cret+value",
  );
});

test("empty query gets only injected parameters", () => {
  assert.equal(withInjectedQuery("", key), "api_key=s3cret+value");
  assert.equal(withInjectedQuery("&&", key), "api_key=s3cret+value");
});
