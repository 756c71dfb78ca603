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
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as JsonRpc from "../JsonRpc.ts"
import * as Protocol from "./protocol.ts"

/** Serves one method: a {@link JsonRpc.JsonRpcError} becomes the error reply, any other failure -32603. */
export type Handler<R> = (params: unknown) => Effect.Effect<unknown, JsonRpc.JsonRpcError, R>

/**
 * The requests of the other side, being served.
 */
export class RequestServer<R> {
  /** Requests received. */
  served = 0
  /** Requests refused because `maxHandlers` were being served. */
  refused = 0
  private readonly handlers: Readonly<Record<string, Handler<R>>>
  private readonly maxHandlers: number
  private readonly run: (effect: Effect.Effect<unknown, unknown, R>) => void
  private readonly reply: (message: JsonRpc.Success | JsonRpc.Failure) => void
  // Counted by hand rather than through the fibers running them: a forked fiber can run (and
  // wake others) before a set has recorded it, and "all replies written" must not miss it.
  private serving = 0
  private idleSignal = Deferred.makeUnsafe<void>()

  constructor(options: {
    readonly handlers: Readonly<Record<string, Handler<R>>>
    readonly maxHandlers: number
    /** Starts a handler (the connection's own fibers). */
    readonly run: (effect: Effect.Effect<unknown, unknown, R>) => void
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
    if (this.serving++ === 0) this.idleSignal = Deferred.makeUnsafe<void>()
    this.run(
      Effect.onExit(Effect.suspend(() => handler(request.params)), (exit) => {
        this.reply(Protocol.replyTo(request.id, request.method, exit))
        // After the reply: whoever waits for idle handlers resumes at once.
        if (--this.serving === 0) Deferred.doneUnsafe(this.idleSignal, Exit.void)
        return Effect.void
      })
    )
  }
}
