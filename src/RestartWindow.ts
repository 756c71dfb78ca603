/**
 * The sliding window of recent crashes that decides when a plugin has crashed too often:
 * `RestartWindow`, devboy's "3 crashes within 60 s → disabled" rule.
 *
 * This module owns the crash instants (epoch millis from Effect's `Clock`, so `TestClock` drives
 * it) and their pruning. Unlike the source system, which only pruned on spawn (so old crashes
 * could disable a healthy plugin), crashes older than the window are dropped on **every**
 * `record` and every read. A crash exactly `window` old is outside the window: a crash at `t`
 * counts while `now - t < window`. It is pure policy: no process code. A `PluginClient` keeps
 * the same window inside its restart history, where one decision weighs it against the backoff.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as RestartDecision from "./internal/restartDecision.ts"
import type * as LifetimePolicy from "./LifetimePolicy.ts"

/**
 * What {@link RestartWindow.record} reports: the crashes within the window, this one included,
 * and whether they reached the cap (`count >= cap`).
 *
 * @category models
 */
export interface Recorded {
  readonly count: number
  readonly exceeded: boolean
}

/**
 * A sliding window of crash instants with a cap.
 *
 * @category models
 */
export interface RestartWindow {
  /** The window's length. */
  readonly window: Duration.Duration
  /** Crashes within the window that count as "exceeded". */
  readonly cap: number
  /** Records a crash now, prunes, and reports the count within the window and whether it reached the cap. */
  readonly record: Effect.Effect<Recorded>
  /** Prunes, then counts the crashes within the window. */
  readonly count: Effect.Effect<number>
  /** Prunes, then says whether the crashes within the window reached the cap. */
  readonly exceeded: Effect.Effect<boolean>
  /** Forgets every crash in the window (`clearDisabled`). `last` is kept: it is history, not a count. */
  readonly clear: Effect.Effect<void>
  /**
   * Epoch millis of the most recent crash ever recorded, or `undefined` if none. Kept even when
   * it has left the window and after `clear`, so health reports can still show when the plugin
   * last crashed.
   */
  readonly last: Effect.Effect<number | undefined>
}

interface State {
  /** Crash instants within the window (as of the last prune), oldest first. */
  readonly crashes: ReadonlyArray<number>
  readonly last: number | undefined
}

/**
 * A new, empty window of length `window` (any `Duration.Input`) with cap `cap`. The cap is not
 * validated here (`LifetimePolicy.make` does); a cap below 1 is always exceeded.
 *
 * @category constructors
 */
export const make = (window: Duration.Input, cap: number): Effect.Effect<RestartWindow> =>
  Effect.gen(function*() {
    const length = Duration.fromInputUnsafe(window)
    const windowMillis = Duration.toMillis(length)
    const state = yield* Ref.make<State>({ crashes: [], last: undefined })

    const prune = (crashes: ReadonlyArray<number>, now: number): ReadonlyArray<number> =>
      RestartDecision.pruneWindow(windowMillis, crashes, now)

    const pruned = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(state, (s): [ReadonlyArray<number>, State] => {
        const crashes = prune(s.crashes, now)
        return [crashes, crashes.length === s.crashes.length ? s : { ...s, crashes }]
      }))

    const count = Effect.map(pruned, (crashes) => crashes.length)

    const record = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(state, (s): [Recorded, State] => {
        const crashes = [...prune(s.crashes, now), now]
        return [{ count: crashes.length, exceeded: crashes.length >= cap }, { crashes, last: now }]
      }))

    return {
      window: length,
      cap,
      record,
      count,
      exceeded: Effect.map(count, (n) => n >= cap),
      clear: Ref.update(state, (s) => ({ ...s, crashes: [] })),
      last: Effect.map(Ref.get(state), (s) => s.last)
    }
  })

/**
 * A window with the policy's `restartWindow` and `restartCap`.
 *
 * @category constructors
 */
export const fromPolicy = (policy: LifetimePolicy.LifetimePolicy): Effect.Effect<RestartWindow> =>
  make(policy.restartWindow, policy.restartCap)
