import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Clock } from "../clock.js";
import { MemoryReplayCache } from "../dpop/replay-cache.js";
import type { DpopPolicy } from "../dpop/verify-proof.js";
import { RequestAuthenticator } from "./authenticate.js";
import type { GatewayBackend } from "./backend.js";
import { registerToolRoute } from "./http/tool-route.js";
import { registerMcpRoute } from "./mcp/route.js";
import { registerAuthorizeRoute, type CallerByCertificate } from "./http/authorize-route.js";
import { RiskScorer } from "./risk.js";

/** Interval at which the gateway drops expired revocations and replay entries. */
const purgeIntervalMs = 10_000;

export interface Gateway {
  backend: GatewayBackend;
  /** Registers the gateway's routes on an application. */
  register(app: FastifyInstance): void;
  close(): Promise<void>;
}

/**
 * Assembles the enforcement point over a backend. The DPoP replay cache lives in this process, so
 * several gateways behind one URL each keep their own; see the security model's limits.
 */
export function createGateway(options: {
  backend: GatewayBackend;
  clock: Clock;
  log: Logger;
  dpop: DpopPolicy;
  /** When set, the decision API for external proxies is served too, to callers this function finds. */
  callerByCertificate?: CallerByCertificate;
}): Gateway {
  const replay = new MemoryReplayCache(options.clock);
  const authenticator = new RequestAuthenticator(options.backend, options.dpop, options.clock, replay);
  const risk = new RiskScorer(options.clock);
  const timer = setInterval(() => {
    replay.purge();
    options.backend.revocations.purge();
  }, purgeIntervalMs);
  timer.unref();
  return {
    backend: options.backend,
    register(app) {
      const dependencies = {
        backend: options.backend,
        authenticator,
        risk,
        clock: options.clock,
        log: options.log,
      };
      registerToolRoute(app, dependencies);
      registerMcpRoute(app, { ...dependencies, dpop: options.dpop, replay });
      if (options.callerByCertificate !== undefined) {
        registerAuthorizeRoute(app, dependencies, options.callerByCertificate);
      }
    },
    async close() {
      clearInterval(timer);
      await options.backend.close();
    },
  };
}
