/**
 * The worker SDK hears the host: notifications from the host (`client.notify`) reach the
 * worker's `notifications` handlers in order; one with no handler is counted and logged, never
 * silently lost, and neither it nor a failing handler ends the connection.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginWorker from "../src/PluginWorker.ts"
import { eventually, fixture, launchers, liveChildren, liveWith, node } from "./support/processes.ts"
import { connected } from "./support/workerPair.ts"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const unhandled = Effect.map(Metric.value(PluginWorker.notificationsUnhandledTotal), (state) => state.count)

describe("PluginWorker notifications from the host (TestClock, in-memory host)", () => {
  it.effect("each notification reaches its handler, in order, with its params", () =>
    Effect.gen(function*() {
      const seen: Array<unknown> = []
      const { peer } = yield* connected({
        handlers: { echo: (params) => Effect.succeed(params) },
        notifications: { configChanged: (params) => Effect.sync(() => void seen.push(params)) }
      })
      for (let i = 0; i < 5; i++) yield* peer.notify("configChanged", { version: i })
      assert.strictEqual(yield* peer.request("echo", "after"), "after")
      yield* settle
      assert.deepStrictEqual(seen, [0, 1, 2, 3, 4].map((version) => ({ version })))
    }))

  it.effect("a notification with no handler is counted, and the connection goes on", () =>
    Effect.gen(function*() {
      const before = yield* unhandled
      const { peer } = yield* connected({ handlers: { echo: (params) => Effect.succeed(params) } })
      yield* peer.notify("nobodyListens", {})
      yield* peer.notify("nobodyListens", {})
      assert.strictEqual(yield* peer.request("echo", 1), 1)
      yield* settle
      assert.strictEqual((yield* unhandled) - before, 2)
    }))

  it.effect("a failing notification handler does not end the connection; later notifications still arrive", () =>
    Effect.gen(function*() {
      const seen: Array<unknown> = []
      const { peer } = yield* connected({
        handlers: { echo: (params) => Effect.succeed(params) },
        notifications: {
          flaky: (params) => params === "boom" ? Effect.fail("boom") : Effect.sync(() => void seen.push(params))
        }
      })
      yield* peer.notify("flaky", "boom")
      yield* peer.notify("flaky", "fine")
      assert.strictEqual(yield* peer.request("echo", 2), 2)
      yield* settle
      assert.deepStrictEqual(seen, ["fine"])
    }))

  it.effect("a notification handler can call the host back", () =>
    Effect.gen(function*() {
      const { peer } = yield* connected(
        {
          handlers: {},
          notifications: {
            ping: () => Effect.flatMap(PluginWorker.HostConnection, (host) => host.notify("pong", { from: "worker" }))
          }
        },
        {}
      )
      yield* peer.notify("ping", {})
      yield* settle
      assert.isAtLeast((yield* peer.stats).notificationsReceived, 1)
    }))
})

for (const launcher of launchers) {
  describe(`PluginWorker notifications from the host (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    it.live("client.notify reaches the worker's handler, which answers with a notification of its own", () =>
      Effect.gen(function*() {
        const applied: Array<unknown> = []
        const client = yield* PluginClient.make(
          { name: "notified-worker", executable: node, args: [fixture("notified-worker.ts")] },
          { onNotification: (n) => Effect.sync(() => n.method === "configApplied" ? void applied.push(n.params) : undefined) }
        )
        yield* client.notify("configChanged", { version: 1 })
        yield* client.notify("configChanged", { version: 2 })
        assert.isTrue(yield* eventually(() => applied.length === 2, 10_000), `applied: ${JSON.stringify(applied)}`)
        assert.deepStrictEqual(applied, [{ version: 1 }, { version: 2 }])
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 30_000)
  })
}
