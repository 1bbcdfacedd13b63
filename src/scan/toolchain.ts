/**
 * The way a tool family is driven: `interactive` for consoles and browsers, `cli` for command-line
 * tools a person or a script may run, `automation` for SDKs, infrastructure tools and CI runners, and
 * `unknown` when the log has no user agent.
 */
export type ToolchainCategory = "interactive" | "cli" | "automation" | "unknown";

interface ToolchainRule {
  pattern: RegExp;
  name: string;
  category: ToolchainCategory;
}

// Order matters: Terraform's user agent begins with `APN/1.0 HashiCorp/1.0`, and the AWS console
// embeds `aws-sdk-java` in its own user agent, so the specific rules come first.
const rules: ToolchainRule[] = [
  { pattern: /terraform/i, name: "terraform", category: "automation" },
  { pattern: /ci\/github-actions|^launch\/|github-actions/i, name: "github-actions", category: "automation" },
  { pattern: /^stratus-red-team/i, name: "stratus-red-team", category: "automation" },
  {
    pattern: /console|^signin\.amazonaws\.com|EC2ConsoleFrontend/i,
    name: "aws-console",
    category: "interactive",
  },
  { pattern: /^aws-cli\//i, name: "aws-cli", category: "cli" },
  { pattern: /^aws-sdk-go-v2\//i, name: "aws-sdk-go-v2", category: "automation" },
  { pattern: /^aws-sdk-go\//i, name: "aws-sdk-go", category: "automation" },
  { pattern: /^aws-sdk-([a-z]+)/i, name: "aws-sdk", category: "automation" },
  { pattern: /^boto3\//i, name: "boto3", category: "automation" },
  { pattern: /^botocore\//i, name: "botocore", category: "automation" },
  { pattern: /^kubectl\//i, name: "kubectl", category: "cli" },
  { pattern: /^GitHub CLI|^gh\//i, name: "gh", category: "cli" },
  { pattern: /^git\//i, name: "git", category: "cli" },
  { pattern: /^Mozilla\//i, name: "browser", category: "interactive" },
];

/** Known families keep their names; any other user agent is named by its first product token. */
export function toolchainOf(userAgent: string | undefined): string {
  const agent = (userAgent ?? "").trim().replace(/^\[/, "");
  if (agent === "") return "unknown";
  for (const rule of rules) if (rule.pattern.test(agent)) return rule.name;
  const product = /^[A-Za-z][A-Za-z0-9._-]*/.exec(agent)?.[0] ?? "unknown";
  // Per-run suffixes such as `_<uuid>` would make every run its own toolchain.
  return product.replace(/[_-][0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i, "").toLowerCase();
}

/** Unknown families count as automation: a person rarely calls an API with an unusual client. */
export function toolchainCategory(toolchain: string): ToolchainCategory {
  if (toolchain === "unknown") return "unknown";
  return rules.find((rule) => rule.name === toolchain)?.category ?? "automation";
}

/** True when the user agent names a desktop operating system, which an instance or pod never runs. */
export function isDesktopAgent(userAgent: string | undefined): boolean {
  return /Darwin\/|Windows NT|Macintosh|win32|darwin arm64/i.test(userAgent ?? "");
}
