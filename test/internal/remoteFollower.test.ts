import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as RemoteFollower from "../../src/internal/remoteFollower.ts"

interface Registration {
  readonly id: string
  readonly refuse?: boolean
}

/** A follower that records each watch's start and end, refusing the registrations marked so. */
const recorded = Effect.gen(function*() {
  const log: Array<string> = []
  const follower = yield* RemoteFollower.make<Registration, string>(yield* Effect.scope, {
    watch: (registration) =>
      registration.refuse === true
        ? Effect.fail(`${registration.id} is taken`)
        : Effect.acquireRelease(Effect.sync(() => void log.push(`+${registration.id}`)), () => Effect.sync(() => void log.push(`-${registration.id}`))),
    refused: (_, error) => Effect.sync(() => void log.push(`refused: ${error}`))
  })
  return { follower, log }
})

describe("remoteFollower", () => {
  it.effect("one watch per registration: kept while it lasts, ended when it goes or is replaced by another under its id", () =>
    Effect.gen(function*() {
      const { follower, log } = yield* recorded
      const a: Registration = { id: "a" }
      const b: Registration = { id: "b" }
      yield* follower.sync([a, b])
      yield* follower.sync([a, b])
      assert.deepStrictEqual(log, ["+a", "+b"], "a sync with nothing new starts nothing")
      yield* follower.sync([{ id: "a" }])
      assert.deepStrictEqual(log.slice(2), ["-a", "-b", "+a"])
    }).pipe(Effect.scoped))

  it.effect("a registration that cannot be watched is reported, and tried again at the next sync", () =>
    Effect.gen(function*() {
      const { follower, log } = yield* recorded
      const refused: Registration = { id: "x", refuse: true }
      yield* follower.sync([refused])
      yield* follower.sync([refused])
      assert.deepStrictEqual(log, ["refused: x is taken", "refused: x is taken"])
    }).pipe(Effect.scoped))

  it.effect("closing the follower's Scope ends every watch", () =>
    Effect.gen(function*() {
      const log = yield* Effect.scoped(Effect.gen(function*() {
        const { follower, log } = yield* recorded
        yield* follower.sync([{ id: "a" }, { id: "b" }])
        return log
      }))
      assert.sameMembers(log.slice(2), ["-a", "-b"])
    }))
})
