/**
 * The JSON-RPC connection itself, as `RpcPeer` describes it (its models and `make`), over a
 * transport that pushes its bytes (`listen`). `RpcPeer` re-exports the models and adds what needs
 * `effect/Stream`: reading a transport's `incoming` stream, and progress as a Stream. A stdio
 * worker (`PluginWorker`) opens its connection here, so it does not load the Stream modules.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as JsonRpc from "../JsonRpc.ts"
import type * as LifetimePolicy from "../LifetimePolicy.ts"
import * as PluginClientError from "../PluginClientError.ts"
import type * as PluginProcess from "../PluginProcess.ts"
import { type Call, type CallObserver as CallObserverOf, CallTable, finish } from "./callTable.ts"
import { ConnectionEnd } from "./connectionEnd.ts"
import { ConnectionFibers } from "./connectionFibers.ts"
import { IncomingDispatcher } from "./incomingDispatcher.ts"
import { IncomingFlow } from "./incomingFlow.ts"
import type * as LineDecoder from "./lineDecoder.ts"
import { NotificationDrops } from "./notificationDrops.ts"
import * as NotificationInbox from "./notificationInbox.ts"
import { OutgoingQueue } from "./outgoingQueue.ts"
import { ProgressFeed } from "./progressFeed.ts"
import { RequestServer } from "./requestServer.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * Serves one method the plugin may call on the host. A {@link JsonRpc.JsonRpcError} becomes
 * the error reply; any other failure or defect becomes -32603.
 *
 * @category models
 */
export type HostHandler<R = never> = (params: unknown) => Effect.Effect<unknown, JsonRpc.JsonRpcError, R>

/**
 * Host methods by name.
 *
 * @category models
 */
export type HostHandlers<R = never> = Readonly<Record<string, HostHandler<R>>>

/**
 * Options of a connection.
 *
 * @category models
 */
export interface Options<R = never> {
  /** Calls in flight at once; more wait for a slot. `1` makes the plugin strictly serial. Default 64. */
  readonly maxConcurrentRequests?: number | undefined
  /** Default per-call timeout. Default 30 s. */
  readonly requestTimeout?: Duration.Input | undefined
  /** Upper bound on any per-call timeout. Default 5 min. */
  readonly maxRequestTimeout?: Duration.Input | undefined
  /** Bound on one incoming line (or Content-Length header block or body). Default 16 MiB. */
  readonly maxLineBytes?: number | undefined
  /**
   * Requests from the other side served at once; beyond it they are refused at once with
   * WORKER_UNAVAILABLE (-32000), so a plugin flooding the host cannot grow it without bound.
   * Default 1024.
   */
  readonly maxConcurrentHandlers?: number | undefined
  /**
   * Notifications waiting for `onNotification`; beyond it they are dropped, counted and logged
   * (never silently). Default 10 000.
   */
  readonly maxQueuedNotifications?: number | undefined
  /**
   * Bytes (line length) of the notifications waiting for `onNotification`; beyond it they are
   * dropped like those over `maxQueuedNotifications`. Default 32 MiB.
   */
  readonly maxQueuedNotificationBytes?: number | undefined
  /**
   * Bytes of outgoing lines queued for the other side and not yet taken by it, when the transport
   * can tell (`queuedBytes`). A call waits for room within its timeout; a notification fails with
   * `Backpressure`; a reply may fill the queue to twice this, and one beyond ends the connection
   * with `Backpressure`. Once replies take the queue over this, the other side's output is not
   * read until the queue is down to half (unless calls wait for room: their replies come on it);
   * a pause with nothing going out for `requestTimeout` ends the connection with `Backpressure`.
   * A line bigger than the cap still goes out alone. Default 32 MiB.
   */
  readonly maxQueuedBytes?: number | undefined
  /** Accept replies without `jsonrpc`/`id` (one-shot plugins; serial mode only). */
  readonly lenient?: boolean | undefined
  /**
   * What the other side is told of a call this side gives up after sending it (a timeout, an
   * interrupted caller), and where a call's progress token goes: see
   * {@link LifetimePolicy.Cancellation}. Default `"none"`. Cancels from the other side are
   * honoured in both dialects whatever this says.
   */
  readonly cancellation?: LifetimePolicy.Cancellation | undefined
  /** Methods the other side may call; they run with the services the connection was made with. */
  readonly hostHandlers?: HostHandlers<R> | undefined
  /** Receives every notification from the plugin, in order. */
  readonly onNotification?: ((notification: JsonRpc.Notification) => Effect.Effect<void>) | undefined
}

/**
 * What a connection runs over: incoming bytes (`listen`, or else `incoming`: one of the two), a
 * way to queue outgoing lines, and an effect that completes (with the reason) when the other
 * side is gone. `RpcPeer.fromProcess` builds one over a plugin process; the plugin side builds
 * one over its own stdin/stdout.
 *
 * @category models
 */
export interface Transport {
  /** The name errors and logs carry (the plugin's name). */
  readonly name: string
  readonly pid?: number | undefined
  /**
   * How messages are delimited on the bytes both ways (see `Framing`): `incoming` is decoded
   * with it, and `writeLine` frames what it queues with it. Default `"ndjson"`.
   */
  readonly framing?: LineDecoder.Mode | undefined
  /** The other side's bytes, for a source that is pulled; read only when there is no `listen`. */
  readonly incoming?: Stream.Stream<Uint8Array, unknown> | undefined
  /**
   * For a source that pushes (a Node stream's `data` events), the same bytes handed over as they
   * arrive: `listen` registers the callbacks in the current Scope, and each chunk is processed
   * before the callback returns. When present it is used instead of `incoming`, which saves a
   * hop through a queue and a turn of the event loop per chunk. The switch it may return pauses
   * the source (flow control); without one, a pushing source is never paused.
   */
  readonly listen?: ((handlers: {
    readonly onChunk: (chunk: Uint8Array) => void
    readonly onEnd: (failure?: string) => void
  }) => Effect.Effect<PluginProcess.StdoutSwitch | void, never, Scope.Scope>) | undefined
  /** Queues one message (a JSON text), framed as `framing` says; false once the output is closed (and then `closed` completes). */
  readonly writeLine: (line: string) => boolean
  /**
   * Bytes queued by `writeLine` and not yet taken by the other side. A transport without it is
   * never capped (the plugin side: its stdout is the host's to read).
   */
  readonly queuedBytes?: (() => number) | undefined
  /** Calls the listener, for as long as the current Scope is open, each time queued bytes went out. */
  readonly listenWritten?: PluginProcess.PluginProcess["listenInputWritten"] | undefined
  /**
   * Completes when the other side is gone or the output broke, with why: the reason itself or a
   * function that builds it (only called if someone needs it: most stops never do, and a
   * reason is a Schema error with a stack).
   */
  readonly closed: Effect.Effect<EndReason>
}

/**
 * Why a transport ended: the reason, or a function that builds it on demand.
 *
 * @category models
 */
export type EndReason = PluginClientError.Reason | (() => PluginClientError.Reason)

/**
 * Options of one call.
 *
 * @category models
 */
export interface CallOptions {
  /** How long to wait for the reply. Default the connection's `requestTimeout`, capped by `maxRequestTimeout`. */
  readonly timeout?: Duration.Input | undefined
  /**
   * Asks for progress: the request carries a progress token (MCP's `params._meta.progressToken`,
   * or LSP's `params.workDoneToken` when `cancellation` is `"lsp"`; params must then be an object
   * or absent), and each progress the other side reports for it is handed here, in order (MCP:
   * `{progress, total?, message?}`; LSP: its `value`), and moves the deadline to a full timeout
   * from then, never past `maxRequestTimeout` after the call was sent. A callback that falls behind
   * skips to the latest value; its failures are logged.
   */
  readonly onProgress?: ((value: unknown) => Effect.Effect<void>) | undefined
}

/**
 * Hears a call as it starts and ends, synchronously (see {@link RpcPeer.request}): how the owner
 * of a connection counts and times its calls without wrapping each in effects of its own.
 *
 * @category models
 */
export type CallObserver = CallObserverOf

/**
 * Counters of one connection.
 *
 * @category models
 */
export interface Stats {
  readonly requestsSent: number
  readonly responsesReceived: number
  readonly timeouts: number
  /** Responses to calls that had already timed out or been interrupted. */
  readonly lateResponses: number
  /** Cancels sent for calls given up after the other side had seen them. */
  readonly cancelsSent: number
  /** Cancels received from the other side. */
  readonly cancelsReceived: number
  /** Handlers interrupted by a cancel from the other side. */
  readonly handlersCancelled: number
  /** Progress notifications that reached a call's `onProgress`. */
  readonly progressReceived: number
  /** Responses to ids this connection never issued. */
  readonly unknownResponses: number
  /** Lines that were not valid JSON-RPC messages. */
  readonly invalidLines: number
  readonly notificationsReceived: number
  /** Notifications dropped because `onNotification` could not keep up. */
  readonly notificationsDropped: number
  /** Notifications refused with `Backpressure` because the other side was not reading. */
  readonly notificationsRefused: number
  /** Bytes queued for the other side right now (see `maxQueuedBytes`). */
  readonly queuedBytes: number
  /** Times reading the other side's output paused because replies filled the queue past `maxQueuedBytes`. */
  readonly readPauses: number
  /** Bytes of notifications waiting for `onNotification` right now. */
  readonly queuedNotificationBytes: number
  /** Requests from the other side refused because too many were being served. */
  readonly hostRequestsRefused: number
  readonly hostRequestsServed: number
}

/**
 * A live connection.
 *
 * @category models
 */
export interface RpcPeer {
  readonly plugin: string
  /**
   * Calls `method` and waits for its result. Fails with a `PluginError` reason when the plugin
   * answers with an error object, `Timeout` after the timeout, or the connection's end reason.
   * Interrupting the caller frees its slot (and sends nothing if it had not been sent yet; a
   * cancel in the `cancellation` dialect if it had). An `observer` hears the call start as it is
   * made and end before its caller resumes, however it ends.
   */
  readonly request: (
    method: string,
    params?: unknown,
    options?: CallOptions,
    observer?: CallObserver
  ) => Effect.Effect<unknown, PluginClientError.PluginClientError>
  /** Sends a notification. */
  readonly notify: (method: string, params?: unknown) => Effect.Effect<void, PluginClientError.PluginClientError>
  /** Calls waiting for a reply. */
  readonly pending: Effect.Effect<number>
  readonly stats: Effect.Effect<Stats>
  /** Why the connection ended, once it has. */
  readonly closeReason: Effect.Effect<Option.Option<PluginClientError.Reason>>
  /** Waits for the connection to end and returns why. */
  readonly closed: Effect.Effect<PluginClientError.Reason>
  /** Waits for the connection to end (without building the reason `closed` returns). */
  readonly ended: Effect.Effect<void>
  /** Waits until no request from the other side is being served. */
  readonly handlersIdle: Effect.Effect<void>
}

// ---------------------------------------------------------------------------------------------
// constructor
// ---------------------------------------------------------------------------------------------

/**
 * Notifications dropped because a connection's `onNotification` could not keep up, by plugin.
 *
 * @category metrics
 */
export const notificationsDroppedTotal = Metric.counter("plugin_notifications_dropped_total", {
  description: "Notifications from plugins dropped because their handler could not keep up"
})

/** Default of `maxQueuedBytes` and `maxQueuedNotificationBytes`. */
const defaultMaxQueuedBytes = 32 * 1024 * 1024

/**
 * Opens a connection over a transport (`RpcPeer.make`, which adds the reading of a transport
 * without `listen`: `readStream`). The connection lives in the current Scope; closing it fails
 * calls still pending with a `Closed` reason.
 *
 * The connection is made of parts that each own one side of it (in `internal/`):
 * `ConnectionEnd` (why and when it ends), `OutgoingQueue` (the byte-bounded lines to the other
 * side), `CallTable` (calls made, their slots and timeouts), `IncomingDispatcher` (what the other
 * side sends, routed to the table, to the `RequestServer` of host handlers, or to the
 * notification inbox) and `ConnectionFibers` (the fibers it runs besides its callers').
 */
export const make = Effect.fnUntraced(function*<R = never>(
  transport: Transport,
  options: Options<R> | undefined,
  readStream: ReadStream | undefined
): Effect.fn.Return<RpcPeer, never, Scope.Scope | R> {
  const plugin = transport.name
  const maxConcurrent = Math.max(1, options?.maxConcurrentRequests ?? 64)
  const fail = (reason: PluginClientError.Reason) => PluginClientError.make(plugin, reason)
  const annotate = Effect.annotateLogs(transport.pid === undefined ? { plugin } : { plugin, pid: transport.pid })
  const clock = yield* Clock.Clock
  const fibers = new ConnectionFibers(yield* annotate(Effect.context<R>()), yield* Effect.scope)

  // Ending fails every call still pending or waiting; the parts are emptied before any caller
  // is resumed (a resumed caller runs at once, and may call again).
  const end: ConnectionEnd = new ConnectionEnd({
    fork: fibers.fork,
    onClose: () => {
      flow.release()
      outgoing.close()
      calls.failAll(() => fail(end.reason()))
    }
  })
  const outgoing = new OutgoingQueue({
    output: transport,
    maxQueuedBytes: Math.max(1, options?.maxQueuedBytes ?? defaultMaxQueuedBytes),
    end,
    compactAt: 2 * maxConcurrent + 16,
    onReplyQueued: () => flow.onQueued()
  })
  const defaultTimeout = Duration.fromInputUnsafe(options?.requestTimeout ?? "30 seconds")
  const flow = new IncomingFlow({
    queuedBytes: outgoing.queuedBytes,
    callsWaiting: () => outgoing.isBlocked,
    pauseAbove: outgoing.maxQueuedBytes,
    maxPauseMillis: Duration.toMillis(defaultTimeout),
    clock,
    serve: (request) => server.serve(request),
    end,
    fork: fibers.fork
  })
  const maxTimeout = Duration.fromInputUnsafe(options?.maxRequestTimeout ?? "5 minutes")
  const calls = new CallTable({
    maxConcurrent,
    clock,
    fork: fibers.fork,
    outgoing,
    end,
    fail,
    cancellation: options?.cancellation ?? "none",
    maxTimeoutMillis: Duration.toMillis(maxTimeout)
  })
  const server = new RequestServer<R>({
    handlers: options?.hostHandlers ?? {},
    maxHandlers: Math.max(1, options?.maxConcurrentHandlers ?? 1024),
    run: fibers.run,
    reply: (message) => outgoing.reply(message)
  })
  const drops = new NotificationDrops({ counter: notificationsDroppedTotal, plugin, context: fibers.context, log: fibers.log })
  const inbox = options?.onNotification === undefined ? undefined : NotificationInbox.make({
    handler: options.onNotification,
    maxCount: Math.max(1, options.maxQueuedNotifications ?? 10_000),
    maxBytes: Math.max(1, options.maxQueuedNotificationBytes ?? defaultMaxQueuedBytes),
    run: fibers.run,
    onDrop: drops.drop
  })
  const incoming = new IncomingDispatcher({
    serial: maxConcurrent === 1,
    lenient: options?.lenient === true,
    maxLineBytes: options?.maxLineBytes,
    framing: transport.framing ?? "ndjson",
    calls,
    end,
    serve: flow.serve,
    cancel: (id, dialect) => server.cancel(id, dialect),
    notify: inbox?.offer,
    log: fibers.log
  })

  yield* read(transport, incoming, flow, annotate, readStream)
  yield* watchEnd(transport, end, flow)
  if (transport.listenWritten !== undefined) {
    // Reading resumes first: calls unparked next may fill the queue again.
    yield* transport.listenWritten(() => {
      flow.onWritten()
      outgoing.onWritten()
    })
  }

  return {
    plugin,
    request: makeRequest(calls, end, fail, fibers.run, clock, { defaultTimeout, maxTimeout }),
    notify: makeNotify(outgoing, end, fail),
    pending: Effect.sync(() => calls.size),
    stats: Effect.sync((): Stats => ({
      requestsSent: outgoing.requestsSent,
      responsesReceived: calls.responsesReceived,
      timeouts: calls.timeouts,
      lateResponses: incoming.lateResponses,
      cancelsSent: calls.cancelsSent,
      cancelsReceived: incoming.cancelsReceived,
      handlersCancelled: server.cancelled,
      progressReceived: calls.progressReceived,
      unknownResponses: incoming.unknownResponses,
      invalidLines: incoming.invalidLines,
      notificationsReceived: incoming.notificationsReceived,
      notificationsDropped: drops.count,
      notificationsRefused: outgoing.notificationsRefused,
      hostRequestsRefused: server.refused,
      hostRequestsServed: server.served,
      queuedBytes: outgoing.queuedBytes(),
      readPauses: flow.pauses,
      queuedNotificationBytes: inbox?.queuedBytes() ?? 0
    })),
    closeReason: Effect.sync(() => end.isOver ? Option.some(end.reason()) : Option.none()),
    closed: Effect.map(Deferred.await(end.done), () => end.reason()),
    ended: Deferred.await(end.done),
    handlersIdle: server.idle
  }
})

/**
 * Reads a transport that has no `listen` (its `incoming` stream) into the dispatcher, in the
 * current Scope, waiting at `flow`'s gate before it pulls more. `RpcPeer` provides it, so that
 * this module, which a stdio worker loads, needs no `effect/Stream`.
 */
export type ReadStream = (
  transport: Transport,
  incoming: IncomingDispatcher,
  flow: IncomingFlow,
  annotate: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
) => Effect.Effect<void, never, Scope.Scope>

/**
 * Feeds the other side's bytes to the dispatcher as they come: through the transport's `listen`
 * callbacks when it has them (registered in the current Scope; the switch it returns is how
 * `flow` pauses them), else with `readStream`. `annotate` adds the plugin's log annotations.
 */
const read = (
  transport: Transport,
  incoming: IncomingDispatcher,
  flow: IncomingFlow,
  annotate: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  readStream: ReadStream | undefined
): Effect.Effect<void, never, Scope.Scope> => {
  if (transport.listen !== undefined) {
    return annotate(transport.listen({ onChunk: incoming.push, onEnd: incoming.finish })).pipe(
      Effect.map((source) => {
        if (source !== undefined) flow.attach(source)
      })
    )
  }
  if (readStream === undefined) return Effect.die(new Error(`transport ${transport.name}: no \`listen\` (RpcPeer.make reads \`incoming\`)`))
  return readStream(transport, incoming, flow, annotate)
}

/**
 * Tells the connection's end when the other side is gone, and when the current Scope closes.
 */
const watchEnd = Effect.fnUntraced(function*(transport: Transport, end: ConnectionEnd, flow: IncomingFlow) {
  yield* transport.closed.pipe(
    // What a side that is gone wrote last is read, paused or not.
    Effect.flatMap((reason) =>
      Effect.sync(() => {
        flow.release()
        end.otherSideGone(reason)
      })
    ),
    Effect.forkScoped
  )
  // A plain Scope finalizer: it needs no services, so it skips `Effect.addFinalizer`'s copy of
  // the fiber's context (paid by every plugin a stop-all takes down).
  yield* Scope.addFinalizer(yield* Effect.scope, Effect.sync(() => end.scopeClosed()))
})

/**
 * A connection's `request`: one `Effect.callback` per call (no fiber, lock or deferred), which
 * the call table resumes; interrupting the caller before the call is over cancels it. A call
 * asking for progress gets a feed running its callback on the connection's fibers (`run`).
 */
const makeRequest = (
  calls: CallTable,
  end: ConnectionEnd,
  fail: (reason: PluginClientError.Reason) => PluginClientError.PluginClientError,
  run: (effect: Effect.Effect<void>) => void,
  clock: Clock.Clock,
  timeouts: { readonly defaultTimeout: Duration.Duration; readonly maxTimeout: Duration.Duration }
): RpcPeer["request"] => {
  const defaultTimeoutMillis = Duration.toMillis(timeouts.defaultTimeout)
  return (method, params, callOptions, observer) => {
    const timeout = callOptions?.timeout === undefined
      ? timeouts.defaultTimeout
      : Duration.min(Duration.fromInputUnsafe(callOptions.timeout), timeouts.maxTimeout)
    const timeoutMillis = timeout === timeouts.defaultTimeout ? defaultTimeoutMillis : Duration.toMillis(timeout)
    return Effect.callback<unknown, PluginClientError.PluginClientError>((resume) => {
      observer?.started()
      const startedNanos = observer === undefined ? undefined : clock.monotonicTimeNanosUnsafe()
      const onProgress = callOptions?.onProgress
      const progress = onProgress === undefined ? undefined : new ProgressFeed({ callback: onProgress, run })
      const call: Call = { method, params, timeout, timeoutMillis, resume, id: 0, deadline: 0, cancelled: false, line: undefined, progress, cap: 0, observer, startedNanos }
      if (end.isOver) return finish(call, Exit.fail(fail(end.reason())))
      const problem = calls.submit(call)
      if (problem !== undefined) return finish(call, Exit.fail(fail(problem)))
      // Runs only if the caller is interrupted before the call is over.
      return Effect.sync(() => calls.cancel(call))
    })
  }
}

/**
 * A connection's `notify`. A notification cannot wait (the caller expects it sent or refused
 * now): with the queue full, or calls waiting for room ahead of it, it is refused with
 * `Backpressure`. A refused write means the other side is gone or its input broke (the
 * transport's contract: `closed` completes after it): the notification is not failed with a
 * reason of its own, it waits for the connection's end and fails with why (the exit and its
 * stderr, or the broken input). Failing it at once would hand a caller's loop a synchronous
 * failure per call while the end is still on its way, and name a crash as if the host had
 * closed the connection. A call whose line is refused waits the same way: it stays pending.
 */
const makeNotify = (
  outgoing: OutgoingQueue,
  end: ConnectionEnd,
  fail: (reason: PluginClientError.Reason) => PluginClientError.PluginClientError
): RpcPeer["notify"] => {
  const failAtEnd: Effect.Effect<never, PluginClientError.PluginClientError> = Effect.flatMap(
    Deferred.await(end.done),
    () => Effect.fail(fail(end.reason()))
  )
  const refuse = () => Effect.fail(fail(outgoing.refuseNotification()))
  return (method, params) =>
    Effect.suspend(() => {
      if (end.isOver) return Effect.fail(fail(end.reason()))
      // A full queue refuses before encoding: a caller retrying in a loop makes no garbage.
      if (!outgoing.hasRoom()) return refuse()
      const line = JsonRpc.encode(JsonRpc.notification(method, params))
      if (Result.isFailure(line)) return Effect.fail(fail(new PluginClientError.InvalidParams({ method, detail: line.failure })))
      if (!outgoing.fits(line.success.length + 1, outgoing.maxQueuedBytes)) return refuse()
      return outgoing.write(line.success) ? Effect.void : failAtEnd
    })
}
