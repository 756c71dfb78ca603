/**
 * The stop rules of a scatter-gather request (`Broker.requestMany`), shared by every broker
 * implementation: an implementation only opens a reply inbox and sends the request; this module
 * turns the inbox into a stream that ends at the first of three limits — `maxWait` after the
 * request was sent, `maxReplies` replies, or a `quiet` gap after the latest reply (once one has
 * arrived). These are the NATS client's `requestMany` strategies (`timer`, `count`, `stall`),
 * combined instead of exclusive, and timed on the Effect `Clock`, so `TestClock` drives them.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** When a scatter-gather request stops collecting replies (see `Broker.RequestManyOptions`). */
export interface Limits {
  readonly maxWait: Duration.Input
  readonly maxReplies?: number | undefined
  readonly quiet?: Duration.Input | undefined
}

/**
 * The replies an inbox receives, until a limit is reached. `open` subscribes the inbox and sends
 * the request in the stream's Scope (so the inbox closes when the stream ends) and returns the
 * queue the replies arrive on; a failed queue fails the stream.
 */
export const gather = <E>(
  open: Effect.Effect<Queue.Dequeue<Uint8Array, E | Cause.Done>, E, Scope.Scope>,
  limits: Limits
): Stream.Stream<Uint8Array, E> =>
  Stream.unwrap(Effect.gen(function*() {
    const maxWaitMillis = Duration.toMillis(Duration.fromInputUnsafe(limits.maxWait))
    const quietMillis = limits.quiet === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(limits.quiet))
    const maxReplies = limits.maxReplies ?? Number.POSITIVE_INFINITY
    const queue = yield* open
    const deadline = (yield* Clock.currentTimeMillis) + maxWaitMillis
    let received = 0
    const pull = Effect.gen(function*() {
      if (received >= maxReplies) return yield* Cause.done()
      const left = deadline - (yield* Clock.currentTimeMillis)
      const wait = received > 0 && quietMillis !== undefined ? Math.min(left, quietMillis) : left
      if (wait <= 0) return yield* Cause.done()
      const next = yield* Queue.take(queue).pipe(Effect.timeoutOption(Duration.millis(wait)))
      if (Option.isNone(next)) return yield* Cause.done()
      received++
      return [next.value] as const
    })
    return Stream.fromPull(Effect.succeed(pull))
  }))
