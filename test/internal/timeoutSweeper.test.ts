import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { TestClock } from "effect/testing"
import { TimeoutSweeper } from "../../src/internal/timeoutSweeper.ts"

/** Lets forked fibers reach their next suspension without time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/**
 * A sweeper over a set of deadlines (epoch millis, from the TestClock), in the test's context,
 * recording the deadlines it expired and how many sweeper fibers it started.
 */
const sweeperWith = Effect.gen(function*() {
  const fork = Effect.runForkWith(yield* Effect.context<never>())
  const clock = yield* Clock.Clock
  const deadlines = new Set<number>()
  const expired: Array<number> = []
  let forks = 0
  let over = false
  const sweeper = new TimeoutSweeper({
    clock,
    fork: (effect) => {
      forks++
      return fork(effect)
    },
    isOver: () => over,
    expireDue: (now) => {
      let earliest = Number.POSITIVE_INFINITY
      for (const deadline of deadlines) {
        if (deadline <= now) {
          deadlines.delete(deadline)
          expired.push(deadline)
        } else if (deadline < earliest) {
          earliest = deadline
        }
      }
      return earliest
    }
  })
  /** A call sent now, due in `millis`. */
  const send = (millis: number) => {
    const deadline = sweeper.now() + millis
    deadlines.add(deadline)
    sweeper.watch(deadline, millis)
    return deadline
  }
  return { sweeper, send, expired, forks: () => forks, end: () => void (over = true) }
})

describe("TimeoutSweeper (one timer fiber for all the calls of a connection)", () => {
  it.effect("calls with the same timeout share one sweeper, which expires each at its own deadline", () =>
    Effect.gen(function*() {
      const { send, expired, forks } = yield* sweeperWith
      const first = send(1_000)
      yield* TestClock.adjust("400 millis")
      const second = send(1_000)
      yield* settle
      assert.strictEqual(forks(), 1)
      yield* TestClock.adjust("599 millis")
      assert.deepStrictEqual(expired, [])
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(expired, [first])
      yield* TestClock.adjust("400 millis")
      assert.deepStrictEqual(expired, [first, second])
      assert.strictEqual(forks(), 1)
    }))

  it.effect("a call due before the deadline the sweeper sleeps towards replaces it, and the others still expire on time", () =>
    Effect.gen(function*() {
      const { send, expired, forks } = yield* sweeperWith
      const long = send(30_000)
      yield* settle
      const short = send(1_000)
      yield* settle
      assert.strictEqual(forks(), 2)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(expired, [short])
      yield* TestClock.adjust("29 seconds")
      assert.deepStrictEqual(expired, [short, long])
    }))

  it.effect("with nothing left the sweeper ends; the next call starts a new one", () =>
    Effect.gen(function*() {
      const { send, expired, forks } = yield* sweeperWith
      send(1_000)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(expired.length, 1)
      yield* TestClock.adjust("1 minute")
      send(1_000)
      assert.strictEqual(forks(), 2)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(expired.length, 2)
    }))

  it.effect("stopped, or waking after the connection ended, it expires nothing", () =>
    Effect.gen(function*() {
      const stopped = yield* sweeperWith
      stopped.send(1_000)
      yield* settle
      stopped.sweeper.stop()
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(stopped.expired, [])

      const ended = yield* sweeperWith
      ended.send(1_000)
      yield* settle
      ended.end()
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(ended.expired, [])
    }))
})
