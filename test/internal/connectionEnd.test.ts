import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { TestClock } from "effect/testing"
import { ConnectionEnd } from "../../src/internal/connectionEnd.ts"
import * as PluginClientError from "../../src/PluginClientError.ts"

const exited = (code: number) => new PluginClientError.Exited({ code, signal: null, requested: false, stderrExcerpt: "" })

/** The exit code of an `Exited` reason (and that it is one). */
const exitCode = (reason: PluginClientError.Reason) => {
  assert.instanceOf(reason, PluginClientError.Exited)
  return reason.code
}

/** An end whose timer runs in the test's context (its TestClock), recording what `onClose` saw. */
const endWith = Effect.map(Effect.context<never>(), (context) => {
  const closes: Array<{ readonly isOver: boolean; readonly done: boolean }> = []
  const end: ConnectionEnd = new ConnectionEnd({
    fork: Effect.runForkWith(context),
    onClose: () => void closes.push({ isOver: end.isOver, done: Deferred.isDoneUnsafe(end.done) })
  })
  return { end, closes }
})

/** Lets the drain timer's fiber reach its sleep (or its end) without time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

describe("ConnectionEnd (why and when a connection ends)", () => {
  it.effect("the first close wins: onClose runs once, after the reason is recorded and before done completes", () =>
    Effect.gen(function*() {
      const { end, closes } = yield* endWith
      assert.isFalse(end.isOver)
      end.close(exited(1))
      end.close(exited(2))
      end.scopeClosed()
      assert.deepStrictEqual(closes, [{ isOver: true, done: false }])
      assert.isTrue(Deferred.isDoneUnsafe(end.done))
      assert.strictEqual(exitCode(end.reason()), 1)
    }))

  it.effect("a reason given as a function is built on the first ask, once; before any end the reason is Closed", () =>
    Effect.gen(function*() {
      const { end } = yield* endWith
      assert.instanceOf(end.reason(), PluginClientError.Closed)
      let built = 0
      end.close(() => {
        built++
        return exited(3)
      })
      assert.isTrue(end.isOver)
      assert.strictEqual(built, 0)
      const first = end.reason()
      assert.strictEqual(end.reason(), first)
      assert.strictEqual(end.current, first)
      assert.strictEqual(built, 1)
    }))

  it.effect("the other side gone after its output ended ends the connection at once with its reason", () =>
    Effect.gen(function*() {
      const { end } = yield* endWith
      end.outputEnd()
      end.otherSideGone(exited(4))
      assert.strictEqual(exitCode(end.reason()), 4)
    }))

  it.effect("the other side gone: the rest of its output is waited for, and its end ends the connection", () =>
    Effect.gen(function*() {
      const { end } = yield* endWith
      end.otherSideGone(exited(5))
      yield* settle
      yield* TestClock.adjust("100 millis")
      assert.isFalse(end.isOver)
      end.outputEnd()
      yield* Deferred.await(end.done)
      assert.strictEqual(exitCode(end.reason()), 5)
    }))

  it.effect("an output that never ends ends the connection 200 ms after the other side went, not before", () =>
    Effect.gen(function*() {
      const { end, closes } = yield* endWith
      end.otherSideGone(exited(6))
      yield* settle
      yield* TestClock.adjust("199 millis")
      assert.isFalse(end.isOver)
      yield* TestClock.adjust("1 millis")
      yield* Deferred.await(end.done)
      assert.strictEqual(exitCode(end.reason()), 6)
      assert.strictEqual(closes.length, 1)
    }))

  it.effect("the Scope closing after the other side went ends the connection with the other side's reason, not Closed", () =>
    Effect.gen(function*() {
      const { end } = yield* endWith
      end.otherSideGone(exited(7))
      yield* settle
      end.scopeClosed()
      assert.isTrue(end.isOver)
      assert.strictEqual(exitCode(end.reason()), 7)
    }))

  it.effect("the Scope closing while the other side is still there ends the connection with Closed", () =>
    Effect.gen(function*() {
      const { end } = yield* endWith
      end.scopeClosed()
      assert.instanceOf(end.reason(), PluginClientError.Closed)
      assert.include(end.reason().message, "connection closed")
    }))
})
