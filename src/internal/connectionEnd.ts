/**
 * How and why a connection (`RpcPeer`) ends: the reason, set once, and the order of the events
 * that lead to it.
 *
 * A connection ends at the first of: a protocol violation or a failed read (`close` with its
 * reason), the other side gone and its output read to the end, the other side gone and its
 * output still open {@link outputDrainTimeout} later (a grandchild may hold a dead plugin's
 * stdout open), or its own Scope closing. Replies still in the output of a side that is gone
 * are read first, so calls it answered before it went get their results. A Scope closed after
 * the other side is gone ends the connection with the other side's reason (a stop's end says
 * the process exited, not that the connection was closed under it); otherwise with `Closed`.
 *
 * The reason may come as a function that builds it (a reason is a Schema error with a stack,
 * and most ends never need it); it is built the first time someone asks, once. Every part of
 * the connection reads `isOver` before it acts; `close` runs the owner's `onClose` (failing the
 * calls still pending) after the reason is recorded and before `done` completes.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as PluginClientError from "../PluginClientError.ts"

/** Why a connection ended: the reason, or a function that builds it on demand. */
export type EndReason = PluginClientError.Reason | (() => PluginClientError.Reason)

/** How long a connection whose other side is gone waits for the rest of its output. */
export const outputDrainTimeout = Duration.millis(200)

const closedByHost = (): PluginClientError.Reason => new PluginClientError.Closed({ detail: "connection closed" })

/**
 * The end of one connection.
 */
export class ConnectionEnd {
  /** Completes once the connection has ended (after `onClose` ran). */
  readonly done: Deferred.Deferred<void> = Deferred.makeUnsafe<void>()
  private recorded: EndReason | undefined = undefined
  private readonly onClose: () => void
  private readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  /** Whether the other side's output has been read to its end. */
  private outputEnded = false
  /** Runs while the other side is gone and its output is still being read. */
  private drainTimer: Fiber.Fiber<void> | undefined = undefined
  /** Why the other side went, once it has. */
  private otherSideReason: EndReason | undefined = undefined

  constructor(options: {
    /** Runs once, when the connection ends, before `done` completes. */
    readonly onClose: () => void
    /** Starts the drain timer (the connection's own fibers). */
    readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  }) {
    this.onClose = options.onClose
    this.fork = options.fork
  }

  /** Whether the connection has ended. */
  get isOver(): boolean {
    return this.recorded !== undefined
  }

  /** The reason as recorded (possibly still a function), or undefined while the connection is up. */
  get current(): EndReason | undefined {
    return this.recorded
  }

  /** Why the connection ended (`Closed` while it has not): built on the first call, once. */
  reason(): PluginClientError.Reason {
    if (typeof this.recorded === "function") this.recorded = this.recorded()
    return this.recorded ?? closedByHost()
  }

  /** Ends the connection with `reason`, unless it has ended already. */
  close(reason: EndReason): void {
    if (this.recorded !== undefined) return
    this.recorded = reason
    this.onClose()
    Deferred.doneUnsafe(this.done, Exit.void)
  }

  /**
   * The other side's output has been read to its end: if the other side is gone, the connection
   * ends now with its reason.
   */
  outputEnd(): void {
    this.outputEnded = true
    this.stopDrainTimer()
  }

  /**
   * The other side is gone: the connection ends once its output has ended, or after
   * {@link outputDrainTimeout}. One timer fiber, interrupted by the output's end: either way
   * its end closes the connection, so there is no race of two fibers.
   */
  otherSideGone(reason: EndReason): void {
    this.otherSideReason = reason
    if (this.outputEnded) return this.close(reason)
    const timer = this.fork(Effect.sleep(outputDrainTimeout))
    timer.addObserver(() => this.close(reason))
    this.drainTimer = timer
  }

  /** The connection's Scope is closing: the end, with the other side's reason if it is gone. */
  scopeClosed(): void {
    this.stopDrainTimer()
    this.close(this.otherSideReason ?? closedByHost)
  }

  /** Interrupting the timer ends the connection at once (its observer closes it). */
  private stopDrainTimer(): void {
    const timer = this.drainTimer
    this.drainTimer = undefined
    timer?.interruptUnsafe()
  }
}
