import { resolve } from "node:path";
import type { WritConfig } from "../../config/config.js";
import { fileSink } from "./file.js";
import type { CheckpointSink } from "./sink.js";
import { parseSyslogTarget, syslogSink } from "./syslog.js";
import { webhookSink } from "./webhook.js";

/** Creates the checkpoint sinks the configuration names; throws Error on an invalid syslog target. */
export function configuredSinks(dataDir: string, config: WritConfig): CheckpointSink[] {
  const sinks: CheckpointSink[] = [];
  const file = checkpointFilePath(dataDir, config);
  if (file !== undefined) sinks.push(fileSink(file));
  if (config.audit_checkpoint_syslog !== null) {
    sinks.push(syslogSink(parseSyslogTarget(config.audit_checkpoint_syslog)));
  }
  for (const url of config.audit_checkpoint_webhooks) sinks.push(webhookSink(url));
  return sinks;
}

/** Returns the configured checkpoint file, resolved against the data directory, if there is one. */
export function checkpointFilePath(dataDir: string, config: WritConfig): string | undefined {
  return config.audit_checkpoint_file === null ? undefined : resolve(dataDir, config.audit_checkpoint_file);
}
