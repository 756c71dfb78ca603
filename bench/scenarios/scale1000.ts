/**
 * scale1000: the scale scenario (`scale.ts`) with 1000 idle plugins, raw against `effect-host`
 * (`PluginManager.layer()` with the node launcher); a quick run uses 300 and says so in its
 * result (`plugins`, `quick`).
 *
 * Before it starts anything it checks what bounds the run on this machine: the host holds 2
 * (raw: stdin, stdout) or 3 (ours: stderr too) pipe ends per plugin, so it needs more open files
 * than a default soft limit of 1024 (Node raises the soft limit to the hard one at start-up, so
 * the hard limit is what counts); each idle worker is a Node process of ~7 threads and ~9 MB of
 * private memory, which the kernel's pid and thread limits and the free memory must hold. A
 * machine that cannot is reported with the limit that bounds it, instead of a run that fails
 * half-way.
 *
 * `raw` starts its workers as our node launcher does (`detached`: a session and process group of
 * their own; stderr piped). Linux's `sched_autogroup` schedules each session as one group, so
 * plain spawns share the host's one CPU share among all their workers while ours get one each:
 * on a machine loaded by other sessions, plain raw took 2.5× as long to get 300 workers ready as
 * our host did, a figure of the kernel's grouping, not of either host.
 *
 * Our side runs with a 5-minute handshake timeout and no idle reaping: 1000 Node processes
 * starting at once on a few cores all finish their start-up at about the same time, far past the
 * default 15 s handshake on a loaded 2-core machine, and raw has no timeout to hit.
 */
import * as fs from "node:fs"
import { LifetimePolicy } from "../../src/index.ts"
import { clientOptions } from "../variants/effect.ts"
import { measureScale } from "./scale.ts"

export const counts = (quick: boolean) => ({ plugins: quick ? 300 : 1000 })

/** Per idle raw worker: private memory (KB, measured: 8.9 MB private dirty) and threads. */
const workerPrivateKb = 12 * 1024
const workerThreads = 8
/** Host pipe ends per plugin (our launcher pipes stderr too), and room for the rest of the host. */
const fdsPerPlugin = 3
const fdsSpare = 256

const readLimit = (name: string): number => {
  const line = fs.readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith(name))
  const soft = line?.slice(name.length).trim().split(/\s+/)[0]
  return soft === undefined || soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft)
}

const readNumber = (file: string): number => {
  try {
    const text = fs.readFileSync(file, "utf8").trim()
    return text === "max" ? Number.POSITIVE_INFINITY : Number(text)
  } catch {
    return Number.POSITIVE_INFINITY
  }
}

/** `pids.max` of this process's cgroup (v2, or the v1 `pids` controller); unbounded when absent. */
const pidsMax = (): number => {
  const lines = fs.readFileSync("/proc/self/cgroup", "utf8").split("\n")
  const v1 = lines.find((l) => l.split(":")[1]?.split(",").includes("pids"))
  if (v1 !== undefined) return readNumber(`/sys/fs/cgroup/pids${v1.split(":")[2] ?? ""}/pids.max`)
  const v2 = lines.find((l) => l.startsWith("0::"))
  return v2 === undefined ? Number.POSITIVE_INFINITY : readNumber(`/sys/fs/cgroup${v2.slice(3)}/pids.max`)
}

const memAvailableKb = (): number => {
  const line = fs.readFileSync("/proc/meminfo", "utf8").split("\n").find((l) => l.startsWith("MemAvailable:"))
  return line === undefined ? Number.POSITIVE_INFINITY : Number(line.split(/\s+/)[1])
}

/** The machine's limits that bound a run of `plugins` plugins, and whether each holds them. */
export const limits = (plugins: number) => {
  const checks = [
    { limit: "open files (soft RLIMIT_NOFILE of this process)", have: readLimit("Max open files"), need: plugins * fdsPerPlugin + fdsSpare },
    { limit: "kernel.pid_max (threads count)", have: readNumber("/proc/sys/kernel/pid_max"), need: plugins * workerThreads },
    { limit: "kernel.threads-max", have: readNumber("/proc/sys/kernel/threads-max"), need: plugins * workerThreads },
    { limit: "pids cgroup (pids.max)", have: pidsMax(), need: plugins * workerThreads },
    { limit: "MemAvailable (KB)", have: memAvailableKb(), need: plugins * workerPrivateKb }
  ]
  return checks.map((c) => ({ ...c, ok: c.have >= c.need }))
}

export const run = async (variant: string, quick: boolean) => {
  const { plugins } = counts(quick)
  const bounds = limits(plugins).filter((c) => !c.ok)
  if (bounds.length > 0) {
    throw new Error(`this machine cannot run ${plugins} plugins: ${bounds.map((b) => `${b.limit} is ${b.have}, needs ${b.need}`).join("; ")}`)
  }
  const policy = LifetimePolicy.makeUnsafe({ maxConcurrentRequests: 64, initTimeout: "5 minutes", idleTimeout: undefined })
  const result = await measureScale(variant, { plugins, clientOptions: { ...clientOptions, policy }, raw: { detached: true } })
  return { ...result, quick, openFilesLimit: readLimit("Max open files") }
}
