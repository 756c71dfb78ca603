/**
 * One crash in a batch: `Effect.forEach` over N calls, 64 at a time, to a plugin (default,
 * lazy policy) that exits when call N/2 tells it to. Counts the calls that failed and their
 * reason tags (the issue: 98,312 of 100,000 with `Closed` on a client, 99,744 through a manager).
 *
 * Meanwhile, in the same host, a second plugin is sent calls with a 100 ms timeout that it never
 * answers (4 lanes, each alternating such a call and an answered one): how late each `Timeout`
 * fires after its deadline, and the longest event-loop block of the batch (the issue: 52 s for
 * 1M calls).
 *
 * - `batch-client`: N = 100k through `PluginClient.request`.
 * - `batch-manager`: N = 100k through `PluginManager.call`.
 * - `batch-1m`: N = 1M through `PluginClient.request` (full mode only).
 */
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import { LifetimePolicy, PluginClient, PluginManager, type PluginClientError } from "../../src/index.ts"
import { now, quantile, round } from "../lib/common.ts"
import { runWith } from "../variants/effect.ts"
import { eventLoopMonitor, failureTag, Histogram, plugin, pluginEnv } from "./probes.ts"

type Call = (method: string, params: unknown) => Effect.Effect<unknown, PluginClientError.PluginClientError | PluginManager.ManagerError>

const timeoutMs = 100
const latenessLanes = 4

/**
 * Starts the lanes of unanswered calls against their own plugin; `stop` ends them and tells how
 * late the timeouts fired.
 */
const latenessProbe = Effect.gen(function*() {
  // Recycling after timeouts in a row is another promise; here the plugin must stay up.
  const policy = LifetimePolicy.makeUnsafe({ consecutiveTimeoutsBeforeRecycle: 1_000_000 })
  const client = yield* PluginClient.make(plugin("silent"), { policy, env: pluginEnv() })
  yield* client.request("echo", 0)
  const lateness: Array<number> = []
  let otherOutcomes = 0
  const lane = Effect.gen(function*() {
    const started = now()
    const outcome = yield* client.request("hang", null, { timeout: `${timeoutMs} millis` }).pipe(Effect.result)
    if (outcome._tag === "Failure" && outcome.failure.reason._tag === "Timeout") lateness.push(now() - started - timeoutMs)
    else otherOutcomes++
    yield* client.request("echo", 1).pipe(Effect.ignore)
  }).pipe(Effect.forever)
  const lanes = yield* FiberSet.make()
  for (let i = 0; i < latenessLanes; i++) yield* FiberSet.run(lanes, lane)
  const stop = FiberSet.clear(lanes).pipe(Effect.andThen(Effect.sync(() => ({
    timeouts: lateness.length,
    otherOutcomes,
    worstLatenessMs: round(lateness.reduce((a, b) => Math.max(a, b), 0)),
    p99LatenessMs: round(quantile(lateness, 0.99))
  }))))
  return { stop }
})

const batch = (total: number, call: Call, health: Effect.Effect<PluginClient.HealthSnapshot, unknown>) =>
  Effect.gen(function*() {
    const crashAt = Math.floor(total / 2)
    const failures = new Histogram()
    const probe = yield* latenessProbe
    const loop = eventLoopMonitor()
    loop.start()
    const started = now()
    yield* Effect.forEach(
      Array.from({ length: total }, (_, i) => i),
      (i) =>
        (i === crashAt ? call("crash", { code: 3, stderr: "boom: mid-batch\n" }) : call("echo", i)).pipe(
          Effect.match({ onSuccess: () => undefined, onFailure: (error) => failures.add(failureTag(error)) })
        ),
      { concurrency: 64, discard: true }
    )
    const seconds = (now() - started) / 1000
    const longestBlockMs = loop.stop()
    const timeouts = yield* probe.stop
    const { totalCrashes, spawns } = yield* health
    return {
      total,
      failed: failures.total,
      failureTags: failures.counts,
      seconds: round(seconds, 2),
      callsPerSec: Math.round(total / seconds),
      crashes: totalCrashes,
      spawns,
      longestBlockMs,
      ...timeouts
    }
  })

const viaClient = (total: number) =>
  runWith(Layer.empty, "effect-host")(Effect.gen(function*() {
    const client = yield* PluginClient.make(plugin("batch"), { env: pluginEnv() })
    return yield* batch(total, (method, params) => client.request(method, params), client.health)
  }))

const viaManager = (total: number) =>
  runWith(PluginManager.layer(), "effect-host")(Effect.gen(function*() {
    const manager = yield* PluginManager.PluginManager
    const client = yield* manager.register(plugin("batch"), { env: pluginEnv() })
    return yield* batch(total, (method, params) => manager.call("batch", method, params), client.health)
  }))

export const run = (name: string, _quick: boolean) =>
  name === "batch-manager" ? viaManager(100_000) : viaClient(name === "batch-1m" ? 1_000_000 : 100_000)
