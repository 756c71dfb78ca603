/**
 * The plugin side: serve handlers over stdin/stdout, call the host back, log through the host.
 *
 * `PluginWorker.serve` runs the same {@link RpcPeer} connection the host uses, pointed the other
 * way: requests from the host are served by `handlers` (concurrently), a handler's typed error
 * becomes a JSON-RPC error object, and handlers reach the host with `PluginWorker.callHost` and
 * `PluginWorker.log` (a `log` notification). stdout is the protocol, so Effect logs go to stderr.
 * The worker answers `initialize` with `{ok: true, supportedMethods}` (plus whatever
 * `onInitialize` returns), answers `shutdown` and then exits, and exits 0 on stdin EOF once the
 * replies in flight are written.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as JsonRpc from "./JsonRpc.ts"
import * as PluginClientError from "./PluginClientError.ts"
import * as RpcPeer from "./RpcPeer.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * The connection to the host, available to handlers.
 *
 * @category models
 */
export class HostConnection extends Context.Service<HostConnection, {
  readonly request: RpcPeer.RpcPeer["request"]
  readonly notify: RpcPeer.RpcPeer["notify"]
}>()("effect-plugin-host/PluginWorker/HostConnection") {}

/**
 * Serves one method. Failing with a {@link JsonRpc.JsonRpcError} sends that error object; any
 * other failure is sent as WORKER_ERROR (-32002) with its message and tag; a defect as -32603.
 *
 * @category models
 */
export type Handler = (params: unknown) => Effect.Effect<unknown, unknown, HostConnection>

/**
 * What a worker serves.
 *
 * @category models
 */
export interface ServeOptions {
  /** The worker's name, carried by errors of host calls. Default `"worker"`. */
  readonly name?: string | undefined
  readonly handlers: Readonly<Record<string, Handler>>
  /** Runs on `initialize`; its fields are merged into `{ok: true, supportedMethods}`. */
  readonly onInitialize?: ((params: unknown) => Effect.Effect<object | void, unknown, HostConnection>) | undefined
  /** Runs on `shutdown`, before the reply. */
  readonly onShutdown?: Effect.Effect<void, never, HostConnection> | undefined
  /** Host calls in flight at once. Default 64. */
  readonly maxConcurrentRequests?: number | undefined
  /** Timeout of host calls. Default 30 s. */
  readonly requestTimeout?: Duration.Input | undefined
  readonly maxLineBytes?: number | undefined
}

// ---------------------------------------------------------------------------------------------
// handler helpers
// ---------------------------------------------------------------------------------------------

/**
 * Calls a method on the host.
 *
 * @category host
 */
export const callHost = (
  method: string,
  params?: unknown,
  options?: { readonly timeout?: Duration.Input | undefined }
): Effect.Effect<unknown, PluginClientError.PluginClientError, HostConnection> =>
  Effect.flatMap(HostConnection, (host) => host.request(method, params, options))

/**
 * Sends a notification to the host.
 *
 * @category host
 */
export const notifyHost = (
  method: string,
  params?: unknown
): Effect.Effect<void, PluginClientError.PluginClientError, HostConnection> =>
  Effect.flatMap(HostConnection, (host) => host.notify(method, params))

/**
 * Logs through the host (a `log` notification: level, message, optional meta, timestamp).
 * Never fails: a worker whose host is gone has nobody to tell.
 *
 * @category host
 */
export const log = (
  level: "debug" | "info" | "warn" | "error",
  message: string,
  meta?: Readonly<Record<string, unknown>>
): Effect.Effect<void, never, HostConnection> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    notifyHost("log", {
      level,
      message,
      timestamp: new Date(now).toISOString(),
      ...(meta === undefined ? {} : { meta })
    })).pipe(Effect.ignore)

/**
 * Turns a handler's failure into the error object sent to the host.
 *
 * @category errors
 */
export const toJsonRpcError = (error: unknown): JsonRpc.JsonRpcError => {
  if (error instanceof JsonRpc.JsonRpcError) return error
  if (typeof error === "object" && error !== null) {
    const code: unknown = Reflect.get(error, "code")
    const message: unknown = Reflect.get(error, "message")
    const tag: unknown = Reflect.get(error, "_tag")
    if (typeof code === "number" && Number.isInteger(code) && typeof message === "string") {
      return JsonRpc.error(code, message, Reflect.get(error, "data"))
    }
    const text = typeof message === "string" && message.length > 0 ? message : typeof tag === "string" ? tag : String(error)
    return JsonRpc.error(JsonRpc.ErrorCode.WorkerError, text, typeof tag === "string" ? { _tag: tag } : undefined)
  }
  return JsonRpc.error(JsonRpc.ErrorCode.WorkerError, String(error))
}

// ---------------------------------------------------------------------------------------------
// serving
// ---------------------------------------------------------------------------------------------

/**
 * Serves `options.handlers` over any transport until the host closes it or asks for
 * `shutdown`, then waits for the replies in flight.
 *
 * @category serving
 */
export const serveTransport = Effect.fnUntraced(function*(transport: RpcPeer.Transport, options: ServeOptions) {
  const done = yield* Deferred.make<void>()
  const hostRef: { current: HostConnection["Service"] | undefined } = { current: undefined }
  const withHost = <A, E>(effect: Effect.Effect<A, E, HostConnection>): Effect.Effect<A, E> =>
    Effect.suspend(() =>
      hostRef.current === undefined
        ? Effect.die(new Error("host connection not ready"))
        : Effect.provideService(effect, HostConnection, hostRef.current)
    )
  const wrap = (handler: Handler): RpcPeer.HostHandler => (params) =>
    withHost(Effect.suspend(() => handler(params))).pipe(Effect.mapError(toJsonRpcError))

  const supportedMethods = Object.keys(options.handlers)
  const handlers: Record<string, RpcPeer.HostHandler> = {
    initialize: (params) =>
      withHost(options.onInitialize === undefined ? Effect.void : options.onInitialize(params)).pipe(
        Effect.map((extra) => ({ ok: true, supportedMethods, ...(extra ?? {}) })),
        Effect.mapError(toJsonRpcError)
      ),
    shutdown: () =>
      withHost(options.onShutdown ?? Effect.void).pipe(
        Effect.andThen(Deferred.succeed(done, undefined)),
        Effect.as(null)
      )
  }
  for (const method of supportedMethods) {
    const handler = options.handlers[method]
    if (handler !== undefined) handlers[method] = wrap(handler)
  }

  const peer = yield* RpcPeer.make(transport, {
    hostHandlers: handlers,
    maxConcurrentRequests: options.maxConcurrentRequests,
    requestTimeout: options.requestTimeout,
    maxLineBytes: options.maxLineBytes
  })
  hostRef.current = HostConnection.of({ request: peer.request, notify: peer.notify })
  yield* Effect.raceFirst(peer.closed, Deferred.await(done))
  yield* peer.handlersIdle
})

/**
 * A transport over this process's stdin and stdout. Lines written in one turn of the event
 * loop go out in one write.
 *
 * @category serving
 */
export const stdioTransport = (name: string): Effect.Effect<RpcPeer.Transport & { readonly flush: Effect.Effect<void> }> =>
  Effect.gen(function*() {
    const ended = yield* Deferred.make<PluginClientError.Reason>()
    let buffer: Array<string> = []
    let writeError: string | undefined
    const flushNow = () => {
      if (buffer.length === 0) return
      const data = buffer.join("\n") + "\n"
      buffer = []
      process.stdout.write(data, (error) => {
        if (error && writeError === undefined) {
          writeError = error.message
          Deferred.doneUnsafe(ended, Exit.succeed(new PluginClientError.Io({ detail: `writing stdout failed: ${error.message}` })))
        }
      })
    }
    const incoming = Stream.callback<Uint8Array>((queue) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const onData = (chunk: Buffer) => void Queue.offerUnsafe(queue, chunk)
          const onEnd = () => {
            Deferred.doneUnsafe(ended, Exit.succeed(new PluginClientError.Closed({ detail: "the host closed stdin" })))
            Queue.endUnsafe(queue)
          }
          process.stdin.on("data", onData)
          process.stdin.once("end", onEnd)
          process.stdin.once("error", onEnd)
          process.stdin.resume()
          return { onData, onEnd }
        }),
        ({ onData, onEnd }) =>
          Effect.sync(() => {
            process.stdin.off("data", onData)
            process.stdin.off("end", onEnd)
            process.stdin.off("error", onEnd)
            process.stdin.pause()
          })
      )
    )
    return {
      name,
      pid: process.pid,
      incoming,
      writeLine: (line: string) => {
        if (writeError !== undefined) return false
        if (buffer.length === 0) queueMicrotask(flushNow)
        buffer.push(line)
        return true
      },
      closed: Deferred.await(ended),
      flush: Effect.callback<void>((resume) => {
        flushNow()
        // An empty write's callback runs once everything queued before it is written.
        process.stdout.write("", () => resume(Effect.void))
      })
    }
  })

/**
 * Serves handlers on stdin/stdout until stdin closes or the host asks for `shutdown`.
 *
 * @category serving
 */
export const serve = (options: ServeOptions): Effect.Effect<void> =>
  Effect.scoped(
    Effect.gen(function*() {
      const transport = yield* stdioTransport(options.name ?? "worker")
      yield* serveTransport(transport, options)
      yield* transport.flush
    })
  )

/**
 * Runs a worker as the process's main program: logs to stderr (stdout is the protocol),
 * exits 0 when stdin closes, after `shutdown`, or on SIGTERM/SIGINT, and 1 if serving failed.
 *
 * @category serving
 */
export const main = (options: ServeOptions): void => {
  const program = serve(options).pipe(
    Effect.tapCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError("worker failed", cause)),
    Effect.provide(Layer.succeed(Logger.LogToStderr, true))
  )
  const fiber = Effect.runFork(program)
  const onSignal = () => fiber.interruptUnsafe(fiber.id)
  process.once("SIGTERM", onSignal)
  process.once("SIGINT", onSignal)
  fiber.addObserver((exit) => {
    process.exit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
  })
}
