/**
 * What the adversaries observe from outside the library: which plugin processes of one
 * measurement are alive (every plugin carries a marker in its environment, found in `/proc`),
 * the host's peak RSS (the kernel's high-water mark, so no sampling can miss a spike), the
 * longest event-loop block, and failures counted by their reason tag.
 */
import * as fs from "node:fs"
import * as Effect from "effect/Effect"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { node, round, workerEnv, workers } from "../lib/common.ts"
import { processesWithEnv } from "../lib/harness.ts"
import type { PluginClient, PluginClientError, PluginManager } from "../../src/index.ts"

const markerName = "BENCH_ADVERSARY"

/** This measurement's marker: unique to the measurement process. */
export const marker = `adversary-${process.pid}`

/** The adversary worker with `flags` (give it {@link pluginEnv} so it carries the markers). */
export const plugin = (name: string, flags: ReadonlyArray<string> = []): PluginClient.PluginSource => ({
  name,
  executable: node,
  args: [workers.adversary, ...flags]
})

/** The environment of every adversary plugin (`PluginClient.Options.env`). */
export const pluginEnv = (): Record<string, string> => ({ ...workerEnv(), [markerName]: marker })

/** Pids of this measurement's plugin processes that are alive now. */
export const livePlugins = (): Array<number> => processesWithEnv(markerName, marker).map((p) => p.pid)

const MiB = 1024 * 1024

/** The host's RSS now, in MB (MiB). */
export const rssMb = () => round(process.memoryUsage.rss() / MiB)

/** The host's peak RSS since it started, in MB (MiB): `VmHWM` from `/proc/self/status`. */
export const peakRssMb = (): number => {
  const line = fs.readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"))
  const kb = Number(line?.split(/\s+/)[1])
  return round(kb / 1024)
}

/**
 * Watches the event loop from `start` to `stop`: the longest delay of a 10 ms timer, i.e. the
 * longest stretch the loop could run nothing else (plus up to the resolution).
 */
export const eventLoopMonitor = () => {
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  return {
    start: () => histogram.enable(),
    /** Stops watching; returns the longest block in ms. */
    stop: (): number => {
      histogram.disable()
      return round(histogram.max / 1e6)
    }
  }
}

/** The tag a failed call is counted under: a client error's reason, or the manager's own error. */
export const failureTag = (error: PluginClientError.PluginClientError | PluginManager.ManagerError): string =>
  error._tag === "PluginClientError" ? error.reason._tag : `${error._tag}:${error.reason._tag}`

/** Counts by tag. */
export class Histogram {
  readonly counts: Record<string, number> = {}
  total = 0
  add(tag: string) {
    this.counts[tag] = (this.counts[tag] ?? 0) + 1
    this.total++
  }
}

/** Polls (real time, every 20 ms) until `check` holds or `timeoutMs` passes; returns the last result. */
export const eventually = (check: () => boolean, timeoutMs: number): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline) {
      if (check()) return true
      yield* Effect.sleep("20 millis")
    }
    return check()
  })
