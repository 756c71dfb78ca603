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
 * process's main program, loading `NatsBroker` and its client only then. The broker half lives in
 * `PluginWorkerBroker`, loaded the first time one of these runs: a stdio worker loads neither it
 * nor `Broker`, `Poller` or the NATS client.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Broker from "./Broker.ts"
import * as InvalidServiceModule from "./internal/invalidService.ts"
import * as LineBatcher from "./internal/lineBatcher.ts"
import * as LineDecoder from "./internal/lineDecoder.ts"
import * as ParentWatch from "./internal/parentWatch.ts"
import * as Protocol from "./internal/protocol.ts"
import * as RequestSignals from "./internal/requestSignals.ts"
import * as RpcConnection from "./internal/rpcConnection.ts"
import {
  CurrentProgress,
  handlerTable,
  type Handler,
  HostConnection,
  type NotificationHandler,
  notificationHandler,
  runAsMain
} from "./internal/workerHandlers.ts"
import * as JsonRpc from "./JsonRpc.ts"
import type * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClientError from "./PluginClientError.ts"
import type * as PluginContract from "./PluginContract.ts"
import type * as PluginMethod from "./PluginMethod.ts"
import type * as PluginWorkerBroker from "./PluginWorkerBroker.ts"
import type * as RpcPeer from "./RpcPeer.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

export {
  brokerHostConnection,
  HostConnection,
  notificationsUnhandledTotal,
  runAsMain,
  toJsonRpcError
} from "./internal/workerHandlers.ts"
export type { Handler, NotificationHandler } from "./internal/workerHandlers.ts"
export type {
  BrokerMainOptions,
  EndpointStats,
  ServeBrokerOptions,
  ServiceInstance
} from "./PluginWorkerBroker.ts"

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
export const serveTransport = (transport: RpcPeer.Transport, options: ServeOptions): Effect.Effect<void, never, Scope.Scope> =>
  serveOn(transport, options, connect)

/**
 * {@link serveTransport} with the connection opened by `open`: {@link serve} opens it directly
 * (its transport pushes), so a stdio worker never refers to `RpcPeer` and its Stream reader,
 * not even through an `import()` a bundler would follow.
 */
const serveOn = Effect.fnUntraced(function*(
  transport: RpcPeer.Transport,
  options: ServeOptions,
  open: typeof connect
) {
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

  const peer = yield* open(transport, {
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
 * Opens the connection: a transport that pushes its bytes (`listen`, as stdio's does) directly;
 * one read from an `incoming` stream through `RpcPeer`, loaded then (it is what needs
 * `effect/Stream`, which a stdio worker does without).
 */
const connect = (
  transport: RpcPeer.Transport,
  options: RpcPeer.Options<HostConnection>
): Effect.Effect<RpcPeer.RpcPeer, never, Scope.Scope | HostConnection> =>
  transport.listen !== undefined
    ? RpcConnection.make(transport, options, undefined)
    : Effect.flatMap(Effect.promise(() => import("./RpcPeer.ts")), (RpcPeer) => RpcPeer.make(transport, options))

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
    }, (messages) => LineDecoder.encodeMessages(framing, messages))
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
    return {
      name,
      pid: process.pid,
      framing,
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

/**
 * The framing a stdio worker speaks: its option, else the `PLUGIN_HOST_FRAMING` environment
 * variable, else NDJSON. Any other value of the variable is a defect: a worker guessing its
 * framing would only fail later, and less clearly. (Read from the environment, not through
 * `effect/Config`: `Config` loads `ConfigProvider`, which loads the `FileSystem` and Stream
 * modules, a third of what a stdio worker would load otherwise.)
 */
const framingOf = (options: ServeOptions): Effect.Effect<LifetimePolicy.Framing> => {
  if (options.framing !== undefined) return Effect.succeed(options.framing)
  const value = process.env[Protocol.framingVariable]
  if (value === undefined || value === "ndjson" || value === "content-length") return Effect.succeed(value ?? "ndjson")
  return Effect.die(new Error(`${Protocol.framingVariable}: expected "ndjson" | "content-length", got ${JSON.stringify(value)}`))
}

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
      const served = { ...transport, closed: Effect.raceFirst(transport.closed, hostGone) }
      yield* serveOn(served, options, (transport, options) => RpcConnection.make(transport, options, undefined))
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

// ---------------------------------------------------------------------------------------------
// serving over a broker (loaded on demand)
// ---------------------------------------------------------------------------------------------

/**
 * A broker worker's service description is not what NATS micro (ADR-32) allows: a `service`
 * name other than letters, digits, `-` and `_`, or a `version` that is not SemVer. Nothing is
 * served then.
 *
 * @category errors
 */
export const InvalidService = InvalidServiceModule.InvalidService

/**
 * @category errors
 */
export type InvalidService = InvalidServiceModule.InvalidService

/**
 * The broker half of the SDK, loaded the first time it is needed (the module system keeps it).
 * A function, not a constant: a bundler drops it with the wrappers a worker does not use.
 */
const brokerHalf = () => Effect.promise(() => import("./PluginWorkerBroker.ts"))

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
 * Errors map as in `PluginWorker.serve` ({@link toJsonRpcError}; a defect is -32603). Requests are
 * handled concurrently, at most `maxConcurrentRequests` at once. Returns the served instance
 * (identity and counters) once every subject is subscribed, discovery last (an instance that
 * answers discovery serves calls). A `service` or `version` ADR-32 does not allow fails with
 * {@link InvalidService} before anything is served.
 *
 * @category serving
 */
export const serveBroker = (
  options: PluginWorkerBroker.ServeBrokerOptions
): Effect.Effect<PluginWorkerBroker.ServiceInstance, Broker.BrokerError | InvalidService, Broker.Broker | Scope.Scope> =>
  Effect.flatMap(brokerHalf(), (half) => half.serveBroker(options))

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
  options: PluginWorkerBroker.ServeBrokerOptions,
  layer: Layer.Layer<Broker.Broker, E>
): Effect.Effect<never, E | Broker.BrokerError | InvalidService> => Effect.flatMap(brokerHalf(), (half) => half.runBroker(options, layer))

/**
 * Runs a broker worker on NATS as the process's main program: connects to `options.servers`,
 * serves {@link runBroker} until SIGTERM/SIGINT (exit 0, after draining the connection), logs
 * to stderr, and exits 1 if connecting or serving failed. The NATS client (`NatsBroker`, with
 * its optional peer dependency) is loaded here, on demand, so a stdio worker never loads it;
 * `NatsBroker` itself knows nothing of workers.
 *
 * @category serving
 */
export const mainBroker = (options: PluginWorkerBroker.BrokerMainOptions): void => {
  void import("./PluginWorkerBroker.ts").then(
    (half) => half.mainBroker(options),
    (error: unknown) => {
      process.stderr.write(`cannot load the broker worker: ${String(error)}\n`)
      process.exit(1)
    }
  )
}
