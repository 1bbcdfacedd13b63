/**
 * The agent-side SDK of writ: task tokens obtained with private_key_jwt, and an MCP client transport
 * that presents them to a writ gateway with a DPoP proof per request. It imports nothing from the
 * broker or the gateway, only jose, oauth4webapi and the MCP SDK.
 */
export {
  requestTaskToken,
  type AgentCredentials,
  type DpopKeyPair,
  type Fetch,
  type TaskToken,
} from "./task-token.js";
export {
  createMcpTransport,
  dpopFetch,
  defaultRenewBeforeSeconds,
  type McpTransportOptions,
} from "./mcp-transport.js";
export {
  checkInSharedAccount,
  checkOutSharedAccount,
  fetchSystemCredential,
  type SharedAccountCheckout,
  type SystemCredential,
} from "./system-credential.js";
