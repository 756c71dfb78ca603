import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { NotificationDrops } from "../../src/internal/notificationDrops.ts"

describe("NotificationDrops (notifications dropped, never silently)", () => {
  it.effect("each drop is counted, in the connection and in the plugin's series of the counter; a warning goes out at the first and every 1000th", () =>
    Effect.gen(function*() {
      const counter = Metric.counter("test_notifications_dropped_total", { description: "drops in this test" })
      let warnings = 0
      const drops = new NotificationDrops({
        counter,
        plugin: "chatty",
        context: yield* Effect.context<never>(),
        log: () => void warnings++
      })
      for (let i = 0; i < 2001; i++) drops.drop()
      assert.strictEqual(drops.count, 2001)
      assert.strictEqual(warnings, 3)
      const series = yield* Metric.value(Metric.withAttributes(counter, { plugin: "chatty" }))
      assert.strictEqual(series.count, 2001)
      const other = yield* Metric.value(Metric.withAttributes(counter, { plugin: "quiet" }))
      assert.strictEqual(other.count, 0)
    }))
})
