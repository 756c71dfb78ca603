import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { ProgressFeed } from "../../src/internal/progressFeed.ts"

describe("ProgressFeed (one call's progress, to its callback)", () => {
  it.effect("values go to the callback in order; one that falls behind skips to the latest", () =>
    Effect.gen(function*() {
      const fork = Effect.runForkWith(yield* Effect.context<never>())
      const gate = yield* Deferred.make<void>()
      const seen: Array<unknown> = []
      const feed = new ProgressFeed({
        callback: (value) => Effect.andThen(Effect.sync(() => void seen.push(value)), value === 1 ? Deferred.await(gate) : Effect.void),
        run: (effect) => void fork(effect),
        maxWaiting: 2
      })
      feed.offer(1)
      for (const value of [2, 3, 4]) feed.offer(value)
      assert.deepStrictEqual(seen, [1], "the callback is still on the first value")
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.yieldNow
      assert.deepStrictEqual(seen, [1, 2, 4], "3 was replaced by the newer 4")
      feed.offer(5)
      assert.deepStrictEqual(seen, [1, 2, 4, 5], "an idle feed hands a value over at once")
    }))

  it.effect("a failing callback is logged and the next value still goes through", () =>
    Effect.gen(function*() {
      const fork = Effect.runForkWith(yield* Effect.context<never>())
      const seen: Array<unknown> = []
      const feed = new ProgressFeed({
        callback: (value) => value === 1 ? Effect.die(new Error("bad callback")) : Effect.sync(() => void seen.push(value)),
        run: (effect) => void fork(effect)
      })
      feed.offer(1)
      feed.offer(2)
      yield* Effect.yieldNow
      assert.deepStrictEqual(seen, [2])
    }))
})
