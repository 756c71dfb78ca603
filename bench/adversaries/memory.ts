/**
 * Memory under four adversaries, each the host's peak RSS (the target: under 300 MB) and what
 * became of the messages:
 *
 * - `memory-deaf`: 20k notifications of 64 KiB to a plugin that never reads its stdin (the
 *   issue: 118 MB → 1.5 GB); how many fail with `Backpressure`.
 * - `memory-unread-replies`: a plugin that sends the host requests (answered with 64 KiB each)
 *   and never reads the replies, for 20 s (quick: 8 s), always on, restarted 100 ms after each
 *   end (the issue: +100 MB/s, 1.98 GB); RSS growth per second over the second half, the
 *   connections ended, and the heap left after a full GC (what is retained, not garbage).
 * - `memory-slow-handler`: 10k notifications of 100 KB (quick: 3k) to a host whose handler takes
 *   10 ms each (the issue: 2.7 GB); how many were handled and dropped.
 * - `memory-flood`: 1M empty notifications (quick: 200k) to a handler that returns at once: the
 *   share delivered (the issue: 5 %; target ≥ 99.9 %).
 */
import * as Effect from "effect/Effect"
import { LifetimePolicy, PluginClient } from "../../src/index.ts"
import { gc, now, round } from "../lib/common.ts"
import { run as runScoped } from "../variants/effect.ts"
import { eventually, failureTag, Histogram, peakRssMb, plugin, pluginEnv, rssMb } from "./probes.ts"

const KiB = 1024

const deaf = Effect.gen(function*() {
  const notifications = 20_000
  const client = yield* PluginClient.make(plugin("deaf", ["--no-read"]), { env: pluginEnv() })
  yield* client.start
  const payload = "x".repeat(64 * KiB)
  const rssBeforeMb = rssMb()
  const outcomes = new Histogram()
  yield* Effect.forEach(
    Array.from({ length: notifications }, (_, i) => i),
    () => client.notify("n", payload).pipe(Effect.match({ onSuccess: () => outcomes.add("sent"), onFailure: (e) => outcomes.add(failureTag(e)) })),
    { discard: true }
  )
  const { queuedBytes } = yield* client.health
  return { notifications, outcomes: outcomes.counts, queuedMb: round(queuedBytes / KiB / KiB), rssBeforeMb, peakRssMb: peakRssMb() }
})

const heapMb = () => round(process.memoryUsage().heapUsed / KiB / KiB)

const unreadReplies = (seconds: number) =>
  Effect.gen(function*() {
    const policy = LifetimePolicy.makeUnsafe({
      ...LifetimePolicy.alwaysOn,
      shutdownGrace: "1 second",
      backoff: { initial: "100 millis", factor: 1, jitter: 0, giveUpAfter: 1_000_000 }
    })
    const reply = "x".repeat(64 * KiB)
    gc()
    const heapBeforeMb = heapMb()
    const rssStartMb = rssMb()
    const client = yield* PluginClient.make(plugin("asker", ["--no-read", "--flood-requests=1000000", "--flood-bytes=65536"]), {
      policy,
      hostHandlers: { flood: () => Effect.succeed(reply) },
      env: pluginEnv()
    })
    const started = now()
    const elapsed = () => (now() - started) / 1000
    // RSS at each quarter of the run, so the report shows a plateau (or its absence).
    const quarters: Array<number> = []
    for (let q = 1; q <= 4; q++) {
      while (elapsed() < (seconds * q) / 4) yield* Effect.sleep("100 millis")
      quarters.push(rssMb())
    }
    const rssMidMb = quarters[1] ?? rssStartMb
    const rssEndMb = quarters[3] ?? rssStartMb
    const health = yield* client.health
    gc()
    return {
      seconds,
      rssStartMb,
      rssQuartersMb: quarters,
      // Over the second half: a host that keeps what the plugin leaves unread grows all along,
      // while a bounded one has reached its plateau by then.
      growthMbPerSec: round((rssEndMb - rssMidMb) / (seconds / 2), 2),
      connectionsEnded: health.totalCrashes,
      lastEndReason: health.lastErrorReason ?? null,
      heapBeforeMb,
      heapAfterGcMb: heapMb(),
      peakRssMb: peakRssMb()
    }
  })

const slowHandler = (count: number) =>
  Effect.gen(function*() {
    let handled = 0
    const client = yield* PluginClient.make(plugin("chatty"), {
      onNotification: () => Effect.sleep("10 millis").pipe(Effect.andThen(Effect.sync(() => void handled++))),
      env: pluginEnv()
    })
    const started = now()
    yield* client.request("flood", { count, bytes: 100_000 }, { timeout: "5 minutes" })
    const { notificationsDropped } = yield* client.health
    return { notifications: count, bytesEach: 100_000, seconds: round((now() - started) / 1000, 2), handledByThen: handled, dropped: notificationsDropped, peakRssMb: peakRssMb() }
  })

const flood = (count: number) =>
  Effect.gen(function*() {
    let handled = 0
    const client = yield* PluginClient.make(plugin("flood"), { onNotification: () => Effect.sync(() => void handled++), env: pluginEnv() })
    yield* client.request("echo", 0)
    const started = now()
    yield* client.request("flood", { count, bytes: 0 }, { timeout: "5 minutes" })
    // The reply comes after the last notification; give the handler a moment to catch up.
    yield* eventually(() => handled === count, 10_000)
    const { notificationsDropped } = yield* client.health
    return {
      notifications: count,
      delivered: handled,
      deliveredPercent: round((handled / count) * 100, 3),
      dropped: notificationsDropped,
      seconds: round((now() - started) / 1000, 2),
      peakRssMb: peakRssMb()
    }
  })

const programs: Record<string, (quick: boolean) => Promise<object>> = {
  "memory-deaf": () => runScoped("effect-host")(deaf),
  "memory-unread-replies": (quick) => runScoped("effect-host")(unreadReplies(quick ? 8 : 20)),
  "memory-slow-handler": (quick) => runScoped("effect-host")(slowHandler(quick ? 3_000 : 10_000)),
  "memory-flood": (quick) => runScoped("effect-host")(flood(quick ? 200_000 : 1_000_000))
}

export const run = (name: string, quick: boolean): Promise<object> => {
  const program = programs[name]
  if (program === undefined) throw new Error(`no memory adversary ${name}`)
  return program(quick)
}
