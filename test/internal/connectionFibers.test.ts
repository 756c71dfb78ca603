import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import { ConnectionFibers } from "../../src/internal/connectionFibers.ts"

/** Fibers of a connection whose Scope the test closes, with the plugin's log annotations. */
const fibersWith = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const context = yield* Effect.annotateLogs(Effect.context<never>(), { plugin: "p" })
  return { scope, fibers: new ConnectionFibers(context, scope) }
})

describe("ConnectionFibers (the fibers a connection runs besides its callers')", () => {
  it.effect("tasks run with the connection's context: its log annotations", () =>
    Effect.gen(function*() {
      const { fibers } = yield* fibersWith
      let annotations: Readonly<Record<string, unknown>> = {}
      fibers.run(Effect.gen(function*() {
        annotations = yield* References.CurrentLogAnnotations
      }))
      assert.deepStrictEqual(annotations, { plugin: "p" })
    }))

  it.effect("a task still running when the connection's Scope closes is interrupted; one already over is not kept", () =>
    Effect.gen(function*() {
      const { scope, fibers } = yield* fibersWith
      const interrupted = yield* Deferred.make<void>()
      let quickRuns = 0
      for (let i = 0; i < 1000; i++) fibers.run(Effect.sync(() => void quickRuns++))
      fibers.run(Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))))
      yield* Effect.yieldNow
      assert.strictEqual(quickRuns, 1000)
      assert.isFalse(Deferred.isDoneUnsafe(interrupted))
      yield* Scope.close(scope, Exit.void)
      yield* Deferred.await(interrupted)
    }))

})
