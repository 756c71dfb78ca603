/**
 * Serves the requests the other side of a connection (`RpcPeer`) sends: each runs the handler
 * for its method, and its exit becomes the reply.
 *
 * An unknown method gets -32601 (names on `Object.prototype` are not handlers), a failing
 * handler an error reply (`Protocol.replyTo`), so nothing the other side sends can crash this
 * one. At most `maxHandlers` requests are served at once; beyond that they are refused at once
 * with WORKER_UNAVAILABLE (-32000), so a side flooding this one with requests cannot grow it
 * without bound. Whoever waits for the handlers to be idle (a worker about to exit) resumes
 * once the last reply is written.
 *
 * The other side may cancel a request it gave up (`$/cancelRequest` or `notifications/cancelled`):
 * its handler's fiber is interrupted, and the reply is what the dialect of the cancel expects:
 * LSP's RequestCancelled (-32800) error for `$/cancelRequest`, none for MCP's
 * `notifications/cancelled`. A cancel for a request no longer served (its reply crossed the
 * cancel) is ignored.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as JsonRpc from "../JsonRpc.ts"
import * as Protocol from "./protocol.ts"
import type * as RequestSignals from "./requestSignals.ts"

/** Serves one method: a {@link JsonRpc.JsonRpcError} becomes the error reply, any other failure -32603. */
export type Handler<R> = (params: unknown) => Effect.Effect<unknown, JsonRpc.JsonRpcError, R>

/** A handler's effect for `params`; one that throws instead of returning an effect has died. */
const start = <R>(handler: Handler<R>, params: unknown): Effect.Effect<unknown, JsonRpc.JsonRpcError, R> => {
  try {
    return handler(params)
  } catch (defect) {
    return Exit.die(defect)
  }
}

/**
 * The requests of the other side, being served.
 */
export class RequestServer<R> {
  /** Requests received. */
  served = 0
  /** Requests refused because `maxHandlers` were being served. */
  refused = 0
  /** Handlers interrupted by a cancel from the other side. */
  cancelled = 0
  private readonly handlers: Readonly<Record<string, Handler<R>>>
  private readonly maxHandlers: number
  private readonly run: (effect: Effect.Effect<unknown, unknown, R>) => Fiber.Fiber<unknown, unknown>
  private readonly reply: (message: JsonRpc.Success | JsonRpc.Failure) => void
  // Counted by hand rather than through the fibers running them: a forked fiber can run (and
  // wake others) before a set has recorded it, and "all replies written" must not miss it.
  private serving = 0
  private idleSignal = Deferred.makeUnsafe<void>()
  /** Handlers still running after `run` returned, by request id: those a cancel can reach. */
  private readonly running = new Map<JsonRpc.Id, Fiber.Fiber<unknown, unknown>>()
  /** Requests whose handler a cancel interrupted, and the dialect of that cancel. */
  private readonly cancelling = new Map<JsonRpc.Id, RequestSignals.Dialect>()

  constructor(options: {
    readonly handlers: Readonly<Record<string, Handler<R>>>
    readonly maxHandlers: number
    /** Starts a handler (the connection's own fibers); its fiber. */
    readonly run: (effect: Effect.Effect<unknown, unknown, R>) => Fiber.Fiber<unknown, unknown>
    /** Writes a reply. */
    readonly reply: (message: JsonRpc.Success | JsonRpc.Failure) => void
  }) {
    this.handlers = options.handlers
    this.maxHandlers = options.maxHandlers
    this.run = options.run
    this.reply = options.reply
  }

  /** Completes once no request is being served. */
  readonly idle: Effect.Effect<void> = Effect.suspend(() => this.serving === 0 ? Effect.void : Deferred.await(this.idleSignal))

  /** Serves one request: its handler's reply, or a refusal at once. */
  serve(request: JsonRpc.Request): void {
    this.served++
    const handler = Object.hasOwn(this.handlers, request.method) ? this.handlers[request.method] : undefined
    if (handler === undefined) {
      this.reply(JsonRpc.failure(request.id, Protocol.methodNotFound(request.method)))
      return
    }
    if (this.serving >= this.maxHandlers) {
      this.refused++
      this.reply(JsonRpc.failure(request.id, {
        code: JsonRpc.ErrorCode.WorkerUnavailable,
        message: `too many concurrent requests (${this.maxHandlers} being served)`
      }))
      return
    }
    const effect = start(handler, request.params)
    // A handler whose effect is already over (`Effect.succeed`, `Effect.fail`: an `Exit`) is
    // answered at once: no fiber to start, nothing a cancel could reach.
    if (Exit.isExit(effect)) {
      this.reply(this.replyOf(request, effect))
      return
    }
    if (this.serving++ === 0) this.idleSignal = Deferred.makeUnsafe<void>()
    const id = request.id
    const fiber = this.run(
      Effect.onExit(effect, (exit) => {
        this.running.delete(id)
        const reply = this.cancelling.size === 0 ? this.replyOf(request, exit) : this.cancelledReply(request, exit)
        if (reply !== undefined) this.reply(reply)
        // After the reply: whoever waits for idle handlers resumes at once.
        if (--this.serving === 0) Deferred.doneUnsafe(this.idleSignal, Exit.void)
        return Effect.void
      })
    )
    // A handler over at once needs no entry: nothing can cancel it any more.
    if (fiber.pollUnsafe() === undefined) this.running.set(id, fiber)
  }

  /** The other side gave up request `id`: its handler, if still running, is interrupted. */
  cancel(id: JsonRpc.Id, dialect: RequestSignals.Dialect): void {
    const fiber = this.running.get(id)
    if (fiber === undefined) return
    this.running.delete(id)
    this.cancelled++
    this.cancelling.set(id, dialect)
    fiber.interruptUnsafe()
  }

  private replyOf(request: JsonRpc.Request, exit: Exit.Exit<unknown, unknown>): JsonRpc.Success | JsonRpc.Failure {
    return Protocol.replyTo(request.id, request.method, exit)
  }

  /**
   * The reply of a handler that may have been cancelled: an interrupted one answers as the
   * cancel's dialect expects (LSP: -32800; MCP: nothing); one that finished first answers as usual.
   */
  private cancelledReply(request: JsonRpc.Request, exit: Exit.Exit<unknown, unknown>): JsonRpc.Success | JsonRpc.Failure | undefined {
    const dialect = this.cancelling.get(request.id)
    if (dialect === undefined) return this.replyOf(request, exit)
    this.cancelling.delete(request.id)
    if (Exit.isSuccess(exit) || !Cause.hasInterruptsOnly(exit.cause)) return this.replyOf(request, exit)
    if (dialect === "mcp") return undefined
    return JsonRpc.failure(request.id, { code: JsonRpc.ErrorCode.RequestCancelled, message: `request cancelled: ${request.method}` })
  }
}
