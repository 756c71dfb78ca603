import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { TestClock } from "effect/testing"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as RestartWindow from "../src/RestartWindow.ts"

const EPOCH = Date.UTC(2026, 0, 1)

describe("RestartWindow", () => {
  it.effect("3 crashes within 60 s: exceeded exactly at the 3rd", () =>
    Effect.gen(function*() {
      const window = yield* RestartWindow.make("60 seconds", 3)
      assert.deepStrictEqual(yield* window.record, { count: 1, exceeded: false })
      assert.isFalse(yield* window.exceeded)
      yield* TestClock.adjust("20 seconds")
      assert.deepStrictEqual(yield* window.record, { count: 2, exceeded: false })
      assert.isFalse(yield* window.exceeded)
      yield* TestClock.adjust("20 seconds")
      assert.deepStrictEqual(yield* window.record, { count: 3, exceeded: true })
      assert.isTrue(yield* window.exceeded)
      assert.strictEqual(yield* window.count, 3)
    }))

  it.effect("3 crashes spread over more than 60 s never exceed (pruned on record)", () =>
    Effect.gen(function*() {
      const window = yield* RestartWindow.make("60 seconds", 3)
      const seen: Array<RestartWindow.Recorded> = []
      // crashes at 0 s, 35 s, 70 s, 105 s, 140 s: never three within any 60 s.
      for (let i = 0; i < 5; i++) {
        if (i > 0) yield* TestClock.adjust("35 seconds")
        seen.push(yield* window.record)
      }
      assert.deepStrictEqual(seen, [
        { count: 1, exceeded: false },
        { count: 2, exceeded: false },
        { count: 2, exceeded: false },
        { count: 2, exceeded: false },
        { count: 2, exceeded: false }
      ])
      assert.isFalse(yield* window.exceeded)
    }))

  it.effect("count decreases as time passes (pruned on read)", () =>
    Effect.gen(function*() {
      const window = yield* RestartWindow.make("60 seconds", 3)
      yield* window.record // t = 0
      yield* TestClock.adjust("10 seconds")
      yield* window.record // t = 10 s
      yield* TestClock.adjust("10 seconds")
      yield* window.record // t = 20 s
      assert.isTrue(yield* window.exceeded)
      const counts: Array<number> = []
      for (const at of [30, 60, 70, 80]) {
        yield* TestClock.setTime(at * 1000)
        counts.push(yield* window.count)
      }
      assert.deepStrictEqual(counts, [3, 2, 1, 0])
      assert.isFalse(yield* window.exceeded)
    }))

  it.effect("a crash exactly `window` old is outside the window", () =>
    Effect.gen(function*() {
      const window = yield* RestartWindow.make("60 seconds", 2)
      yield* window.record // t = 0
      yield* TestClock.adjust(Duration.millis(59_999))
      assert.strictEqual(yield* window.count, 1)
      yield* TestClock.adjust(Duration.millis(1)) // t = 60 s: the first crash is exactly 60 s old
      assert.strictEqual(yield* window.count, 0)
      // the same boundary on record: a crash at 60 s does not see the one at 0 s
      const recorded = yield* window.record
      assert.deepStrictEqual(recorded, { count: 1, exceeded: false })
      yield* TestClock.adjust(Duration.millis(59_999))
      assert.deepStrictEqual(yield* window.record, { count: 2, exceeded: true })
    }))

  it.effect("clear forgets the crashes but keeps `last`", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(EPOCH)
      const window = yield* RestartWindow.make("1 minute", 3)
      yield* window.record
      yield* window.record
      yield* TestClock.adjust("1 second")
      yield* window.record
      assert.isTrue(yield* window.exceeded)
      yield* window.clear
      assert.strictEqual(yield* window.count, 0)
      assert.isFalse(yield* window.exceeded)
      assert.strictEqual(yield* window.last, EPOCH + 1000)
      assert.deepStrictEqual(yield* window.record, { count: 1, exceeded: false })
    }))

  it.effect("last: undefined before any crash, then the latest crash even after it left the window", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(EPOCH)
      const window = yield* RestartWindow.make("60 seconds", 3)
      assert.isUndefined(yield* window.last)
      yield* window.record
      yield* TestClock.adjust("5 seconds")
      yield* window.record
      assert.strictEqual(yield* window.last, EPOCH + 5000)
      yield* TestClock.adjust("10 minutes")
      assert.strictEqual(yield* window.count, 0)
      assert.strictEqual(yield* window.last, EPOCH + 5000)
    }))

  it.effect("fromPolicy takes restartWindow and restartCap from the policy", () =>
    Effect.gen(function*() {
      const policy = yield* LifetimePolicy.make({ restartWindow: "10 seconds", restartCap: 2 })
      const window = yield* RestartWindow.fromPolicy(policy)
      assert.strictEqual(Duration.toMillis(window.window), 10_000)
      assert.strictEqual(window.cap, 2)
      yield* window.record
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(yield* window.record, { count: 1, exceeded: false })
      yield* TestClock.adjust("9 seconds")
      assert.deepStrictEqual(yield* window.record, { count: 2, exceeded: true })
    }))

  it.effect("concurrent records are all counted", () =>
    Effect.gen(function*() {
      const window = yield* RestartWindow.make("60 seconds", 50)
      const results = yield* Effect.all(Array.from({ length: 50 }, () => window.record), { concurrency: "unbounded" })
      assert.deepStrictEqual(results.map((r) => r.count).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1))
      assert.strictEqual(results.filter((r) => r.exceeded).length, 1)
      assert.strictEqual(yield* window.count, 50)
    }))
})
