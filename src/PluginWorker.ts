/**
 * The plugin side: serve handlers over stdin/stdout, call the host back, log through the host.
 *
 * `PluginWorker.serve` runs the same {@link RpcPeer} connection the host uses, pointed the other
 * way: requests from the host are served by `handlers` (concurrently), a handler's typed error
 * becomes a JSON-RPC error object, and handlers reach the host with `PluginWorker.callHost` and
 * `PluginWorker.log` (a `log` notification). stdout is the protocol, so Effect logs go to stderr.
 * Messages are one per line, or framed with `Content-Length` headers (LSP's base protocol) when
 * the host says so in `PLUGIN_HOST_FRAMING` or the `framing` option does.
 * The worker answers `initialize` with `{ok: true, supportedMethods}` (plus whatever
 * `onInitialize` returns), answers `shutdown` and then exits, and exits 0 on stdin EOF once the
 * replies in flight are written — or once its parent changed (the host died while something else
 * keeps stdin open).
 *
 * Handlers may be typed: `PluginWorker.handle(method, impl)` serves the same `PluginMethod` the
 * host calls (params decoded and result encoded with its Schemas; bad params are answered with
 * -32602), `handlers(…)` builds the table from several, and `implement(contract, impls)` serves
 * a whole `PluginContract`, requiring an implementation of each of its methods.
 *
 * A cancel from the host (`$/cancelRequest` or `notifications/cancelled`, whichever the host
 * speaks) interrupts the handler's fiber: its finalizers run, and the reply is LSP's -32800 for
 * `$/cancelRequest` and none for MCP's `notifications/cancelled`, as each protocol expects. A
 * handler reports progress with `PluginWorker.progress(value)` when the host asked for it (the
 * request carried a progress token); each report gives the host call a full timeout again.
 * `cancellation` says what the worker sends when one of its own host calls times out or is
 * interrupted.
 *
 * `PluginWorker.serveBroker` serves the same handlers over a `Broker` (NATS for workers on
 * other machines) as one instance of a NATS micro service (a unique id, the queue group `q`,
 * answering the ADR-32 discovery `$SRV.PING/INFO/STATS` with its per-endpoint counters, so any
 * number of instances on any machines are found and share the load): `<prefix>.tick` runs
 * `poll_tick` and `<prefix>.call` answers
 * JSON-RPC requests, both answered as on stdio (one handler table, the same replies). A request
 * from a `RemotePlugin` client carries its host's inbox, so its handler calls, notifies, logs to
 * and reports progress to that host as on stdio, and a cancel from it interrupts the handler
 * (the wire is `internal/remoteWire.ts`). `runBroker`
 * serves until interrupted on any `Broker` layer; `PluginWorker.mainBroker` runs it on NATS as a
 * process's main program, loading `NatsBroker` and its client only then (the stdio worker never
 * loads them, and `NatsBroker` imports nothing from here).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as Broker from "./Broker.ts"
import * as BrokerService from "./internal/brokerService.ts"
import type * as EndpointStatsModule from "./internal/endpointStats.ts"
import * as Framing from "./Framing.ts"
import * as LineBatcher from "./internal/lineBatcher.ts"
import * as NatsMicro from "./internal/natsMicro.ts"
import * as ParentWatch from "./internal/parentWatch.ts"
import * as Protocol from "./internal/protocol.ts"
import * as RemoteWire from "./internal/remoteWire.ts"
import * as RequestSignals from "./internal/requestSignals.ts"
import * as JsonRpc from "./JsonRpc.ts"
import type * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClientError from "./PluginClientError.ts"
import type * as PluginContract from "./PluginContract.ts"
import type * as PluginMethod from "./PluginMethod.ts"
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
 * A handler of a notification from the host: no reply is sent, whatever it returns.
 *
 * @category models
 */
export type NotificationHandler = (params: unknown) => Effect.Effect<void, unknown, HostConnection>

/**
 * Notifications from the host that no `notifications` handler took.
 *
 * @category metrics
 */
export const notificationsUnhandledTotal = Metric.counter("plugin_worker_notifications_unhandled_total", {
  description: "Notifications from the host that the worker has no handler for"
})

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
  /**
   * Notifications from the host (`client.notify(method, params)`), by method, run in the order
   * they arrive. One with no handler here is counted (`plugin_worker_notifications_unhandled_total`)
   * and logged at Debug; a handler that fails is logged at Warning. Neither ends the connection.
   */
  readonly notifications?: Readonly<Record<string, NotificationHandler>> | undefined
  /** Host calls in flight at once. Default 64. */
  readonly maxConcurrentRequests?: number | undefined
  /** Timeout of host calls. Default 30 s. */
  readonly requestTimeout?: Duration.Input | undefined
  readonly maxLineBytes?: number | undefined
  /**
   * What the host is told when one of this worker's host calls times out or is interrupted
   * (see {@link LifetimePolicy.Cancellation}). Default `"none"`. Cancels from the host are
   * honoured in both dialects whatever this says.
   */
  readonly cancellation?: LifetimePolicy.Cancellation | undefined
  /**
   * How messages are delimited on stdin/stdout ({@link serve} only): one per line (`"ndjson"`)
   * or after a `Content-Length` header (`"content-length"`). Default the `PLUGIN_HOST_FRAMING`
   * environment variable, which a host sets for a plugin it frames with Content-Length, else
   * `"ndjson"`.
   */
  readonly framing?: LifetimePolicy.Framing | undefined
}

/**
 * The progress token of the request a handler serves, when the host asked for progress; none
 * outside a handler or when it did not. {@link progress} reads it.
 */
const CurrentProgress = Context.Reference<RequestSignals.ProgressTarget | undefined>(
  "effect-plugin-host/PluginWorker/CurrentProgress",
  { defaultValue: () => undefined }
)

/**
 * What a handler reports with {@link progress}: a number (MCP's `progress`), or MCP's
 * `{progress, total?, message?}`. A host speaking LSP receives it unchanged as `$/progress`'s
 * `value`.
 *
 * @category models
 */
export type ProgressValue = RequestSignals.ProgressValue

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
  options?: RpcPeer.CallOptions
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
    notifyHost("log", Protocol.logParams(level, message, new Date(now).toISOString(), meta))).pipe(Effect.ignore)

/**
 * Reports progress of the request being served, in the form its token came in (MCP
 * `notifications/progress {progressToken, progress, total?, message?}` or LSP
 * `$/progress {token, value}`). Each report gives the host's call a full timeout again (up to
 * the host's `maxRequestTimeout` from its start). Does nothing when the host did not ask for
 * progress, and never fails (like {@link log}).
 *
 * @category host
 */
export const progress = (value: ProgressValue): Effect.Effect<void, never, HostConnection> =>
  Effect.flatMap(Effect.service(CurrentProgress), (target) => {
    if (target === undefined) return Effect.void
    const report = RequestSignals.progressNotification(target, value)
    return Effect.ignore(notifyHost(report.method, report.params))
  })

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
// typed methods
// ---------------------------------------------------------------------------------------------

/**
 * One typed method and the handler serving it (see {@link handle}).
 *
 * @category typed methods
 */
export interface MethodHandler {
  readonly method: string
  readonly handler: Handler
}

/**
 * Serves a typed method, the same `PluginMethod` the host calls with `client.call`: the params
 * are decoded with its params Schema (a failure is answered with -32602 Invalid params, whose
 * message is the Schema's, and `impl` does not run), `impl` gets the decoded params, and its
 * result is encoded with the result Schema (a failure is answered with -32603). `impl`'s own
 * failures are answered as any handler's ({@link toJsonRpcError}).
 *
 * @category typed methods
 */
export const handle = <Params, Result, ParamsWire, ResultWire, Name extends string, E>(
  method: PluginMethod.PluginMethod<Params, Result, ParamsWire, ResultWire, Name>,
  impl: (params: Params) => Effect.Effect<Result, E, HostConnection>
): MethodHandler => {
  const decode = Schema.decodeUnknownEffect(method.params)
  const encode = Schema.encodeEffect(method.result)
  const handler: Handler = (params) =>
    decode(params).pipe(
      Effect.mapError((e) => JsonRpc.error(JsonRpc.ErrorCode.InvalidParams, e.message)),
      Effect.flatMap((decoded) => impl(decoded)),
      Effect.flatMap((result) =>
        Effect.mapError(encode(result), (e) =>
          JsonRpc.error(
            JsonRpc.ErrorCode.InternalError,
            `the result of \`${method.name}\` does not match its Schema: ${e.message}`
          ))
      )
    )
  return { method: method.name, handler }
}

/**
 * The `handlers` of {@link serve} (or {@link serveBroker}) from typed methods:
 * `handlers(handle(A, implA), handle(B, implB))`. Spread it to add untyped handlers:
 * `{ ...handlers(handle(A, implA)), legacy: (params) => … }`. A method given twice is a
 * programming error: it throws at once.
 *
 * @category typed methods
 */
export const handlers = (...entries: ReadonlyArray<MethodHandler>): Record<string, Handler> => {
  const table: Record<string, Handler> = {}
  for (const { method, handler } of entries) {
    if (Object.hasOwn(table, method)) throw new Error(`PluginWorker.handlers: method \`${method}\` is handled twice`)
    table[method] = handler
  }
  return table
}

/**
 * An implementation of every method of a contract, by name: each gets its decoded params and
 * returns its decoded result.
 *
 * @category typed methods
 */
export type Implementations<Methods extends PluginMethod.Any> = {
  readonly [Name in Methods["name"]]: (
    params: PluginContract.Params<PluginContract.Named<Methods, Name>>
  ) => Effect.Effect<PluginContract.Result<PluginContract.Named<Methods, Name>>, unknown, HostConnection>
}

/**
 * The `handlers` serving a contract: {@link handle} for each of its methods. The type requires an
 * implementation of every method, and nothing else.
 *
 * ```ts
 * PluginWorker.main({
 *   handlers: PluginWorker.implement(Secrets, {
 *     "secret_source.get": ({ key }) => Effect.succeed({ value: lookup(key) }),
 *     "secret_source.list": () => Effect.succeed({ keys: [] })
 *   })
 * })
 * ```
 *
 * @category typed methods
 */
export const implement = <Methods extends PluginMethod.Any>(
  contract: PluginContract.PluginContract<Methods>,
  impls: NoInfer<Implementations<Methods>>
): Record<string, Handler> => {
  // `Implementations` gives each method's name the function taking that method's params;
  // TypeScript cannot relate the two inside a loop over the union of methods, and `handle`
  // decodes the params with the method's own Schema before they reach the implementation.
  const byName = impls as Readonly<Record<string, (params: unknown) => Effect.Effect<unknown, unknown, HostConnection>>>
  return handlers(...contract.methods.map((method) => {
    const impl = byName[method.name]
    if (impl === undefined) throw new Error(`PluginWorker.implement: no implementation of \`${method.name}\``)
    return handle(method, impl)
  }))
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
  // Handlers reach the host through the connection they are served on; it exists only once the
  // peer is made, so the service forwards to it (provided once, not per request).
  const hostRef: { current: RpcPeer.RpcPeer | undefined } = { current: undefined }
  const notReady = Effect.die(new Error("host connection not ready"))
  const host = HostConnection.of({
    request: (method, params, callOptions) =>
      Effect.suspend(() => hostRef.current === undefined ? notReady : hostRef.current.request(method, params, callOptions)),
    notify: (method, params) =>
      Effect.suspend(() => hostRef.current === undefined ? notReady : hostRef.current.notify(method, params))
  })
  const handlers = handlerTable(options, {
    shutdown: () =>
      (options.onShutdown ?? Effect.void).pipe(
        Effect.andThen(Deferred.succeed(done, undefined)),
        Effect.as(null)
      )
  }, true)

  const peer = yield* RpcPeer.make(transport, {
    hostHandlers: handlers,
    onNotification: notificationHandler(options.notifications, host),
    maxConcurrentRequests: options.maxConcurrentRequests,
    requestTimeout: options.requestTimeout,
    maxLineBytes: options.maxLineBytes,
    cancellation: options.cancellation
  }).pipe(Effect.provideService(HostConnection, host))
  hostRef.current = peer
  yield* Effect.raceFirst(peer.closed, Deferred.await(done))
  yield* peer.handlersIdle
})

/**
 * Delivers the host's notifications to the worker's handlers: an unknown method is counted and
 * logged at Debug, a failing handler logged at Warning; neither ends the connection.
 */
const notificationHandler = (
  handlers: Readonly<Record<string, NotificationHandler>> | undefined,
  host: HostConnection["Service"]
) =>
(notification: JsonRpc.Notification): Effect.Effect<void> => {
  const handler = handlers !== undefined && Object.hasOwn(handlers, notification.method) ? handlers[notification.method] : undefined
  if (handler === undefined) {
    return Metric.update(notificationsUnhandledTotal, 1).pipe(
      Effect.andThen(Effect.logDebug(`no handler for the host's notification \`${notification.method}\``))
    )
  }
  return Effect.suspend(() => handler(notification.params)).pipe(
    Effect.provideService(HostConnection, host),
    Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.interrupt
        : Effect.logWarning(`the handler of the host's notification \`${notification.method}\` failed`, Cause.pretty(cause))
    )
  )
}

/**
 * The methods a worker answers, on any transport: `initialize` (`{ok: true, supportedMethods}`
 * plus what `onInitialize` returns), the transport's own `builtins`, and the user's handlers,
 * which take precedence; a handler's failure becomes its JSON-RPC error ({@link toJsonRpcError}).
 * A handler whose request carries a progress token runs with it as {@link CurrentProgress}.
 */
const handlerTable = (
  options: Pick<ServeOptions, "handlers" | "onInitialize">,
  builtins: Readonly<Record<string, RpcPeer.HostHandler<HostConnection>>>,
  negotiates: boolean
): Record<string, RpcPeer.HostHandler<HostConnection>> => {
  const supportedMethods = Object.keys(options.handlers)
  const onInitialize = options.onInitialize
  const table: Record<string, RpcPeer.HostHandler<HostConnection>> = {
    initialize: (params) => {
      const theirs = Protocol.protocolVersionOf(params)
      const mismatch = theirs === undefined ? undefined : Protocol.versionMismatch(Protocol.protocolVersion, theirs)
      if (mismatch !== undefined) return Effect.fail(new JsonRpc.JsonRpcError({ code: JsonRpc.ErrorCode.InvalidRequest, message: mismatch }))
      return (onInitialize === undefined ? Effect.void : onInitialize(params)).pipe(
        Effect.map((extra) => Protocol.initializeResult(supportedMethods, extra, negotiates)),
        Effect.mapError(toJsonRpcError)
      )
    },
    ...builtins
  }
  for (const method of supportedMethods) {
    const handler = options.handlers[method]
    if (handler === undefined) continue
    table[method] = (params) => {
      const target = RequestSignals.progressTargetOf(params)
      if (target !== undefined) return Effect.provideService(Effect.mapError(Effect.suspend(() => handler(params)), toJsonRpcError), CurrentProgress, target)
      // Called at once (whoever runs the table catches a throw as a defect): a handler that is
      // over already (`Effect.succeed`) stays an `Exit`, which is answered without a fiber.
      const served = handler(params)
      return Exit.isExit(served) ? Exit.mapError(served, toJsonRpcError) : Effect.mapError(served, toJsonRpcError)
    }
  }
  return table
}

/**
 * A transport over this process's stdin and stdout, framed as `framing` says (default
 * `"ndjson"`). Messages written in one turn of the event loop go out together, as the host
 * writes to a plugin's stdin: in one write at the end of the turn, or in slices when the turn
 * produces more.
 *
 * @category serving
 */
export const stdioTransport = (
  name: string,
  framing: LifetimePolicy.Framing = "ndjson"
): Effect.Effect<RpcPeer.Transport & { readonly flush: Effect.Effect<void> }> =>
  Effect.gen(function*() {
    const ended = yield* Deferred.make<PluginClientError.Reason>()
    let writeError: string | undefined
    // Writes take no callback (Node then schedules nothing after a write the pipe took at once);
    // a failed one is reported as stdout's `error` event, listened to while serving.
    const onWriteError = (error: Error) => {
      if (writeError !== undefined) return
      writeError = error.message
      output.clear()
      Deferred.doneUnsafe(ended, Exit.succeed(new PluginClientError.Io({ detail: `writing stdout failed: ${error.message}` })))
    }
    const output = LineBatcher.make((data) => {
      process.stdout.write(data)
    }, (messages) => Framing.encodeMessages(framing, messages))
    const hostGone = () => Deferred.doneUnsafe(ended, Exit.succeed(new PluginClientError.Closed({ detail: "the host closed stdin" })))
    /** Registers `data`/`end`/`error` listeners on stdin for the current Scope. */
    const subscribe = (onChunk: (chunk: Uint8Array) => void, onEnd: (failure?: string) => void) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const onData = (chunk: Buffer) => onChunk(chunk)
          // The last line is read before the connection is told the host is gone.
          const onClose = () => {
            onEnd()
            hostGone()
          }
          const onError = (error: Error) => {
            onEnd(error.message)
            hostGone()
          }
          process.stdin.on("data", onData)
          process.stdin.once("end", onClose)
          process.stdin.once("error", onError)
          process.stdout.on("error", onWriteError)
          process.stdin.resume()
          return { onData, onClose, onError }
        }),
        ({ onData, onClose, onError }) =>
          Effect.sync(() => {
            process.stdin.off("data", onData)
            process.stdin.off("end", onClose)
            process.stdin.off("error", onError)
            process.stdout.off("error", onWriteError)
            process.stdin.pause()
          })
      )
    const incoming = Stream.callback<Uint8Array>((queue) =>
      subscribe((chunk) => void Queue.offerUnsafe(queue, chunk), () => void Queue.endUnsafe(queue))
    )
    return {
      name,
      pid: process.pid,
      framing,
      incoming,
      // Requests are served in the `data` callback itself, not one event-loop turn later.
      listen: ({ onChunk, onEnd }) => Effect.asVoid(subscribe(onChunk, onEnd)),
      writeLine: (line: string) => {
        if (writeError !== undefined) return false
        output.push(line)
        return true
      },
      closed: Deferred.await(ended),
      flush: Effect.callback<void>((resume) => {
        output.flush()
        // An empty write's callback runs once everything queued before it is written.
        process.stdout.write("", () => resume(Effect.void))
      })
    }
  })

/** The environment variable a host sets for a plugin it frames with Content-Length. */

/**
 * The framing a stdio worker speaks: its option, else `PLUGIN_HOST_FRAMING` (read through the
 * `ConfigProvider`), else NDJSON. Any other value of the variable is a defect: a worker guessing
 * its framing would only fail later, and less clearly.
 */
const framingOf = (options: ServeOptions): Effect.Effect<LifetimePolicy.Framing> =>
  options.framing !== undefined
    ? Effect.succeed(options.framing)
    : Effect.orDie(Config.Literals(["ndjson", "content-length"], Protocol.framingVariable).pipe(Config.withDefault("ndjson")))

/**
 * Serves handlers on stdin/stdout (framed as {@link ServeOptions.framing} says) until stdin
 * closes, the host asks for `shutdown`, or the host is gone: this process's parent changed
 * (checked every second), which ends the connection as stdin EOF does even when another process
 * keeps the pipe open.
 *
 * @category serving
 */
export const serve = (options: ServeOptions): Effect.Effect<void> =>
  Effect.scoped(
    Effect.gen(function*() {
      const host = process.ppid
      const transport = yield* stdioTransport(options.name ?? "worker", yield* framingOf(options))
      const hostGone = Effect.map(
        ParentWatch.parentChanged(host),
        (parent) => new PluginClientError.Closed({ detail: `the host (pid ${host}) is gone: the parent is now pid ${parent}` })
      )
      yield* serveTransport({ ...transport, closed: Effect.raceFirst(transport.closed, hostGone) }, options)
      yield* transport.flush
    })
  )

/**
 * Runs a worker as the process's main program: logs to stderr (stdout is the protocol),
 * exits 0 when stdin closes, after `shutdown`, or on SIGTERM/SIGINT, and 1 if serving failed.
 *
 * @category serving
 */
export const main = (options: ServeOptions): void => runAsMain(serve(options))

/**
 * Runs a worker program as the process's main program: logs to stderr, SIGTERM/SIGINT
 * interrupt it, and the process exits 0 when it ends or is interrupted, 1 when it failed.
 * Shared by the stdio and the broker entry points.
 *
 * @category serving
 */
export const runAsMain = <E>(program: Effect.Effect<unknown, E>): void => {
  const fiber = Effect.runFork(program.pipe(
    Effect.tapCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError("worker failed", cause)),
    // `References`, not `Logger`: the same reference, without `Logger`'s imports (its file logger
    // loads `FileSystem` and the Stream modules), which a stdio worker would load for nothing.
    Effect.provideService(References.LogToStderr, true)
  ))
  const onSignal = () => fiber.interruptUnsafe(fiber.id)
  process.once("SIGTERM", onSignal)
  process.once("SIGINT", onSignal)
  fiber.addObserver((exit) => {
    process.exit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
  })
}

// ---------------------------------------------------------------------------------------------
// serving over a broker
// ---------------------------------------------------------------------------------------------

/**
 * What a worker serves over a {@link Broker.Broker}.
 *
 * @category models
 */
export interface ServeBrokerOptions {
  /** The subject prefix: the worker answers `<prefix>.tick` and `<prefix>.call`. */
  readonly prefix: string
  /** The same handlers as {@link serve}; `poll_tick` answers `<prefix>.tick`. */
  readonly handlers: Readonly<Record<string, Handler>>
  /**
   * Queue group of the endpoints. Instances in the same group share the requests (each goes to
   * one of them). Default `"q"`, NATS micro's default (ADR-32).
   */
  readonly queue?: string | undefined
  /** The worker's name, carried by logs and by errors of host calls. Default `"worker"`. */
  readonly name?: string | undefined
  /**
   * The service's name, as `$SRV.PING/INFO/STATS` report it (NATS micro): letters, digits, `-`
   * and `_`. Default `name`, else the prefix, with any other character made a `-`
   * (`plugins.calendar` → `plugins-calendar`).
   */
  readonly service?: string | undefined
  /** The service's version (SemVer), as `$SRV.PING/INFO/STATS` report it. Default `"0.0.0"`. */
  readonly version?: string | undefined
  readonly description?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
  /** Runs on an `initialize` call; its fields are merged into `{ok: true, supportedMethods}`. */
  readonly onInitialize?: ((params: unknown) => Effect.Effect<object | void, unknown, HostConnection>) | undefined
  /** Requests this worker handles at once; more wait their turn. Default 64. */
  readonly maxConcurrentRequests?: number | undefined
  /**
   * Notifications from a host (`client.notify`, published to `<prefix>.notify`), by method, as
   * in {@link ServeOptions}; one instance of the queue group handles each.
   */
  readonly notifications?: Readonly<Record<string, NotificationHandler>> | undefined
  /** Timeout of handlers' host calls. Default 30 s. */
  readonly requestTimeout?: Duration.Input | undefined
}

/**
 * One served instance of a worker's service: who it is (`name`, a unique `id`, `version`,
 * `started`) and its endpoints' counters (`num_requests`, `num_errors`, `last_error`,
 * `processing_time` and `average_processing_time` in nanoseconds), read whenever asked: what a
 * NATS micro `$SRV.INFO` / `$SRV.STATS` responder reports.
 *
 * @category models
 */
export type ServiceInstance = BrokerService.Instance

/**
 * The counters of one endpoint of a {@link ServiceInstance}, in the `$SRV.STATS` shape.
 *
 * @category models
 */
export type EndpointStats = EndpointStatsModule.EndpointStats

/**
 * A broker worker's service description is not what NATS micro (ADR-32) allows: a `service`
 * name other than letters, digits, `-` and `_`, or a `version` that is not SemVer. Nothing is
 * served then.
 *
 * @category errors
 */
export const InvalidService = NatsMicro.InvalidService

/**
 * @category errors
 */
export type InvalidService = NatsMicro.InvalidService

/**
 * Options of {@link mainBroker}: what to serve and which NATS servers to serve it on.
 *
 * @category models
 */
export interface BrokerMainOptions extends ServeBrokerOptions {
  /** NATS servers, `host:port` or `nats://host:port`. */
  readonly servers: string | ReadonlyArray<string>
  /** Bound on connecting. Default 10 s. */
  readonly connectTimeout?: Duration.Input | undefined
  /** Bound on draining the connection at exit. Default 5 s. */
  readonly drainTimeout?: Duration.Input | undefined
}

/**
 * The host connection of a handler whose request carries no host inbox (a bare JSON-RPC
 * request on `<prefix>.call`, or a tick): there is nobody to answer, so `callHost` and
 * `notifyHost` fail with a `PluginClientError` whose reason is `Closed`, except for `log`
 * notifications (`PluginWorker.log`), which go to the worker's own logger (stderr under
 * {@link mainBroker}). A request from a `RemotePlugin` client carries its host's inbox, and its
 * handler reaches that host instead.
 *
 * @category serving
 */
export const brokerHostConnection = (name: string): HostConnection["Service"] => {
  const unavailable = (method: string) =>
    Effect.fail(PluginClientError.make(
      name,
      new PluginClientError.Closed({
        detail: `cannot call \`${method}\` on the host: this request carries no host inbox (host calls need a RemotePlugin client, or stdio)`
      })
    ))
  return HostConnection.of({
    request: (method) => unavailable(method),
    notify: (method, params) => {
      if (method !== "log") return unavailable(method)
      const log = Option.getOrUndefined(Protocol.decodeLogParams(params))
      const text = log?.message ?? JSON.stringify(params) ?? "log"
      const level = Protocol.logLevelOf(log?.level)
      return Effect.logWithLevel(level)(...(log?.meta === undefined ? [text] : [text, log.meta]))
    }
  })
}

/** The host connection of a handler whose request came with its host's inbox. */
const linkedHostConnection = (link: BrokerService.HostLink): HostConnection["Service"] =>
  HostConnection.of({
    request: (method, params, callOptions) => link.request(method, params, callOptions?.timeout),
    notify: link.notify
  })

/**
 * Serves `options.handlers` over the {@link Broker.Broker} as one instance of a service, until
 * the current Scope closes (the wire is `internal/remoteWire.ts`):
 *
 * - `<prefix>.tick`: the payload is nexo's `{"method":"poll_tick","params":…}` envelope, or the
 *   params object alone (`Poller.tickParamsOf`), as JSON; the reply is
 *   `{"result": …}` or `{"error": {code, message, data?}}` (JSON). Invalid JSON gets -32700,
 *   a worker without a `poll_tick` handler -32601.
 * - `<prefix>.call`: the payload is a JSON-RPC request object; the reply is the JSON-RPC
 *   response object (unknown method → -32601, not a request → -32600, not JSON → -32700).
 *   `initialize` is answered as on stdio; `shutdown` is not special (a queue group would
 *   deliver it to an arbitrary worker): stop a broker worker by stopping its process. A request
 *   from a `RemotePlugin` client also carries its host's inbox: its handler can call the host,
 *   notify it, log to it and report progress (`callHost`, `notifyHost`, `log`, `progress`), and
 *   a cancel from that host (`<prefix>.cancel`) interrupts it (its finalizers run; no reply).
 * - `<prefix>.held`: the instance running (or just done with) a call says so, for a host that
 *   wonders whether the instance serving its call is still alive.
 *
 * - `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (each also `.<service>` and `.<service>.<id>`):
 *   the instance answers NATS micro discovery (ADR-32) with its service name, unique id,
 *   version, start time and the endpoints' counters, so `nats micro ls/info/stats`, the
 *   host's health and `plugin-host doctor --nats` see every instance.
 *
 * Both endpoints are in the queue group `queue` (default `"q"`), so instances share the load.
 * Errors map as in {@link serve} ({@link toJsonRpcError}; a defect is -32603). Requests are
 * handled concurrently, at most `maxConcurrentRequests` at once. Returns the served instance
 * (identity and counters) once every subject is subscribed, discovery last (an instance that
 * answers discovery serves calls). A `service` or `version` ADR-32 does not allow fails with
 * {@link InvalidService} before anything is served.
 *
 * @category serving
 */
export const serveBroker = (
  options: ServeBrokerOptions
): Effect.Effect<ServiceInstance, Broker.BrokerError | InvalidService, Broker.Broker | Scope.Scope> =>
  Effect.gen(function*() {
    const name = options.name ?? "worker"
    const identity = {
      name: options.service ?? serviceNameOf(options.name ?? options.prefix),
      id: crypto.randomUUID(),
      version: options.version ?? "0.0.0",
      description: options.description,
      metadata: options.metadata
    }
    yield* NatsMicro.validate(identity)
    const unlinked = brokerHostConnection(name)
    const semaphore = yield* Semaphore.make(Math.max(1, options.maxConcurrentRequests ?? 64))
    // No connection to negotiate over a broker: the initialize reply is the plain one.
    const handlers = handlerTable(options, {}, false)

    /** The reply to one request; an interrupted handler (cancelled, or the worker is stopping) gets none. */
    const dispatch = (
      id: JsonRpc.Id | null,
      method: string,
      params: unknown,
      link: BrokerService.HostLink | undefined
    ): Effect.Effect<JsonRpc.Success | JsonRpc.Failure> => {
      const handler = Object.hasOwn(handlers, method) ? handlers[method] : undefined
      if (handler === undefined) return Effect.succeed(JsonRpc.failure(id, Protocol.methodNotFound(method)))
      return Effect.suspend(() => handler(params)).pipe(
        Effect.provideService(HostConnection, link === undefined ? unlinked : linkedHostConnection(link)),
        Effect.tapDefect((defect) => Effect.logError(`handler for ${method} died`, defect)),
        Effect.exit,
        Effect.flatMap((exit) =>
          Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? Effect.interrupt : Effect.succeed(Protocol.replyTo(id, method, exit))
        ),
        semaphore.withPermits(1),
        Effect.annotateLogs({ worker: name, method })
      )
    }

    const instance = yield* BrokerService.serve({
      prefix: options.prefix,
      queue: options.queue ?? RemoteWire.defaultQueue,
      name,
      identity,
      hostCallTimeout: Duration.fromInputUnsafe(options.requestTimeout ?? "30 seconds"),
      serve: dispatch,
      notify: (method, params, link) =>
        notificationHandler(options.notifications, link === undefined ? unlinked : linkedHostConnection(link))(
          JsonRpc.notification(method, params)
        ).pipe(Effect.annotateLogs({ worker: name, method }))
    })
    yield* NatsMicro.respond(yield* Broker.Broker, { ...instance, started: Date.parse(instance.started), endpoints: instance.endpoints })
    return instance
  })

/** A default service name ADR-32 accepts: every character other than letters, digits, `-` and `_` made a `-`. */
const serviceNameOf = (text: string): string => text.replace(/[^A-Za-z0-9\-_]/g, "-")

/**
 * Serves a worker over a broker until interrupted (see {@link serveBroker}): builds the broker
 * from `layer`, serves `<prefix>.tick` and `<prefix>.call`, logs `serving …` once the
 * subscriptions are registered, and releases the broker (a NATS connection is drained) when
 * stopped. {@link mainBroker} runs it on NATS as a process's main program; any other
 * `Broker` layer (`Broker.layerMemory` in tests) works the same.
 *
 * @category serving
 */
export const runBroker = <E>(
  options: ServeBrokerOptions,
  layer: Layer.Layer<Broker.Broker, E>
): Effect.Effect<never, E | Broker.BrokerError | InvalidService> =>
  Effect.gen(function*() {
    const instance = yield* serveBroker(options)
    yield* Effect.logInfo(
      `serving ${options.prefix}.tick and ${options.prefix}.call in queue group ${options.queue ?? RemoteWire.defaultQueue}` +
        ` as service ${instance.name} ${instance.version}, instance ${instance.id}`
    )
    return yield* Effect.never
  }).pipe(Effect.scoped, Effect.provide(layer))

/**
 * Runs a broker worker on NATS as the process's main program: connects to `options.servers`,
 * serves {@link runBroker} until SIGTERM/SIGINT (exit 0, after draining the connection), logs
 * to stderr, and exits 1 if connecting or serving failed. The NATS client (`NatsBroker`, with
 * its optional peer dependency) is loaded here, on demand, so a stdio worker never loads it;
 * `NatsBroker` itself knows nothing of workers.
 *
 * @category serving
 */
export const mainBroker = (options: BrokerMainOptions): void => {
  void import("./NatsBroker.ts").then(
    (nats) =>
      runAsMain(runBroker(options, nats.layer({
        servers: options.servers,
        name: options.name ?? options.prefix,
        timeout: options.connectTimeout,
        drainTimeout: options.drainTimeout
      }))),
    (error: unknown) => {
      process.stderr.write(`cannot load the NATS broker (is @nats-io/transport-node installed?): ${String(error)}\n`)
      process.exit(1)
    }
  )
}
