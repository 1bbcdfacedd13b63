/**
 * The enforcement floor: the least a gateway must do per request, with nothing else around it. It
 * measures what the gateway's required steps cost on this machine, so that the gateway's figures can
 * be read against what any gateway doing those steps could reach.
 *
 * Per request, in a `node:http` server:
 * 1. The access token's claims come from a map keyed by the token text, as writ's come from its cache
 *    of verified tokens. The token's signature is not checked, because writ checks it once per token.
 * 2. The DPoP proof is verified with jose's `jwtVerify` against the proof's key, which is imported
 *    once and cached by thumbprint. Its `typ`, `htm`, `htu`, `iat` window and `ath` are checked,
 *    its `jti` must be new, and its key's thumbprint must equal the token's `cnf.jkt`.
 * 3. Cedar decides with writ's shipped policies and schema through writ's `PolicyEngine`, with the
 *    context the gateway passes.
 * 4. The decision is written to SQLite (WAL, `synchronous = FULL`). Decisions of one turn of the event
 *    loop share one transaction, and no request is forwarded before its transaction has committed.
 * 5. The request is forwarded with undici with a bearer credential added, and the response relayed.
 *
 * `WRIT_BENCH_FLOOR_SKIP` (a comma-separated list of `proof`, `cedar` and `record`) leaves steps out,
 * to find what each one costs.
 *
 * The floor leaves out what writ adds beyond these steps: Fastify, path normalisation and action
 * matching, the revocation check, the risk score, the audit log's hash chain, header filtering and
 * the response's own checks.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { calculateJwkThumbprint, decodeJwt, importJWK, jwtVerify, type JWK } from "jose";
import { Agent, request } from "undici";
import { PolicyEngine } from "../../src/policy/engine.js";
import type { Tool } from "../../src/tools/registry.js";

/** The tool the floor decides for, shaped as writ registers the bench's tool. */
const floorTool: Tool = {
  name: "t",
  kind: "http",
  environment: "bench",
  resource_uri: "http://127.0.0.1/tools/t",
  actions: [{ name: "read", spec: "GET /items/**", risk: "low" }],
  config: {},
  created_at: 0,
};

/** Seconds a proof stays acceptable after its `iat`, as in writ's default. */
const proofMaxAgeSeconds = 60;

interface TokenClaims {
  jkt: string;
  sub: string;
  environment: string;
}

/** Returns a request handler for the floor, which forwards allowed requests to `target`. */
export function enforcementFloor(
  target: string,
): (request: IncomingMessage, response: ServerResponse) => void {
  const skipped = new Set((process.env.WRIT_BENCH_FLOOR_SKIP ?? "").split(",").filter((step) => step !== ""));
  const dispatcher = new Agent({ connections: 128 });
  const engine = new PolicyEngine();
  engine.load([floorTool], {});
  const tokens = new Map<string, TokenClaims>();
  const keys = new Map<string, Awaited<ReturnType<typeof importJWK>>>();
  // Unbounded, which is fine for one benchmark run of at most a few tens of thousands of proofs.
  const seenJtis = new Set<string>();
  const decisions = new DecisionLog();

  const claimsOf = (token: string): TokenClaims => {
    let claims = tokens.get(token);
    if (claims === undefined) {
      const payload = decodeJwt(token) as { sub: string; cnf: { jkt: string } };
      claims = { jkt: payload.cnf.jkt, sub: payload.sub, environment: floorTool.environment };
      tokens.set(token, claims);
    }
    return claims;
  };

  const verifyProof = async (proof: string, token: string, url: string): Promise<TokenClaims> => {
    const claims = claimsOf(token);
    if (skipped.has("proof")) return claims;
    const header = JSON.parse(Buffer.from(proof.slice(0, proof.indexOf(".")), "base64url").toString()) as {
      jwk: JWK;
      alg: string;
    };
    const jkt = await calculateJwkThumbprint(header.jwk);
    if (jkt !== claims.jkt) throw new Error("invalid proof: its key differs from cnf.jkt");
    let key = keys.get(jkt);
    if (key === undefined) {
      key = await importJWK(header.jwk, header.alg);
      keys.set(jkt, key);
    }
    const { payload } = await jwtVerify(proof, key, { typ: "dpop+jwt" });
    const now = Math.floor(Date.now() / 1000);
    if (payload.htm !== "GET" || payload.htu !== url)
      throw new Error("invalid proof: htm or htu differs from the request");
    if (typeof payload.iat !== "number" || payload.iat < now - proofMaxAgeSeconds || payload.iat > now + 5)
      throw new Error("invalid proof: iat outside the accepted window");
    if (payload.ath !== createHash("sha256").update(token).digest("base64url"))
      throw new Error("invalid proof: ath differs from the token hash");
    if (typeof payload.jti !== "string" || seenJtis.has(payload.jti))
      throw new Error("invalid proof: jti missing or seen before");
    seenJtis.add(payload.jti);
    return claims;
  };

  return (incoming, outgoing) => {
    const path = incoming.url ?? "/";
    const authorization = incoming.headers.authorization ?? "";
    const proof = incoming.headers.dpop;
    const token = authorization.startsWith("DPoP ") ? authorization.slice(5) : "";
    const decisionId = randomUUID();
    const url = `http://${incoming.headers.host ?? ""}${path}`;
    verifyProof(typeof proof === "string" ? proof : "", token, url)
      .then(async (claims) => {
        const decision = skipped.has("cedar")
          ? { decision: "allow", policies: [] }
          : engine.evaluate({
              principal: { type: "Agent", id: claims.sub },
              action: "t:read",
              tool: floorTool,
              context: {
                intent: "measure the gateway",
                environment: claims.environment,
                deadline: Math.floor(Date.now() / 1000) + 3600,
                delegation_depth: 0,
                task_join: false,
                breakglass: false,
                method: "GET",
                path,
                risk: "low",
                risk_score: 0,
                action_name: "t:read",
                token_actions: ["t:read"],
              },
            });
        if (!skipped.has("record"))
          await decisions.record(decisionId, claims.sub, decision.decision, path, decision.policies);
        if (decision.decision !== "allow") {
          outgoing.writeHead(403).end();
          return;
        }
        const upstream = await request(`${target}${path}`, {
          method: "GET",
          headers: { authorization: "Bearer bench-upstream-secret" },
          dispatcher,
        });
        const body = Buffer.from(await upstream.body.arrayBuffer());
        outgoing.writeHead(upstream.statusCode, {
          "content-type": String(upstream.headers["content-type"] ?? "application/octet-stream"),
          "writ-decision-id": decisionId,
        });
        outgoing.end(body);
      })
      .catch((error: unknown) => {
        console.error(`enforcement floor: ${path} failed: ${(error as Error).message}`);
        if (!outgoing.headersSent) outgoing.writeHead(401);
        outgoing.end();
      });
  };
}

/**
 * A durable decision log in its own SQLite file. Rows recorded in one turn of the event loop are
 * committed in one transaction, and each `record` resolves once its row's transaction has committed.
 */
class DecisionLog {
  private readonly folder = mkdtempSync(join(tmpdir(), "writ-floor-"));
  private readonly database = new Database(join(this.folder, "decisions.db"));
  private readonly insert;
  private pending: { row: unknown[]; resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor() {
    this.database.pragma("journal_mode = WAL");
    this.database.pragma("synchronous = FULL");
    this.database.exec(
      "CREATE TABLE decisions (id TEXT PRIMARY KEY, time INTEGER, actor TEXT, decision TEXT, path TEXT, policies TEXT)",
    );
    this.insert = this.database.prepare("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?)");
    process.on("exit", () => {
      this.database.close();
      rmSync(this.folder, { recursive: true, force: true });
    });
  }

  record(id: string, actor: string, decision: string, path: string, policies: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.commit());
      this.pending.push({
        row: [id, Date.now(), actor, decision, path, JSON.stringify(policies)],
        resolve,
        reject,
      });
    });
  }

  private commit(): void {
    const batch = this.pending;
    this.pending = [];
    try {
      this.database.transaction(() => {
        for (const entry of batch) this.insert.run(...entry.row);
      })();
    } catch (error) {
      for (const entry of batch) entry.reject(error);
      return;
    }
    for (const entry of batch) entry.resolve();
  }
}
