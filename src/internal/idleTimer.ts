/**
 * The idle timer of one client: reaps the running plugin `idleTimeout` after the last call
 * ended, never while a call is in flight.
 *
 * One sleeping fiber per idle period rather than a timer re-forked on every call: a call only
 * moves the deadline (a number). When the sleep ends the deadline is checked: the plugin is
 * reported idle once it has passed with no call in flight, another sleep runs until it
 * otherwise. The fiber does nothing but sleep (the check runs when it ends), so a stop interrupts
 * a bare sleep. The timer's fibers are started by the caller's `run`, which gives them an owner.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"

/** The timer, driven by the client. */
export interface IdleTimer {
  /** Activity ended at `now` (epoch ms): the idle period starts again. */
  readonly arm: (now: number) => void
  /** No reap until the next `arm` (the plugin stopped or crashed). */
  readonly disarm: () => void
}

/** What the timer reads and reports to. */
export interface Options {
  readonly idleTimeout: Duration.Duration | undefined
  readonly clock: Clock.Clock
  /** Forks `effect` on a fiber the client's scope owns. */
  readonly run: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  /** The generation of the running process, if one runs. */
  readonly running: () => number | undefined
  /** Whether calls are in flight. */
  readonly busy: () => boolean
  /** The running process of `generation` has been idle for `idleTimeout`. */
  readonly expire: (generation: number) => Effect.Effect<void>
}

const noTimer: IdleTimer = { arm: () => {}, disarm: () => {} }

/** Makes the timer (one that never fires without an `idleTimeout`). */
export const make = (options: Options): IdleTimer => {
  if (options.idleTimeout === undefined) return noTimer
  const idleMillis = Duration.toMillis(options.idleTimeout)
  const timer: { deadline: number; sleeper: Fiber.Fiber<void> | undefined } = { deadline: 0, sleeper: undefined }
  const sleep = (millis: number) => {
    // Whole milliseconds, at least one: a sleep that ends at once (a fraction of a millisecond
    // left, on a clock with fractions) would check, and sleep, again inside this very call.
    const sleeper = options.run(Effect.sleep(Duration.millis(Math.max(1, Math.ceil(millis)))))
    timer.sleeper = sleeper
    sleeper.addObserver((exit) => {
      if (timer.sleeper !== sleeper) return
      timer.sleeper = undefined
      if (exit._tag === "Success") check()
    })
  }
  const check = () => {
    const generation = options.running()
    if (generation === undefined) return
    const now = options.clock.currentTimeMillisUnsafe()
    if (!options.busy() && now >= timer.deadline) options.run(options.expire(generation))
    else sleep(options.busy() ? idleMillis : timer.deadline - now)
  }
  return {
    arm: (now) => {
      timer.deadline = now + idleMillis
      if (timer.sleeper === undefined && options.running() !== undefined) sleep(idleMillis)
    },
    disarm: () => {
      const sleeper = timer.sleeper
      timer.sleeper = undefined
      sleeper?.interruptUnsafe()
    }
  }
}
