import { test } from "node:test";
import assert from "node:assert/strict";
import { PolicyEngine, type PolicyRequest } from "../../src/policy/engine.js";
import type { Tool } from "../../src/tools/registry.js";

const github = {
  name: "gh",
  kind: "http",
  environment: "prod",
  actions: [
    { name: "read", risk: "low" },
    { name: "deploy", risk: "high" },
  ],
} as unknown as Tool;
const memory = {
  name: "memory",
  kind: "mcp",
  environment: "prod",
  actions: [{ name: "read_graph", risk: "low" }],
} as unknown as Tool;

function request(
  tool: Tool,
  action: string,
  overrides: Partial<PolicyRequest["context"]> = {},
): PolicyRequest {
  const risk = tool.actions.find((entry) => `${tool.name}:${entry.name}` === action)?.risk ?? "low";
  return {
    principal: { type: "Agent", id: "spiffe://example.org/agent/bot" },
    action,
    tool,
    context: {
      intent: "triage",
      environment: "prod",
      deadline: 2_000_000_000,
      delegation_depth: 0,
      method: "GET",
      path: "/repos/acme/issues",
      risk,
      risk_score: 0,
      action_name: action,
      token_actions: [action],
      task_join: false,
      breakglass: false,
      ...overrides,
    },
  };
}

test("forbid on a tool kind group applies to that kind's actions", () => {
  const engine = new PolicyEngine();
  engine.load([github, memory], {
    "no-http-admin": `forbid (principal, action in Action::"kind:http", resource)
when { context.path like "/admin/*" };`,
  });
  const denied = engine.evaluate(request(github, "gh:read", { path: "/admin/users" }));
  assert.equal(denied.decision, "deny");
  assert.deepEqual(denied.policies, ["no-http-admin"]);
  assert.equal(engine.evaluate(request(github, "gh:read")).decision, "allow");
  // The MCP tool is not in the HTTP group.
  assert.equal(
    engine.evaluate(request(memory, "memory:read_graph", { path: "/admin/users" })).decision,
    "allow",
  );
});

test("forbid on a risk group applies even during break-glass", () => {
  const engine = new PolicyEngine();
  engine.load([github], {
    "no-high-risk": `forbid (principal, action in Action::"risk:high", resource);`,
  });
  const deploy = engine.evaluate(request(github, "gh:deploy", { breakglass: true }));
  assert.equal(deploy.decision, "deny");
  assert.deepEqual(deploy.policies, ["no-high-risk"]);
  assert.equal(engine.evaluate(request(github, "gh:read", { breakglass: true })).decision, "allow");
});

test("permit on a group allows a high-risk action", () => {
  const engine = new PolicyEngine();
  engine.load([github], {
    "http-high": `permit (principal, action in Action::"kind:http", resource) when { context.risk == "high" };`,
  });
  assert.equal(engine.evaluate(request(github, "gh:deploy")).decision, "allow");
});

test("protocol methods belong to no group and pass only by a site permit", () => {
  const engine = new PolicyEngine();
  const protocol = (targetGranted = true): PolicyRequest => ({
    ...request(memory, "protocol_method", { method: "logging/setLevel", path: "info" }),
    context: {
      ...request(memory, "protocol_method").context,
      method: "logging/setLevel",
      path: "info",
      action_name: "memory:logging/setLevel",
      token_actions: ["memory:read_graph"],
      target_granted: targetGranted,
    },
  });
  engine.load([memory], {
    "all-mcp": `permit (principal, action in Action::"kind:mcp", resource);`,
  });
  assert.equal(engine.evaluate(protocol()).decision, "deny");
  engine.load([memory], {
    "set-level": `permit (principal, action == Action::"protocol_method", resource)
when { context.method == "logging/setLevel" };`,
  });
  assert.equal(engine.evaluate(protocol()).decision, "allow");
  // A target the token does not grant stays forbidden.
  assert.equal(engine.evaluate(protocol(false)).decision, "deny");
});

test("agent-wide permit reaches no protocol method on an ungranted target", () => {
  const engine = new PolicyEngine();
  engine.load([memory], {
    "bot-everything": `permit (principal == Agent::"spiffe://example.org/agent/bot", action, resource);`,
  });
  const completion = request(memory, "protocol_method");
  completion.context = {
    ...completion.context,
    method: "completion/complete",
    path: "other-prompt",
    action_name: "memory:completion/complete",
    token_actions: ["memory:read_graph"],
    target_granted: false,
  };
  assert.equal(engine.evaluate(completion).decision, "deny");
});

test("action outside the token stays forbidden whatever a site policy permits", () => {
  const engine = new PolicyEngine();
  engine.load([github], { "permit-all": "permit (principal, action, resource);" });
  assert.equal(
    engine.evaluate(request(github, "gh:deploy", { token_actions: ["gh:read"] })).decision,
    "deny",
  );
});

test("unchanged reload keeps the policies in force", () => {
  const engine = new PolicyEngine();
  const site = { "no-admin": `forbid (principal, action, resource) when { context.path like "/admin/*" };` };
  assert.equal(engine.load([github], site), true);
  assert.equal(engine.load([github], { ...site }), false);
  assert.equal(engine.evaluate(request(github, "gh:read", { path: "/admin/users" })).decision, "deny");

  // A changed policy text, a removed policy or a new tool is loaded.
  assert.equal(engine.load([github], { "no-admin": site["no-admin"].replace("/admin/*", "/root/*") }), true);
  assert.equal(engine.evaluate(request(github, "gh:read", { path: "/admin/users" })).decision, "allow");
  assert.equal(engine.load([github], {}), true);
  assert.equal(engine.load([github, memory], {}), true);
  assert.equal(engine.evaluate(request(memory, "memory:read_graph")).decision, "allow");
});

test("failed load keeps the previous policies", () => {
  const engine = new PolicyEngine();
  engine.load([github], {});
  const broken = { broken: "permit (principal, action, resource) when { context.no_such_field };" };
  assert.throws(() => engine.load([github], broken), /invalid policies/);
  assert.equal(engine.evaluate(request(github, "gh:read")).decision, "allow");
  assert.throws(() => engine.load([github], broken), /invalid policies/);
});
