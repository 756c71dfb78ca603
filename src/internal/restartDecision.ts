/**
 * The restart decision: what follows a plugin's crash, as one pure function of the policy, the
 * crash history and the instant.
 *
 * This module owns {@link RestartHistory} (the crash instants within the restart window, the
 * consecutive-crash count, the last crash), its pure updates ({@link record} on a crash,
 * {@link started} on a successful (re)initialize, {@link cleared} on `clearDisabled`) and
 * {@link decide}, which turns a history into {@link RestartDecision}: `Recover` (the next call
 * respawns), `Backoff` (restart after a delay) or `Disable`. The two regimes of a
 * `LifetimePolicy` meet here and nowhere else:
 *
 * - without a backoff (devboy): `restartCap` crashes within `restartWindow` disable the plugin
 *   until `clearDisabled`; any fewer and the next call respawns it;
 * - with a backoff (Paperclip): crash `n` of a run is followed by restart `n` after
 *   `initial · factor^(n-1)` ±jitter (at most `max`), so `giveUpAfter: 10` means ten restarts
 *   and the eleventh crash disables. A successful (re)initialize ends the run (`started`), and so
 *   does a crash `resetAfter` after the previous one.
 *
 * Time is an argument (epoch millis from `Clock`) and so is the jitter (a number in `[0, 1)`,
 * from Effect's `Random` in the client), so every decision can be replayed in a table test.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as LifetimePolicy from "../LifetimePolicy.ts"
import { formatDuration } from "./formatDuration.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/** What the host remembers of a plugin's crashes. */
export interface RestartHistory {
  /** Crash instants (epoch millis) within the restart window as of the last `record`, oldest first. */
  readonly crashes: ReadonlyArray<number>
  /**
   * Crashes since the last successful (re)initialize; with a backoff, also since the last gap of
   * `resetAfter` between two crashes.
   */
  readonly consecutive: number
  /** The most recent crash ever recorded; kept by `started` and `cleared`, it is history. */
  readonly lastCrashAt: number | undefined
}

/** Why a plugin is disabled. */
export type DisableReason =
  /** The sliding window holds `restartCap` crashes (policies without a backoff). */
  | { readonly _tag: "CapReached"; readonly crashes: number; readonly window: Duration.Duration }
  /** `giveUpAfter` restarts in a row were followed by another crash (policies with a backoff). */
  | { readonly _tag: "GaveUp"; readonly restarts: number; readonly crashes: number }

/** What follows a crash. */
export type RestartDecision =
  /** Nothing scheduled: the next call respawns the plugin. */
  | { readonly _tag: "Recover" }
  /** Restart number `restart` of this run, after `delay`. */
  | { readonly _tag: "Backoff"; readonly delay: Duration.Duration; readonly restart: number }
  /** No more restarts until `clearDisabled`. */
  | { readonly _tag: "Disable"; readonly reason: DisableReason }

// ---------------------------------------------------------------------------------------------
// history
// ---------------------------------------------------------------------------------------------

/** No crash yet. */
export const empty: RestartHistory = { crashes: [], consecutive: 0, lastCrashAt: undefined }

/**
 * The crash instants still within a window of `windowMillis` at `now`: a crash at `t` counts
 * while `now - t < windowMillis`, so one exactly a window old is out. The one window rule, shared
 * with the public `RestartWindow`.
 */
export const pruneWindow = (windowMillis: number, crashes: ReadonlyArray<number>, now: number): ReadonlyArray<number> =>
  crashes.filter((t) => now - t < windowMillis)

/** The crashes still within the policy's `restartWindow` at `now` (see {@link pruneWindow}). */
export const crashesWithin = (
  policy: LifetimePolicy.LifetimePolicy,
  crashes: ReadonlyArray<number>,
  now: number
): ReadonlyArray<number> => pruneWindow(Duration.toMillis(policy.restartWindow), crashes, now)

/** The number of crashes within the window at `now` (what the cap counts, what health reports). */
export const crashesInWindow = (policy: LifetimePolicy.LifetimePolicy, history: RestartHistory, now: number): number =>
  crashesWithin(policy, history.crashes, now).length

/**
 * The history after a crash at `now`: the window pruned and the crash added, the run one longer
 * (or, with a backoff, starting again at 1 when the previous crash is `resetAfter` old).
 */
export const record = (policy: LifetimePolicy.LifetimePolicy, history: RestartHistory, now: number): RestartHistory => ({
  crashes: [...crashesWithin(policy, history.crashes, now), now],
  consecutive: policy.backoff === undefined
    ? history.consecutive + 1
    : LifetimePolicy.nextConsecutiveCrashes(policy.backoff, history.consecutive, history.lastCrashAt, now),
  lastCrashAt: now
})

/**
 * The history after a successful (re)initialize: the run of consecutive crashes is over (as in
 * the Paperclip manager). The window keeps its crashes: the cap counts crashes, not runs.
 */
export const started = (history: RestartHistory): RestartHistory =>
  history.consecutive === 0 ? history : { ...history, consecutive: 0 }

/** The history after `clearDisabled`: nothing counts against the plugin any more. */
export const cleared = (history: RestartHistory): RestartHistory => ({ ...history, crashes: [], consecutive: 0 })

// ---------------------------------------------------------------------------------------------
// the decision
// ---------------------------------------------------------------------------------------------

/**
 * What follows the crash just recorded in `history` (see {@link record}) at `now`. `random` in
 * `[0, 1)` picks the jitter of a backoff delay (`0.5` is none).
 */
export const decide = (
  policy: LifetimePolicy.LifetimePolicy,
  history: RestartHistory,
  now: number,
  random: number
): RestartDecision => {
  const backoff = policy.backoff
  if (backoff === undefined) {
    const crashes = crashesInWindow(policy, history, now)
    return crashes >= policy.restartCap
      ? { _tag: "Disable", reason: { _tag: "CapReached", crashes, window: policy.restartWindow } }
      : { _tag: "Recover" }
  }
  const crashes = history.consecutive
  return LifetimePolicy.givesUp(backoff, crashes)
    ? { _tag: "Disable", reason: { _tag: "GaveUp", restarts: crashes - 1, crashes } }
    : { _tag: "Backoff", delay: LifetimePolicy.backoffDelay(backoff, crashes, random), restart: crashes }
}

/** {@link record} then {@link decide}: the new history and what follows the crash at `now`. */
export const afterCrash = (
  policy: LifetimePolicy.LifetimePolicy,
  history: RestartHistory,
  now: number,
  random: number
): readonly [RestartHistory, RestartDecision] => {
  const next = record(policy, history, now)
  return [next, decide(policy, next, now, random)]
}

/** The reason as a person reads it (the `Disabled` state's `reason` starts with it). */
export const describeDisableReason = (reason: DisableReason): string =>
  reason._tag === "CapReached"
    ? `crashed ${reason.crashes} times within ${formatDuration(reason.window)}`
    : `crashed ${reason.crashes} times in a row (gave up after ${reason.restarts} restarts)`
