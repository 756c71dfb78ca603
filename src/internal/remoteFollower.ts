/**
 * One watch per registered remote plugin, kept in line with the registrations as they change:
 * `PluginHealth` follows the `PluginManager`'s remote plugins with it. Each watch lives in a
 * Scope of its own under the follower's; a plugin that is unregistered, or registered anew (a
 * different registration under the same id), has its watch ended (and a new one started for
 * the new registration). A watch that cannot start (its name is taken, say) is reported and
 * tried again at the next change. Syncs run one at a time, so a background sync and one asked
 * for by a caller never start the same watch twice.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"

/** Brings the watches in line with the registrations now. */
export interface RemoteFollower<R> {
  readonly sync: (registrations: ReadonlyArray<R>) => Effect.Effect<void>
}

/** What the follower does with each registration. */
export interface Options<R, E> {
  /** Watches one registration until the Scope it is given closes. */
  readonly watch: (registration: R) => Effect.Effect<void, E, Scope.Scope>
  /** Says why a registration could not be watched. */
  readonly refused: (registration: R, error: E) => Effect.Effect<void>
}

interface Followed<R> {
  readonly registration: R
  readonly scope: Scope.Closeable
}

/** Makes a follower whose watches live under `scope` (closing it ends them all). */
export const make = <R extends { readonly id: string }, E>(
  scope: Scope.Scope,
  options: Options<R, E>
): Effect.Effect<RemoteFollower<R>> =>
  Effect.map(Semaphore.make(1), (lock) => {
    const followed = new Map<string, Followed<R>>()

    const start = (registration: R) =>
      Effect.gen(function*() {
        const watchScope = yield* Scope.fork(scope, "sequential")
        const exit = yield* Effect.exit(Scope.provide(options.watch(registration), watchScope))
        if (Exit.isSuccess(exit)) {
          followed.set(registration.id, { registration, scope: watchScope })
          return
        }
        yield* Scope.close(watchScope, Exit.void)
        if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.interrupt
        const error = Cause.findErrorOption(exit.cause)
        yield* Option.isSome(error)
          ? options.refused(registration, error.value)
          : Effect.logError(`watching remote plugin ${registration.id} died`, Cause.pretty(exit.cause))
      })

    const sync = (registrations: ReadonlyArray<R>): Effect.Effect<void> =>
      lock.withPermits(1)(Effect.gen(function*() {
        const current = new Map(registrations.map((registration) => [registration.id, registration] as const))
        for (const [id, { registration, scope: watchScope }] of [...followed]) {
          if (current.get(id) === registration) continue
          followed.delete(id)
          yield* Scope.close(watchScope, Exit.void)
        }
        for (const registration of registrations) {
          if (!followed.has(registration.id)) yield* start(registration)
        }
      }))

    return { sync }
  })
