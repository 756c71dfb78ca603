/**
 * The plugin side's watch on its host: a plugin process learns that the host died when its
 * parent changes (the kernel reparents an orphan to init or to the nearest subreaper). stdin EOF
 * says the same, but only when no other process holds the write end of the plugin's stdin (a
 * sibling or a grandchild of the host that inherited it keeps the pipe open); the parent check
 * does not depend on the pipe. `process.ppid` asks the kernel each time it is read.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/**
 * Completes with the new parent pid once this process's parent is no longer `parent`, checking
 * every `interval` on the Clock.
 *
 * @internal
 */
export const parentChanged = (parent: number, interval: Duration.Input = "1 second"): Effect.Effect<number> => {
  const every = Duration.fromInputUnsafe(interval)
  const check: Effect.Effect<number> = Effect.suspend(() => {
    const now = process.ppid
    return now !== parent ? Effect.succeed(now) : Effect.andThen(Effect.sleep(every), check)
  })
  return check
}
