/**
 * A JSON-RPC 2.0 connection to one plugin process, in both directions.
 *
 * Like vscode-jsonrpc's connection, one type serves host→plugin calls, plugin→host calls and
 * notifications, so they share one id table, one timeout path and one error path. Calls carry
 * ids allocated per connection and wait in a pending table with a per-call timeout; replies
 * may come back in any order. At most `maxConcurrentRequests` calls are in flight; with `1` the
 * plugin is strictly serial and a reply carrying another id is a protocol violation.
 *
 * Memory is bounded by bytes in both directions. Lines queued for the other side and not yet
 * taken by it stay under `maxQueuedBytes`: a call waits for room (within its timeout), a
 * notification fails at once with `Backpressure`, and once replies take the queue over the cap
 * the other side's output is no longer read (flow control, `internal/incomingFlow.ts`) until it
 * has read the queue down to half: a side flooding requests blocks on its own output. A pause in
 * which nothing goes out for `requestTimeout`, or replies that would take the queue past twice
 * the cap, end the connection with `Backpressure`. Notifications waiting for a
 * slow `onNotification` stay under `maxQueuedNotificationBytes` (and a count); beyond it they are
 * dropped, counted in `stats` and in the `plugin_notifications_dropped_total` metric. A handler
 * that returns at once is run as the notification is read, so it never drops one (see
 * `internal/notificationInbox.ts`).
 *
 * Messages are framed as the transport says: one per line (`"ndjson"`, the default) or after a
 * `Content-Length` header (`"content-length"`, LSP's base protocol), see `Framing`.
 *
 * The connection ends when the process exits, stdin breaks, or the plugin breaks the protocol
 * (a line, header block or body over `maxLineBytes`, a malformed `Content-Length` header, a wrong id or a line that is not a message while a call is in
 * flight in serial mode, replies it leaves unread). Then every pending call fails at once with
 * the reason (for an exit: code or signal and the stderr excerpt), and later calls fail
 * immediately. A write the transport refuses is the end on its way: the call (or notification)
 * waits for it and fails with its reason, never with `Closed`, which only a connection closed by
 * its own Scope (the host) gives. Otherwise unparseable lines and responses to unknown ids are
 * logged and counted, never fatal. Requests from the plugin are served by `hostHandlers` (an
 * unknown method gets -32601, a failing handler an error reply), so nothing a plugin sends can
 * crash the host.
 *
 * Calls are cancelled both ways. A call the other side has seen and this side gives up (it timed
 * out, or its caller was interrupted) is cancelled there in the `cancellation` dialect:
 * `$/cancelRequest {id}` (`"lsp"`), `notifications/cancelled {requestId, reason}` (`"mcp"`), or
 * not at all (`"none"`, the default); its reply, if one still comes, is counted as late. A cancel
 * from the other side, in either dialect, interrupts the handler serving that request (LSP gets
 * a -32800 reply, MCP none). A call may ask for progress (`onProgress`): it carries a progress
 * token, and each progress the other side reports for it reaches the callback and gives the call
 * a full timeout from then, never more than `maxRequestTimeout` after it was sent. The wire forms
 * are in `internal/requestSignals.ts` and the README.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type Call, type CallObserver as CallObserverOf, CallTable, finish } from "./internal/callTable.ts"
import { ConnectionEnd } from "./internal/connectionEnd.ts"
import { ConnectionFibers } from "./internal/connectionFibers.ts"
import { IncomingDispatcher } from "./internal/incomingDispatcher.ts"
import { IncomingFlow } from "./internal/incomingFlow.ts"
import { NotificationDrops } from "./internal/notificationDrops.ts"
import * as NotificationInbox from "./internal/notificationInbox.ts"
import { OutgoingQueue } from "./internal/outgoingQueue.ts"
import { ProgressFeed } from "./internal/progressFeed.ts"
import { RequestServer } from "./internal/requestServer.ts"
import type * as Framing from "./Framing.ts"
import * as JsonRpc from "./JsonRpc.ts"
import type * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClientError from "./PluginClientError.ts"
import type * as PluginProcess from "./PluginProcess.ts"

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
 * What a connection runs over: incoming bytes, a way to queue outgoing lines, and an effect
 * that completes (with the reason) when the other side is gone. {@link fromProcess} builds one
 * over a plugin process; the plugin side builds one over its own stdin/stdout.
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
  readonly framing?: Framing.Mode | undefined
  readonly incoming: Stream.Stream<Uint8Array, unknown>
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
 * A transport over a plugin process: its end is the process's exit (code or signal and the
 * stderr excerpt) or a failed write to its stdin.
 *
 * @category constructors
 */
export const fromProcess = (process: PluginProcess.PluginProcess): Transport => ({
  name: process.name,
  pid: process.pid,
  framing: process.framing,
  incoming: process.stdout,
  listen: process.listenStdout,
  writeLine: process.writeLine,
  queuedBytes: process.queuedInputBytes,
  listenWritten: process.listenInputWritten,
  // One wait on the process's end (no race of two waits per plugin). The stderr excerpt is read
  // at the end; the reason is built from it only if asked for.
  closed: Effect.flatMap(process.ended, (end) =>
    end._tag === "InputFailed"
      ? Effect.succeed<EndReason>(() => new PluginClientError.Io({ detail: `writing stdin failed: ${end.detail}` }))
      : Effect.map(process.stderrExcerpt, (stderrExcerpt): EndReason => () => new PluginClientError.Exited({ ...end.exit, stderrExcerpt })))
})

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
 * A progress the other side reported for a call streamed with {@link progressStream} (MCP:
 * `{progress, total?, message?}`; LSP: its `value`).
 *
 * @category models
 */
export interface CallProgress {
  readonly _tag: "Progress"
  readonly value: unknown
}

/**
 * The result of a call streamed with {@link progressStream}: its last element.
 *
 * @category models
 */
export interface CallResult<A> {
  readonly _tag: "Result"
  readonly value: A
}

/**
 * What a call streamed with {@link progressStream} emits: its progress reports, in order, then
 * its result, after which the stream ends; a failed call fails the stream.
 *
 * @category models
 */
export type CallUpdate<A> = CallProgress | CallResult<A>

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
// constructors
// ---------------------------------------------------------------------------------------------

/**
 * A call that asks for progress, as a `Stream`: `call` is given the `onProgress` to pass in its
 * {@link CallOptions}, and the stream emits each progress as a {@link CallProgress}, then the
 * result as a {@link CallResult}, and ends; the call's failure is the stream's. The call runs while the
 * stream is pulled: a consumer that stops early (`Stream.take`, an interruption) interrupts it,
 * which cancels it at the other side in the connection's dialect. A consumer that falls
 * `bufferSize` (default 16) updates behind skips to the latest progress, as `onProgress` does;
 * the result is never skipped.
 *
 * ```ts
 * RpcPeer.progressStream((onProgress) => peer.request("index", { root }, { onProgress, timeout: "1 minute" }))
 * ```
 *
 * @category constructors
 */
export const progressStream = <A, E, R>(
  call: (onProgress: (value: unknown) => Effect.Effect<void>) => Effect.Effect<A, E, R>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<CallUpdate<A>, E, R> =>
  Stream.callback<CallUpdate<A>, E, R>(
    (queue) =>
      call((value) => Effect.asVoid(Queue.offer(queue, { _tag: "Progress", value }))).pipe(
        Effect.matchCauseEffect({
          onSuccess: (value) => Effect.andThen(Queue.offer(queue, { _tag: "Result", value }), Queue.end(queue)),
          onFailure: (cause) => Queue.failCause(queue, cause)
        }),
        Effect.forkScoped
      ),
    { bufferSize: Math.max(1, options?.bufferSize ?? 16), strategy: "sliding" }
  )

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
 * Opens a connection over a transport (see {@link fromProcess}). The connection lives in the
 * current Scope; closing it fails calls still pending with a `Closed` reason.
 *
 * The connection is made of parts that each own one side of it (in `internal/`):
 * `ConnectionEnd` (why and when it ends), `OutgoingQueue` (the byte-bounded lines to the other
 * side), `CallTable` (calls made, their slots and timeouts), `IncomingDispatcher` (what the other
 * side sends, routed to the table, to the `RequestServer` of host handlers, or to the
 * notification inbox) and `ConnectionFibers` (the fibers it runs besides its callers').
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*<R = never>(
  transport: Transport,
  options?: Options<R>
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

  yield* read(transport, incoming, flow, annotate)
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
 * Feeds the other side's bytes to the dispatcher as they come: through the transport's `listen`
 * callbacks when it has them (registered in the current Scope; the switch it returns is how
 * `flow` pauses them), else from a fiber reading its `incoming` stream in the current Scope,
 * which waits at `flow`'s gate before it pulls more. `annotate` adds the plugin's log annotations.
 */
const read = (
  transport: Transport,
  incoming: IncomingDispatcher,
  flow: IncomingFlow,
  annotate: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<void, never, Scope.Scope> => {
  if (transport.listen !== undefined) {
    return annotate(transport.listen({ onChunk: incoming.push, onEnd: incoming.finish })).pipe(
      Effect.map((source) => {
        if (source !== undefined) flow.attach(source)
      })
    )
  }
  return transport.incoming.pipe(
    Stream.runForEachArray((chunks) =>
      Effect.suspend(() => {
        for (const chunk of chunks) incoming.push(chunk)
        return flow.gate() ?? Effect.void
      })
    ),
    Effect.catchCause((cause) => Effect.sync(() => incoming.finish(Cause.pretty(cause).split("\n")[0] ?? "unknown error"))),
    Effect.ensuring(Effect.sync(() => incoming.finish())),
    annotate,
    Effect.forkScoped,
    Effect.asVoid
  )
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
