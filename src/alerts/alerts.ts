import { randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import type { BrokerContext } from "../broker/context.js";
import { epochSeconds } from "../clock.js";
import {
  alertMaxAttempts,
  alertRetryInitialMs,
  alertRetryMaxMs,
  alertTimeoutMs,
} from "../config/defaults.js";
import { currentAlertKey, alertType, loadAlertKey } from "./alert-key.js";

/** The content of an alert: its event name, the facts, and the event time in ms since the epoch. */
export interface AlertEvent {
  event: string;
  data: Record<string, unknown>;
  time: number;
}

/** Maximum deliveries attempted in one pass, so that one pass stays short. */
const deliveriesPerPass = 50;

const inFlight = new WeakMap<BrokerContext, Promise<void>>();

/**
 * Writes an alert, such as a break-glass use, to the log and queues one signed delivery per webhook, then
 * starts delivering in the background. It never throws and never waits for a receiver, so that an
 * alert can never delay or block what it reports.
 */
export function sendAlert(context: BrokerContext, event: string, data: Record<string, unknown>): void {
  context.log.warn({ alert: event, ...data }, `alert: ${event}`);
  const urls = context.config.alert_webhooks;
  if (urls.length === 0) return;
  const now = context.clock.nowMs();
  const payload = JSON.stringify({ event, data, time: now } satisfies AlertEvent);
  context.queue
    .write(async (trx) => {
      for (const url of urls) {
        await trx
          .insertInto("alert_deliveries")
          .values({
            id: randomUUID(),
            event: payload,
            url,
            attempts: 0,
            status: "pending",
            next_attempt_at: now,
            created_at: now,
          })
          .execute();
      }
    })
    .then(
      () => void deliverDueAlerts(context),
      (error: unknown) => context.log.error({ err: error, alert: event }, "queueing an alert failed"),
    );
}

/**
 * Attempts every delivery that is due, at most one pass at a time per broker. A 2xx response
 * delivers; anything else is retried with a doubling delay until `alertMaxAttempts`. Every attempt
 * is audited as `alert_delivery.succeeded` or `alert_delivery.failed`.
 */
export function deliverDueAlerts(context: BrokerContext): Promise<void> {
  const running = inFlight.get(context);
  if (running !== undefined) return running;
  const pass = deliverPass(context)
    .catch((error: unknown) => context.log.error({ err: error }, "alert delivery pass failed"))
    .finally(() => inFlight.delete(context));
  inFlight.set(context, pass);
  return pass;
}

async function deliverPass(context: BrokerContext): Promise<void> {
  const due = await context.store.db
    .selectFrom("alert_deliveries")
    .selectAll()
    .where("status", "=", "pending")
    .where("next_attempt_at", "<=", context.clock.nowMs())
    .orderBy("next_attempt_at")
    .limit(deliveriesPerPass)
    .execute();
  if (due.length === 0) return;
  const key = currentAlertKey(context) ?? (await loadAlertKey(context));

  await Promise.all(
    due.map(async (delivery) => {
      const alert = JSON.parse(delivery.event) as AlertEvent;
      // The delivery id is the `jti`, the same on every retry, so a receiver that saw an attempt
      // whose response was lost recognises the retry as a replay of an alert it already has.
      const jws = await new SignJWT({ event: alert.event, data: alert.data, time: alert.time })
        .setProtectedHeader({ alg: key.alg, typ: alertType, kid: key.kid })
        .setIssuer(context.issuer)
        .setIssuedAt(epochSeconds(context.clock))
        .setJti(delivery.id)
        .sign(key.privateKey);

      const attempt = delivery.attempts + 1;
      let status: number | undefined;
      let failure: string | undefined;
      try {
        const response = await fetch(delivery.url, {
          method: "POST",
          headers: { "content-type": "application/jwt" },
          body: jws,
          redirect: "manual",
          signal: AbortSignal.timeout(alertTimeoutMs),
        });
        status = response.status;
        await response.body?.cancel();
        if (status < 200 || status > 299) failure = `receiver returned status ${status}`;
      } catch (error) {
        failure = (error as Error).message;
      }

      const now = context.clock.nowMs();
      const final = failure !== undefined && attempt >= alertMaxAttempts;
      let nextStatus = "pending";
      if (failure === undefined) nextStatus = "delivered";
      else if (final) nextStatus = "failed";
      const delayMs = Math.min(alertRetryInitialMs * 2 ** (attempt - 1), alertRetryMaxMs);
      await context.queue.write((trx) =>
        trx
          .updateTable("alert_deliveries")
          .set({ attempts: attempt, status: nextStatus, next_attempt_at: now + delayMs })
          .where("id", "=", delivery.id)
          .execute(),
      );
      context.audit.appendEventually({
        kind: failure === undefined ? "alert_delivery.succeeded" : "alert_delivery.failed",
        actor: "writ",
        data: {
          delivery_id: delivery.id,
          event: alert.event,
          url: delivery.url,
          attempt,
          status_code: status ?? null,
          error: failure ?? null,
          final,
        },
      });
      if (failure !== undefined) {
        context.log.warn(
          { delivery_id: delivery.id, alert: alert.event, url: delivery.url, attempt, err: failure, final },
          final ? "alert delivery failed; giving up" : "alert delivery failed; retrying",
        );
      }
    }),
  );
}
