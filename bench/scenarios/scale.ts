/**
 * scale: many idle plugins (the raw Node worker, which exits on SIGTERM) started at once; time
 * until every one has answered its `initialize`, host RSS and heap growth per plugin (KB, after
 * a full GC, with everything running), and time to stop them all; the host's own CPU time per
 * plugin in each phase (ms), which moves less than wall time with the load of the machine. This module runs it with 100
 * plugins; `scale1000.ts` with 1000 through {@link measureScale}.
 *
 * `raw` spawns them with `node:child_process`, `detached` with stderr piped as our launcher does
 * (`scale1000.ts` says why); `effect-host` (and `effect-spawner`, with the
 * default launcher) registers them with a `PluginManager` (`PluginManager.layer()`, default
 * options) and starts them all in parallel (`manager.start`), then `manager.stopAll`.
 */
import * as Effect from "effect/Effect"
import { lastResortGc, now, round, rssKb, sleep } from "../lib/common.ts"
import { PluginManager, type PluginClient } from "../../src/index.ts"
import { clientOptions, isEffectVariant, runWith, source, type EffectVariant } from "../variants/effect.ts"
import { open, type OpenOptions } from "../variants/raw.ts"
import * as ProcessTree from "../../src/internal/processTree.ts"


export const plugins = 100
/** Plugins started and stopped first, so lazily loaded code is not counted as per-plugin memory. */
const warmupPlugins = 4

export interface ScaleOptions {
  readonly plugins: number
  /** The client options of `effect-host` (the 100-plugin run uses the bench's defaults). */
  readonly clientOptions?: PluginClient.Options
  /** How `raw` starts its workers (both runs: `detached`, as our launcher does; see `scale1000.ts`). */
  readonly raw?: OpenOptions
}

interface Phases {
  readyMs: number
  stopMs: number
  /** The host process's CPU time (user + system) while the plugins started, and while they stopped. */
  readyCpuMs: number
  stopCpuMs: number
  rssGrowthKb: number
  heapGrowthKb: number
}

interface Memory {
  readonly rssKb: number
  readonly heapKb: number
}

/**
 * RSS and heap after a last-resort collection (the one V8 runs before it gives up on memory: it
 * compacts and gives back the heap's free pages), once RSS holds still. A plain full `gc()` keeps
 * the heap's committed size, which V8's memory reducer shrinks later on its own (the heap of a
 * host that has just loaded the library shrinks by ~30 MB some seconds after), so a growth taken
 * with it counts that shrinking and can even come out negative.
 */
const settledMemory = async (): Promise<Memory> => {
  let last = Number.NaN
  for (let i = 0; i < 4; i++) {
    lastResortGc()
    await sleep(50)
    const rss = rssKb()
    if (Math.abs(rss - last) < 256) break
    last = rss
  }
  const usage = process.memoryUsage()
  return { rssKb: usage.rss / 1024, heapKb: (usage.heapUsed + usage.external) / 1024 }
}

const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1000
}

const growth = (before: Memory, after: Memory) => ({
  rssGrowthKb: after.rssKb - before.rssKb,
  heapGrowthKb: after.heapKb - before.heapKb
})

const runRaw = async (count: number, options: OpenOptions | undefined): Promise<Phases> => {
  const start = () => open(undefined, options)
  const startAll = (n: number) => Promise.all(Array.from({ length: n }, start))
  const warm = await startAll(warmupPlugins)
  await Promise.all(warm.map((d) => d.close()))
  const before = await settledMemory()
  const started = now()
  const startCpu = process.cpuUsage()
  const opened = await Promise.allSettled(Array.from({ length: count }, start))
  const drivers = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []))
  try {
    if (drivers.length !== count) throw new Error(`${count - drivers.length} plugins failed to start`)
    const readyMs = now() - started
    const readyCpuMs = cpuMs(startCpu)
    const memory = growth(before, await settledMemory())
    const stopping = now()
    const stopCpu = process.cpuUsage()
    await Promise.all(drivers.map((d) => d.close()))
    return { readyMs, stopMs: now() - stopping, readyCpuMs, stopCpuMs: cpuMs(stopCpu), ...memory }
  } finally {
    await Promise.all(drivers.map((d) => d.close()))
  }
}

const runManager = (variant: EffectVariant, count: number, options: PluginClient.Options) =>
  runWith(PluginManager.layer(), variant)(
    Effect.gen(function*() {
      const manager = yield* PluginManager.PluginManager
      const startAll = (prefix: string, n: number) =>
        Effect.gen(function*() {
          const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`)
          for (const id of ids) yield* manager.register(source("effect-host", id), options)
          yield* Effect.forEach(ids, manager.start, { concurrency: "unbounded", discard: true })
          return ids
        })
      const warm = yield* startAll("warm", warmupPlugins)
      yield* Effect.forEach(warm, manager.unregister, { discard: true })
      const before = yield* Effect.promise(settledMemory)
      const started = now()
      const startCpu = process.cpuUsage()
      yield* startAll("p", count)
      const readyMs = now() - started
      const readyCpuMs = cpuMs(startCpu)
      const memory = growth(before, yield* Effect.promise(settledMemory))
      const stopping = now()
      const stopCpu = process.cpuUsage()
      yield* manager.stopAll
      return { readyMs, stopMs: now() - stopping, readyCpuMs, stopCpuMs: cpuMs(stopCpu), ...memory }
    })
  )

/** One scale measurement of `variant` with `options.plugins` plugins. */
export const measureScale = async (variant: string, options: ScaleOptions) => {
  const count = options.plugins
  const p = isEffectVariant(variant) ? await runManager(variant, count, options.clientOptions ?? clientOptions) : await runRaw(count, options.raw)
  return {
    plugins: count,
    // How our host contains a plugin here (a cgroup made, entered through `/bin/sh` and removed
    // per plugin, or `/proc` walks): part of what its start and stop cost.
    ...(isEffectVariant(variant) ? { containment: ProcessTree.mode() } : {}),
    readyAllMs: round(p.readyMs),
    stopAllMs: round(p.stopMs),
    readyHostCpuMsPerPlugin: round(p.readyCpuMs / count, 2),
    stopHostCpuMsPerPlugin: round(p.stopCpuMs / count, 2),
    rssPerPluginKb: round(p.rssGrowthKb / count),
    heapPerPluginKb: round(p.heapGrowthKb / count)
  }
}

export const run = (variant: string, _quick: boolean) => measureScale(variant, { plugins, raw: { detached: true } })
