/**
 * What `/proc` says about a process: its state, parent, process group, session and start time
 * (field 22 of `/proc/<pid>/stat`, in clock ticks since boot), and the boot it belongs to. The
 * start time is what tells a process from a later one that reuses its pid: a pid plus its start
 * time (within one boot) names one process for good.
 *
 * Reads are synchronous and never throw: a process that is gone (or a system without `/proc`)
 * reads as `undefined`.
 *
 * @internal
 */
import * as fs from "node:fs"

/**
 * One process as `/proc/<pid>/stat` describes it.
 *
 * @internal
 */
export interface ProcStat {
  readonly pid: number
  /** `R`, `S`, `D`, … `Z` for a zombie (exited, not yet reaped by its parent). */
  readonly state: string
  readonly ppid: number
  readonly pgid: number
  readonly sid: number
  /** Clock ticks since boot at which the process started. */
  readonly startTime: number
}

/**
 * The stat of `pid`, or `undefined` when it does not exist (or `/proc` cannot be read).
 *
 * @internal
 */
export const readStat = (pid: number): ProcStat | undefined => {
  let text: string
  let fd: number | undefined
  try {
    // Three system calls (open, read, close), not `readFileSync`'s five: a stop's walk reads every
    // process. A `stat` line is well under the buffer's size.
    fd = fs.openSync(`/proc/${pid}/stat`, "r")
    text = statBuffer.toString("latin1", 0, fs.readSync(fd, statBuffer, 0, statBuffer.length, null))
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
  // The command name is in parentheses and may itself contain spaces and parentheses; the fields
  // after the last `)` start at field 3 (state), so field n is at index n - 3.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  const startTime = Number(fields[19])
  if (!Number.isSafeInteger(startTime)) return undefined
  return { pid, state: fields[0] ?? "?", ppid: Number(fields[1]), pgid: Number(fields[2]), sid: Number(fields[3]), startTime }
}

/** One buffer for every read (reads are synchronous). */
const statBuffer = Buffer.alloc(4096)

/**
 * True while the process exists and has not exited (a zombie has).
 *
 * @internal
 */
export const isLive = (stat: ProcStat | undefined): stat is ProcStat =>
  stat !== undefined && stat.state !== "Z" && stat.state !== "X"

/**
 * Every process `/proc` lists now.
 *
 * @internal
 */
export const allStats = (): Array<ProcStat> => {
  let names: Array<string>
  try {
    names = fs.readdirSync("/proc")
  } catch {
    return []
  }
  const stats: Array<ProcStat> = []
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue
    const stat = readStat(Number(name))
    if (stat !== undefined) stats.push(stat)
  }
  return stats
}

let bootIdCache: string | undefined

/**
 * The id of the running boot (`/proc/sys/kernel/random/boot_id`), or `""` where there is none.
 * Start times count from boot: a record from another boot names no process of this one.
 *
 * @internal
 */
export const bootId = (): string => {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
    } catch {
      bootIdCache = ""
    }
  }
  return bootIdCache
}
