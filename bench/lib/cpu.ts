import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let ticksPerSecond: number | undefined;

/** Returns the kernel's clock ticks per second, in which /proc reports CPU time. */
function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    } catch {
      ticksPerSecond = Number.NaN;
    }
    // NOTE: 100 is the usual Linux value, assumed only when getconf is missing or fails.
    if (!Number.isFinite(ticksPerSecond) || ticksPerSecond <= 0) ticksPerSecond = 100;
  }
  return ticksPerSecond;
}

/**
 * Returns the CPU time, user plus system and in seconds, that process `pid` has used so far, with all
 * its threads. Reads /proc, so it returns undefined on systems without it, such as macOS.
 */
export function processCpuSeconds(pid: number): number | undefined {
  return cpuSecondsFromStat(`/proc/${pid}/stat`);
}

/**
 * Returns the CPU time, user plus system and in seconds, that the main thread of process `pid` has
 * used so far. For Node.js that is the JavaScript thread, without libuv's thread pool. Returns
 * undefined where /proc is missing.
 */
export function mainThreadCpuSeconds(pid: number): number | undefined {
  // Linux gives a process's first thread the process's own id.
  return cpuSecondsFromStat(`/proc/${pid}/task/${pid}/stat`);
}

function cpuSecondsFromStat(path: string): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  // The command name, field 2, is in parentheses and may contain spaces, so fields are counted after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the line, at indexes 11 and 12 once fields 1 and 2 are dropped.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks / clockTicksPerSecond() : undefined;
}

/** Returns the CPU time, user plus system and in seconds, that this process has used so far. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}
