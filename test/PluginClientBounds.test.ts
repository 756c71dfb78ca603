/**
 * A client's memory stays bounded by its policy's `maxQueuedBytes` when a plugin stops reading
 * or floods it, with real processes: the figures of issue 16 ("Bounded by bytes") at test scale.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as RpcPeer from "../src/RpcPeer.ts"
import { eventually, fixture, live, liveChildren, node } from "./support/processes.ts"

const MiB = 1024 * 1024

describe("PluginClient bounded by bytes (real processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  it.live("20k notifications of 64 KiB to a plugin that never reads: Backpressure after the default 32 MiB, host memory bounded", () =>
    Effect.gen(function*() {
      const client = yield* PluginClient.make({ name: "deaf", executable: node, args: [fixture("rpc-plugin.mjs"), "--no-read"] })
      yield* client.start
      const payload = "x".repeat(64 * 1024)
      const rssBefore = process.memoryUsage().rss
      let peak = rssBefore
      let sent = 0
      let refused: PluginClientError.Reason | undefined
      for (let i = 0; i < 20_000; i++) {
        const result = yield* Effect.result(client.notify("n", payload))
        if (result._tag === "Success") sent++
        else refused ??= result.failure.reason
        if (i % 500 === 0) {
          peak = Math.max(peak, process.memoryUsage().rss)
          yield* Effect.yieldNow
        }
      }
      peak = Math.max(peak, process.memoryUsage().rss)
      assert.instanceOf(refused, PluginClientError.Backpressure)
      assert.strictEqual(refused.limit, LifetimePolicy.defaultPolicy.maxQueuedBytes)
      assert.isAtMost(sent, 32 * 16 + 4, "32 MiB of 64 KiB notifications, and what the pipe took")
      const health = yield* client.health
      assert.isAtMost(health.queuedBytes, 32 * MiB)
      // Without the bound the host grew by 1.3 GB; with it, the 32 MiB queued and garbage.
      assert.isBelow(peak - rssBefore, 250 * MiB, `RSS grew by ${Math.round((peak - rssBefore) / MiB)} MiB`)
    }).pipe(Effect.scoped, Effect.provide(live)), 60_000)

  it.live("notifications dropped for a stuck handler are counted in health and in the metric", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const client = yield* PluginClient.make({ name: "chatty", executable: node, args: [fixture("rpc-plugin.mjs")] }, {
        // A quarter of it, 64 KiB, for notifications waiting for the handler.
        policy: LifetimePolicy.makeUnsafe({ maxQueuedBytes: 256 * 1024 }),
        onNotification: () => Deferred.await(gate)
      })
      yield* client.request("flood", { count: 100, bytes: 10_000 }, { timeout: "30 seconds" })
      const health = yield* client.health
      // One runs (stuck), about six wait behind it, the rest are dropped.
      assert.isAtLeast(health.notificationsDropped, 100 - 1 - 7)
      const dropped = yield* Metric.value(Metric.withAttributes(RpcPeer.notificationsDroppedTotal, { plugin: "chatty" }))
      assert.strictEqual(dropped.count, health.notificationsDropped)
      yield* Deferred.succeed(gate, undefined)
    }).pipe(Effect.scoped, Effect.provide(live)), 30_000)
})
