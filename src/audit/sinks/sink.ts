import type { Checkpoint } from "../checkpoint.js";

/** A place outside the store that receives a copy of every signed checkpoint. */
export interface CheckpointSink {
  /** Names the sink in logs and verdicts, such as `file /var/log/writ/checkpoints.jsonl`. */
  readonly name: string;
  /** Delivers one checkpoint; rejects when it could not be delivered. */
  write(checkpoint: Checkpoint): Promise<void>;
  close(): Promise<void>;
}

/** One line of a checkpoint file, and the JSON document syslog and webhook sinks carry. */
export interface CheckpointLine {
  type: "writ-checkpoint";
  seq: number;
  hash: string;
  time: number;
  jws: string;
}

export function checkpointLine(checkpoint: Checkpoint): CheckpointLine {
  return {
    type: "writ-checkpoint",
    seq: checkpoint.seq,
    hash: checkpoint.hash,
    time: checkpoint.time,
    jws: checkpoint.jws,
  };
}
