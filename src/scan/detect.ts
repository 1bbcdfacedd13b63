import type { LogFormat } from "./model.js";
import { cloudTrailParser } from "./sources/cloudtrail.js";
import { genericParser } from "./sources/generic.js";
import { githubParser } from "./sources/github.js";
import { kubernetesParser } from "./sources/kubernetes.js";
import type { LogParser, LogRecord } from "./sources/parser.js";
import { writParser } from "./sources/writ.js";

/** Parsers tried, in order, when the format is detected. Generic JSON is never guessed. */
const detectable: LogParser[] = [cloudTrailParser, kubernetesParser, writParser, githubParser];

export const parsers: Record<LogFormat, LogParser> = {
  cloudtrail: cloudTrailParser,
  kubernetes: kubernetesParser,
  github: githubParser,
  writ: writParser,
  generic: genericParser,
};

/**
 * Detects a record's format from its fields. The last match is tried first, because inputs rarely
 * mix formats, which keeps detection to one check per record.
 */
export class FormatDetector {
  private last: LogParser | undefined;

  detect(record: LogRecord): LogParser | undefined {
    if (this.last?.matches(record) === true) return this.last;
    const found = detectable.find((parser) => parser.matches(record));
    if (found !== undefined) this.last = found;
    return found;
  }
}
