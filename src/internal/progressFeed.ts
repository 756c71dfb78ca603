/**
 * The progress values of one call (`RpcPeer` with `onProgress`), handed to its callback in the
 * order they came.
 *
 * A value read while the callback is not running is handed over at once, in the read callback;
 * one that suspends makes later values wait, and the fiber running it delivers them in order.
 * At most `maxWaiting` wait: beyond it the newest replaces the last waiting one, so a slow
 * callback skips values but always ends on the latest.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"

/**
 * Delivers one call's progress to its callback.
 */
export class ProgressFeed {
  private readonly callback: (value: unknown) => Effect.Effect<void>
  private readonly run: (effect: Effect.Effect<void>) => void
  private readonly maxWaiting: number
  private waiting: Array<unknown> = []
  private delivering = false

  constructor(options: {
    readonly callback: (value: unknown) => Effect.Effect<void>
    /** Starts an effect at once (the connection's own fibers, interrupted with it). */
    readonly run: (effect: Effect.Effect<void>) => void
    readonly maxWaiting?: number | undefined
  }) {
    this.callback = options.callback
    this.run = options.run
    this.maxWaiting = Math.max(1, options.maxWaiting ?? 64)
  }

  /** Hands over one value. */
  offer(value: unknown): void {
    if (!this.delivering) {
      this.delivering = true
      this.run(Effect.andThen(this.handle(value), this.deliverWaiting))
    } else if (this.waiting.length < this.maxWaiting) {
      this.waiting.push(value)
    } else {
      this.waiting[this.waiting.length - 1] = value
    }
  }

  private handle(value: unknown): Effect.Effect<void> {
    return Effect.suspend(() => this.callback(value)).pipe(
      Effect.catchCause((cause) => Effect.logWarning("onProgress failed", Cause.pretty(cause)))
    )
  }

  private readonly deliverWaiting: Effect.Effect<void> = Effect.suspend(() => {
    if (this.waiting.length === 0) {
      this.delivering = false
      return Effect.void
    }
    const next = this.waiting.shift()
    return Effect.andThen(this.handle(next), this.deliverWaiting)
  })
}
