import { test } from "node:test";
import assert from "node:assert/strict";
import { headerMismatch } from "../../src/gateway/mcp/headers.js";

const call = { method: "tools/call", params: { name: "echo", arguments: { message: "hi", count: 2 } } };

const cases: {
  name: string;
  headers: Record<string, string | string[]>;
  message: object;
  agrees: boolean;
}[] = [
  { name: "no headers", headers: {}, message: call, agrees: true },
  {
    name: "matching method and name",
    headers: { "mcp-method": "tools/call", "mcp-name": "echo" },
    message: call,
    agrees: true,
  },
  { name: "other method", headers: { "mcp-method": "tools/list" }, message: call, agrees: false },
  { name: "other name", headers: { "mcp-name": "get-env" }, message: call, agrees: false },
  {
    name: "repeated method",
    headers: { "mcp-method": ["tools/call", "tools/call"] },
    message: call,
    agrees: false,
  },
  { name: "matching param", headers: { "mcp-param-message": "hi" }, message: call, agrees: true },
  { name: "numeric param", headers: { "mcp-param-count": "2" }, message: call, agrees: true },
  { name: "other param value", headers: { "mcp-param-message": "bye" }, message: call, agrees: false },
  { name: "absent param", headers: { "mcp-param-path": "/etc" }, message: call, agrees: false },
  {
    name: "resource uri",
    headers: { "mcp-name": "demo://a" },
    message: { method: "resources/read", params: { uri: "demo://a" } },
    agrees: true,
  },
  { name: "name on list", headers: { "mcp-name": "x" }, message: { method: "tools/list" }, agrees: false },
  {
    name: "initialize version",
    headers: { "mcp-protocol-version": "2025-06-18" },
    message: { method: "initialize", params: { protocolVersion: "2025-11-25" } },
    agrees: false,
  },
];

for (const entry of cases) {
  test(`headers: ${entry.name}`, () => {
    assert.equal(headerMismatch(entry.headers, entry.message) === undefined, entry.agrees);
  });
}
