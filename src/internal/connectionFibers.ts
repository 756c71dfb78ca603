/**
 * The fibers a connection (`RpcPeer`) runs besides its callers': handlers of requests from the
 * other side, the notification handler, logs, the timeout sweeper and the drain timer.
 *
 * They run with the context the connection was made with (its services and the plugin's log
 * annotations), captured once instead of annotating every forked effect. A task that is still
 * running when `run` returns joins a `FiberSet` in the connection's Scope, so closing the
 * connection interrupts it; most tasks (a synchronous handler, a log line) are over by then, and
 * skip the set's bookkeeping. The set is made when the first task needs it: a connection that
 * never had one closes without its finalizer.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"

/**
 * Runs effects for one connection, with its context, in its Scope.
 */
export class ConnectionFibers<R> {
  /** The context every fiber runs with (also what metrics of the connection are updated with). */
  readonly context: Context.Context<R>
  /** Starts an effect at once; its owner interrupts it (the sweeper and the drain timer). */
  readonly fork: <A, E>(effect: Effect.Effect<A, E, R>) => Fiber.Fiber<A, E>
  private readonly scope: Scope.Scope
  private tasks: FiberSet.FiberSet<unknown, unknown> | undefined = undefined

  constructor(context: Context.Context<R>, scope: Scope.Scope) {
    this.context = context
    this.scope = scope
    this.fork = Effect.runForkWith(context)
  }

  /**
   * Starts a task the connection owns: if it does not finish at once, its Scope interrupts it.
   * Returns its fiber (a served request's, which a cancel interrupts).
   */
  readonly run = (effect: Effect.Effect<unknown, unknown, R>): Fiber.Fiber<unknown, unknown> => {
    const fiber = this.fork(effect)
    if (fiber.pollUnsafe() !== undefined) return fiber
    this.tasks ??= Effect.runSync(Scope.provide(FiberSet.make<unknown, unknown>(), this.scope))
    FiberSet.addUnsafe(this.tasks, fiber)
    return fiber
  }

  /** Logs through a task (log lines are never awaited by what produces them). */
  readonly log = (effect: Effect.Effect<void>): void => void this.run(effect)
}
