/**
 * When the calls of a connection (`RpcPeer`) time out: at most one sweeper fiber per connection
 * instead of a timer (and a race) per call.
 *
 * The sweeper sleeps until the earliest deadline, has its owner expire what is due, sleeps again
 * until the next deadline, and ends when nothing is pending. A call starts one when none runs; a
 * call whose deadline comes before the one the sweeper sleeps towards (a shorter timeout than
 * the calls before it) replaces it. Calls with the usual timeout never do, so a busy connection
 * keeps one sleeping fiber, and the end of the connection stops it: no race, no wake-up signal.
 * Deadlines come from `Clock` (its wall or its monotonic time, as the owner counts them), so
 * `TestClock` drives them.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"

/** Monotonic nanoseconds (`Clock.monotonicTimeNanosUnsafe`) in milliseconds. */
export const millisOf = (nanos: bigint): number => Number(nanos) / 1_000_000

/**
 * The `Clock`'s monotonic time in milliseconds, for deadlines that a jump of the wall clock must
 * not move (and the cheaper of the two clocks to read).
 */
export const monotonicMillis = (clock: Clock.Clock) => (): number => millisOf(clock.monotonicTimeNanosUnsafe())

/**
 * The timeout sweeper of one connection.
 */
export class TimeoutSweeper {
  private readonly clock: Clock.Clock
  private readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  private readonly isOver: () => boolean
  private readonly expireDue: (now: number) => number
  private readonly currentTime: () => number
  /** The sweeper, while one runs, and the deadline it sleeps towards. */
  private fiber: Fiber.Fiber<void> | undefined = undefined
  private target = Number.POSITIVE_INFINITY

  constructor(options: {
    readonly clock: Clock.Clock
    /** Starts the sweeper (the connection's own fibers). */
    readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
    /** Whether the connection has ended: a sweeper waking after it does nothing. */
    readonly isOver: () => boolean
    /** Expires the calls due at `now`; the earliest deadline of those left (infinity if none). */
    readonly expireDue: (now: number) => number
    /**
     * The current instant in the milliseconds deadlines are counted in, from `clock`. Default
     * epoch millis; {@link monotonicMillis} counts them on the monotonic clock.
     */
    readonly now?: (() => number) | undefined
  }) {
    this.clock = options.clock
    this.fork = options.fork
    this.isOver = options.isOver
    this.expireDue = options.expireDue
    const clock = options.clock
    this.currentTime = options.now ?? (() => clock.currentTimeMillisUnsafe())
  }

  /** The instant deadlines are counted from (its owner's `now`; default epoch millis from `Clock`). */
  now(): number {
    return this.currentTime()
  }

  /** A call was sent with `deadline`, `inMillis` from now: the sweeper wakes up for it. */
  watch(deadline: number, inMillis: number): void {
    if (deadline >= this.target) return
    this.fiber?.interruptUnsafe()
    this.target = deadline
    this.fiber = this.fork(Effect.andThen(Effect.sleep(Duration.millis(inMillis)), this.sweep))
  }

  /** Stops the sweeper: the connection ended. */
  stop(): void {
    const fiber = this.fiber
    this.fiber = undefined
    this.target = Number.POSITIVE_INFINITY
    fiber?.interruptUnsafe()
  }

  /**
   * One pass: a call resumed by `expireDue` may call again at once (its deadline is later than
   * `target`, so it starts no sweeper of its own) and is seen by this same pass.
   */
  private readonly sweep: Effect.Effect<void> = Effect.suspend(() => {
    if (this.isOver()) return Effect.void
    const now = this.now()
    const earliest = this.expireDue(now)
    this.target = earliest
    if (earliest === Number.POSITIVE_INFINITY) {
      this.fiber = undefined
      return Effect.void
    }
    // Whole milliseconds, at least one: on a clock with fractions (the monotonic one, or a
    // TestClock moved by fractions), a sleep of what is left could end at once and sweep again
    // at the same instant, for ever.
    return Effect.andThen(Effect.sleep(Duration.millis(Math.max(1, Math.ceil(earliest - now)))), this.sweep)
  })
}
