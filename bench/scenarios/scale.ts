/**
 * scale: 100 plugins (the raw Node worker, which exits on SIGTERM) started at once; time until
 * every one has answered its `initialize`, host RSS growth per plugin (KB, after a full GC, with
 * everything running), and time to stop them all.
 *
 * `raw` spawns them with `node:child_process`; `effect-host` (and `effect-spawner`, with the
 * default launcher) registers them with a `PluginManager` (`PluginManager.layer()`, default
 * options) and starts them all in parallel (`manager.start`), then `manager.stopAll`.
 */
import * as Effect from "effect/Effect"
import { gc, now, round, rssKb } from "../lib/common.ts"
import { PluginManager } from "../../src/index.ts"
import { clientOptions, isEffectVariant, runWith, source, type EffectVariant } from "../variants/effect.ts"
import { open } from "../variants/raw.ts"


export const plugins = 100
/** Plugins started and stopped first, so lazily loaded code is not counted as per-plugin memory. */
const warmupPlugins = 4

interface Phases {
  readyMs: number
  stopMs: number
  rssGrowthKb: number
}

const result = (p: Phases) => ({
  plugins,
  readyAllMs: round(p.readyMs),
  stopAllMs: round(p.stopMs),
  rssPerPluginKb: round(p.rssGrowthKb / plugins)
})

const runRaw = async (): Promise<Phases> => {
  const startAll = (count: number) => Promise.all(Array.from({ length: count }, () => open()))
  const warm = await startAll(warmupPlugins)
  await Promise.all(warm.map((d) => d.close()))
  gc()
  const before = rssKb()
  const started = now()
  const opened = await Promise.allSettled(Array.from({ length: plugins }, () => open()))
  const drivers = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []))
  try {
    if (drivers.length !== plugins) throw new Error(`${plugins - drivers.length} plugins failed to start`)
    const readyMs = now() - started
    gc()
    const rssGrowthKb = rssKb() - before
    const stopping = now()
    await Promise.all(drivers.map((d) => d.close()))
    return { readyMs, stopMs: now() - stopping, rssGrowthKb }
  } finally {
    await Promise.all(drivers.map((d) => d.close()))
  }
}

const runManager = (variant: EffectVariant) =>
  runWith(PluginManager.layer(), variant)(
    Effect.gen(function*() {
      const manager = yield* PluginManager.PluginManager
      const startAll = (prefix: string, count: number) =>
        Effect.gen(function*() {
          const ids = Array.from({ length: count }, (_, i) => `${prefix}${i}`)
          for (const id of ids) yield* manager.register(source("effect-host", id), clientOptions)
          yield* Effect.forEach(ids, manager.start, { concurrency: "unbounded", discard: true })
          return ids
        })
      const warm = yield* startAll("warm", warmupPlugins)
      yield* Effect.forEach(warm, manager.unregister, { discard: true })
      gc()
      const before = rssKb()
      const started = now()
      yield* startAll("p", plugins)
      const readyMs = now() - started
      gc()
      const rssGrowthKb = rssKb() - before
      const stopping = now()
      yield* manager.stopAll
      return { readyMs, stopMs: now() - stopping, rssGrowthKb }
    })
  )

export const run = async (variant: string, _quick: boolean) =>
  result(isEffectVariant(variant) ? await runManager(variant) : await runRaw())
