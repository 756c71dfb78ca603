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
 * notification fails at once with `Backpressure`, and replies the other side leaves unread end
 * the connection once they would take the queue past twice the cap. Notifications waiting for a
 * slow `onNotification` stay under `maxQueuedNotificationBytes` (and a count); beyond it they are
 * dropped, counted in `stats` and in the `plugin_notifications_dropped_total` metric. A handler
 * that returns at once is run as the notification is read, so it never drops one (see
 * `internal/notificationInbox.ts`).
 *
 * The connection ends when the process exits, stdin breaks, or the plugin breaks the protocol
 * (a line over `maxLineBytes`, a wrong id or a line that is not a message while a call is in
 * flight in serial mode, replies it leaves unread). Then every pending call fails at once with
 * the reason (for an exit: code or signal and the stderr excerpt), and later calls fail
 * immediately. A write the transport refuses is the end on its way: the call (or notification)
 * waits for it and fails with its reason, never with `Closed`, which only a connection closed by
 * its own Scope (the host) gives. Otherwise unparseable lines and responses to unknown ids are
 * logged and counted, never fatal. Requests from the plugin are served by `hostHandlers` (an
 * unknown method gets -32601, a failing handler an error reply), so nothing a plugin sends can
 * crash the host.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Framing from "./Framing.ts"
import * as NotificationInbox from "./internal/notificationInbox.ts"
import * as Protocol from "./internal/protocol.ts"
import * as JsonRpc from "./JsonRpc.ts"
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
  /** Bound on one incoming line. Default 16 MiB. */
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
   * with `Backpressure`. A line bigger than the cap still goes out alone. Default 32 MiB.
   */
  readonly maxQueuedBytes?: number | undefined
  /** Accept replies without `jsonrpc`/`id` (one-shot plugins; serial mode only). */
  readonly lenient?: boolean | undefined
  /** Methods the plugin may call on the host. */
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
  readonly incoming: Stream.Stream<Uint8Array, unknown>
  /**
   * For a source that pushes (a Node stream's `data` events), the same bytes handed over as they
   * arrive: `listen` registers the callbacks in the current Scope, and each chunk is processed
   * before the callback returns. When present it is used instead of `incoming`, which saves a
   * hop through a queue and a turn of the event loop per chunk.
   */
  readonly listen?: PluginProcess.PluginProcess["listenStdout"]
  /** Queues one line; false once the output is closed (and then `closed` completes). */
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
   * Interrupting the caller frees its slot (and sends nothing if it had not been sent yet).
   */
  readonly request: (
    method: string,
    params?: unknown,
    options?: { readonly timeout?: Duration.Input | undefined }
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
 * One host→plugin call, from the moment it is made until it is answered, times out, is
 * interrupted or the connection ends. `resume` completes the caller's fiber.
 */
interface Call {
  readonly method: string
  readonly params: unknown
  readonly timeout: Duration.Duration
  readonly timeoutMillis: number
  readonly resume: (exit: Exit.Exit<unknown, PluginClientError.PluginClientError>) => void
  /** 0 while the call waits for a slot; then its request id. */
  id: number
  /** Epoch millis (from `Clock`) at which the call times out; set when it is sent. */
  deadline: number
  /** Set once the caller gave up while waiting for a slot. */
  cancelled: boolean
  /** The request line, while it waits for room in the outgoing queue. */
  line: string | undefined
}

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

const abandonedMemory = 256

/** How long a connection whose other side is gone waits for the rest of its output. */
const outputDrainTimeout = Duration.millis(200)

/**
 * Opens a connection over a transport (see {@link fromProcess}). The connection lives in the
 * current Scope; closing it fails calls still pending with a `Closed` reason.
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*<R = never>(
  transport: Transport,
  options?: Options<R>
): Effect.fn.Return<RpcPeer, never, Scope.Scope | R> {
  const plugin = transport.name
  const maxConcurrent = Math.max(1, options?.maxConcurrentRequests ?? 64)
  const serial = maxConcurrent === 1
  const lenient = options?.lenient === true && serial
  const defaultTimeout = Duration.fromInputUnsafe(options?.requestTimeout ?? "30 seconds")
  const maxTimeout = Duration.fromInputUnsafe(options?.maxRequestTimeout ?? "5 minutes")
  const hostHandlers = options?.hostHandlers ?? {}
  const maxHandlers = Math.max(1, options?.maxConcurrentHandlers ?? 1024)
  const fail = (reason: PluginClientError.Reason) => PluginClientError.make(plugin, reason)
  const annotate = Effect.annotateLogs(transport.pid === undefined ? { plugin } : { plugin, pid: transport.pid })

  // Calls sent and not yet answered, by id.
  const pending = new Map<number, Call>()
  // Calls waiting for a slot, in arrival order (from `waitingHead` on; cancelled ones skipped).
  let waiting: Array<Call> = []
  let waitingHead = 0
  // Ids whose caller gave up (timeout, interruption): their replies are late, not unknown.
  const abandoned = new Set<number>()
  let nextId = 1
  let inFlight: number | undefined
  // Set once the connection is broken; the reason is built from it the first time it is needed.
  let broken: EndReason | undefined
  const brokenReason = (): PluginClientError.Reason => {
    if (typeof broken === "function") broken = broken()
    return broken ?? new PluginClientError.Closed({ detail: "connection closed" })
  }
  const closedDeferred = yield* Deferred.make<void>()
  const stats = {
    requestsSent: 0,
    responsesReceived: 0,
    timeouts: 0,
    lateResponses: 0,
    unknownResponses: 0,
    invalidLines: 0,
    notificationsReceived: 0,
    notificationsDropped: 0,
    notificationsRefused: 0,
    hostRequestsRefused: 0,
    hostRequestsServed: 0
  }

  // The timeout sweeper (below), while one runs, and the deadline it sleeps towards.
  let sweeper: Fiber.Fiber<void> | undefined
  let sweepTarget = Number.POSITIVE_INFINITY
  const stopSweeper = () => {
    const fiber = sweeper
    sweeper = undefined
    sweepTarget = Number.POSITIVE_INFINITY
    fiber?.interruptUnsafe()
  }

  const breakConnection = (reason: EndReason) => {
    if (broken !== undefined) return
    broken = reason
    stopSweeper()
    // State first: resuming a caller runs it synchronously, and it may call again.
    const calls = [...pending.values(), ...waiting.slice(waitingHead)]
    pending.clear()
    waiting = []
    waitingHead = 0
    blocked = []
    blockedHead = 0
    inFlight = undefined
    if (calls.length > 0) {
      const error = Exit.fail(fail(brokenReason()))
      for (const call of calls) if (!call.cancelled) call.resume(error)
    }
    Deferred.doneUnsafe(closedDeferred, Exit.void)
  }

  // Logs, host handlers and the notification consumer run in one set, interrupted with the
  // connection; the context is captured once, with the plugin's log annotations and the services
  // the connection was made with, instead of annotating every forked effect.
  const connectionScope = yield* Effect.scope
  const connectionContext = yield* annotate(Effect.context<R>())
  const runFork = Effect.runForkWith(connectionContext)
  // Most tasks (a synchronous handler, a log line) are over when `runFork` returns: only the
  // others join the set, which saves its bookkeeping on every request, and the set is made when
  // the first of them comes (a connection that never had one closes without its finalizer).
  let tasks: FiberSet.FiberSet<unknown, unknown> | undefined
  const runTask = (effect: Effect.Effect<unknown, unknown, R>): void => {
    const fiber = runFork(effect)
    if (fiber.pollUnsafe() !== undefined) return
    tasks ??= Effect.runSync(Scope.provide(FiberSet.make<unknown, unknown>(), connectionScope))
    FiberSet.addUnsafe(tasks, fiber)
  }
  const log = (effect: Effect.Effect<void>) => runTask(effect)

  // -- the outgoing queue --------------------------------------------------------------------
  const maxQueuedBytes = Math.max(1, options?.maxQueuedBytes ?? defaultMaxQueuedBytes)
  const queuedBytes = transport.queuedBytes ?? (() => 0)
  /** Whether a line of `size` characters fits under `limit`; alone in the queue, any line does. */
  const fits = (size: number, limit: number) => {
    const queued = queuedBytes()
    return queued === 0 || queued + size <= limit
  }
  // Calls sent (they hold a slot and their timeout runs) whose line waits for room, in order,
  // from `blockedHead` on; those that timed out or were given up meanwhile are skipped.
  let blocked: Array<Call> = []
  let blockedHead = 0
  const isBlocked = () => blockedHead < blocked.length

  // -- plugin → host requests ----------------------------------------------------------------
  // A reply cannot wait (the other side's call hangs on it) nor be dropped: it may fill the
  // queue to twice the cap, so calls from this side can never crowd replies out, and one beyond
  // that ends the connection (the other side sends requests and leaves the replies unread).
  const replyLimit = 2 * maxQueuedBytes
  const reply = (message: JsonRpc.Success | JsonRpc.Failure) => {
    // Nothing more for a side that stopped reading; after any other end, replies of handlers
    // still running go out (a worker drains them after the host closed its stdin).
    if (broken instanceof PluginClientError.Backpressure) return
    const line = JsonRpc.encodeResponse(message)
    if (!fits(line.length + 1, replyLimit)) {
      breakConnection(new PluginClientError.Backpressure({ queuedBytes: queuedBytes(), limit: replyLimit }))
      return
    }
    transport.writeLine(line)
  }
  // Counted by hand rather than through the FiberSet: a forked fiber can run (and wake
  // others) before the set has recorded it, and "all replies written" must not miss it.
  let serving = 0
  let idle = Deferred.makeUnsafe<void>()
  const serveRequest = (request: JsonRpc.Request) => {
    stats.hostRequestsServed++
    const handler = Object.hasOwn(hostHandlers, request.method) ? hostHandlers[request.method] : undefined
    if (handler === undefined) {
      reply(JsonRpc.failure(request.id, Protocol.methodNotFound(request.method)))
      return
    }
    if (serving >= maxHandlers) {
      stats.hostRequestsRefused++
      reply(JsonRpc.failure(request.id, {
        code: JsonRpc.ErrorCode.WorkerUnavailable,
        message: `too many concurrent requests (${maxHandlers} being served)`
      }))
      return
    }
    if (serving++ === 0) idle = Deferred.makeUnsafe<void>()
    runTask(
      Effect.onExit(Effect.suspend(() => handler(request.params)), (exit) => {
        reply(Protocol.replyTo(request.id, request.method, exit))
        // After the reply: whoever waits for idle handlers (a worker about to exit) resumes at once.
        if (--serving === 0) Deferred.doneUnsafe(idle, Exit.void)
        return Effect.void
      })
    )
  }

  // -- notifications, delivered in order, bounded by count and bytes -------------------------
  const onNotification = options?.onNotification
  // The metric series of this plugin, made at the first drop.
  let droppedMetric: Metric.Counter<number> | undefined
  const dropNotification = () => {
    droppedMetric ??= Metric.counter(notificationsDroppedTotal.id, {
      description: notificationsDroppedTotal.description,
      attributes: { plugin }
    })
    droppedMetric.updateUnsafe(1, connectionContext)
    if (stats.notificationsDropped++ % 1000 === 0) {
      log(Effect.logWarning(`notification handler cannot keep up: ${stats.notificationsDropped} notification(s) dropped so far`))
    }
  }
  const inbox = onNotification === undefined ? undefined : NotificationInbox.make({
    handler: onNotification,
    maxCount: Math.max(1, options?.maxQueuedNotifications ?? 10_000),
    maxBytes: Math.max(1, options?.maxQueuedNotificationBytes ?? defaultMaxQueuedBytes),
    run: runTask,
    onDrop: dropNotification
  })

  // -- plugin → host responses ---------------------------------------------------------------
  const settle = (id: number, call: Call, message: JsonRpc.Success | JsonRpc.Failure) => {
    release(id)
    stats.responsesReceived++
    if (message._tag === "Success") {
      call.resume(Exit.succeed(message.result))
    } else {
      const parts = JsonRpc.errorParts(message.error)
      const reason = new PluginClientError.PluginError({
        message: parts.message,
        ...(parts.code === undefined ? {} : { code: parts.code }),
        ...(parts.data === undefined ? {} : { data: parts.data })
      })
      call.resume(Exit.fail(fail(reason)))
    }
  }
  const onResponse = (message: JsonRpc.Success | JsonRpc.Failure) => {
    let id = message.id
    // A serial plugin's id-less reply (one-shot dialect, or an error it could not attribute)
    // can only belong to the call in flight.
    if (id === null && serial && inFlight !== undefined && (lenient || message._tag === "Failure")) id = inFlight
    const entry = typeof id === "number" ? pending.get(id) : undefined
    if (entry !== undefined && typeof id === "number") return settle(id, entry, message)
    if (typeof id === "number" && abandoned.has(id)) {
      stats.lateResponses++
      return
    }
    if (serial && inFlight !== undefined) {
      breakConnection(new PluginClientError.IdMismatch({ expected: inFlight, got: id }))
      return
    }
    stats.unknownResponses++
    log(Effect.logWarning(`response for unknown id ${JSON.stringify(id)} ignored`))
  }

  // -- reading -------------------------------------------------------------------------------
  const onFrame = (frame: Framing.Frame) => {
    if (broken !== undefined) return
    if (typeof frame !== "string") {
      breakConnection(new PluginClientError.MalformedResponse({
        detail: `line longer than maxLineBytes (${frame.maxLineBytes} bytes)`,
        line: ""
      }))
      return
    }
    const decoded = JsonRpc.decodeLine(frame, { lenient })
    if (Result.isFailure(decoded)) {
      stats.invalidLines++
      // A strictly serial plugin's only expected line is the reply to the call in flight: a line
      // that is not a message is that reply gone wrong, and waiting out the call's timeout would
      // only delay the same failure. Concurrent replies cannot be attributed, so there it is noise.
      if (serial && inFlight !== undefined) {
        breakConnection(new PluginClientError.MalformedResponse({ detail: decoded.failure.detail, line: decoded.failure.excerpt }))
        return
      }
      log(Effect.logWarning(`ignored a line that is not JSON-RPC (${decoded.failure._tag}): ${decoded.failure.detail}`, decoded.failure.excerpt))
      return
    }
    const message = decoded.success
    switch (message._tag) {
      case "Success":
      case "Failure":
        return onResponse(message)
      case "Request":
        return serveRequest(message)
      case "Notification":
        stats.notificationsReceived++
        inbox?.offer(message, frame.length)
        return
    }
  }
  const decoder = Framing.makeLineDecoder({ maxLineBytes: options?.maxLineBytes })
  // Whether the other side's output has ended, and what to do when it does (set while the other
  // side is gone but its output is still being drained).
  let outputEnded = false
  let onOutputEnd: (() => void) | undefined
  const outputDone = () => {
    decoder.end(onFrame)
    outputEnded = true
    const then = onOutputEnd
    onOutputEnd = undefined
    then?.()
  }
  const readingFailed = (detail: string) => breakConnection(new PluginClientError.Io({ detail: `reading failed: ${detail}` }))
  if (transport.listen !== undefined) {
    let ended = false
    yield* transport.listen({
      onChunk: (chunk) => {
        if (!ended) decoder.push(chunk, onFrame)
      },
      onEnd: (failure) => {
        if (ended) return
        ended = true
        if (failure !== undefined) readingFailed(failure)
        outputDone()
      }
    }).pipe(annotate)
  } else {
    yield* transport.incoming.pipe(
      Stream.runForEachArray((chunks) =>
        Effect.sync(() => {
          for (const chunk of chunks) decoder.push(chunk, onFrame)
        })
      ),
      Effect.catchCause((cause) => Effect.sync(() => readingFailed(Cause.pretty(cause).split("\n")[0] ?? "unknown error"))),
      Effect.ensuring(Effect.sync(outputDone)),
      annotate,
      Effect.forkScoped
    )
  }

  // The other side's end closes the connection once its output is drained, bounded (a
  // grandchild may hold a dead plugin's stdout open) by one timer fiber that the output's end
  // interrupts: no race of two fibers.
  // Known once the other side is gone: closing the connection then reuses it (a stop's end
  // says the process exited, not that the connection was closed under it).
  let endReason: EndReason | undefined
  yield* transport.closed.pipe(
    Effect.flatMap((reason) =>
      Effect.sync(() => {
        endReason = reason
        if (outputEnded) return breakConnection(reason)
        const timer = runFork(Effect.sleep(outputDrainTimeout))
        timer.addObserver(() => breakConnection(reason))
        onOutputEnd = () => timer.interruptUnsafe()
      })
    ),
    Effect.forkScoped
  )
  // A plain Scope finalizer: it needs no services, so it skips `Effect.addFinalizer`'s copy of
  // the fiber's context (paid by every plugin a stop-all takes down).
  yield* Scope.addFinalizer(
    yield* Effect.scope,
    Effect.sync(() => {
      const drained = onOutputEnd
      onOutputEnd = undefined
      drained?.()
      breakConnection(endReason ?? (() => new PluginClientError.Closed({ detail: "connection closed" })))
    })
  )

  // -- host → plugin ---------------------------------------------------------------------------
  // A call is one `Effect.callback`: no fiber, lock or deferred per call. At most
  // `maxConcurrent` calls are sent at once; the rest wait in arrival order and are sent as slots
  // free up (a reply, a timeout or an interrupted caller frees one).
  // A refused write means the other side is gone or its input broke (the transport's contract:
  // `closed` completes after it). The call is not failed with a reason of its own: it waits, like
  // the calls already sent, for the connection's end and fails with why (the exit and its stderr,
  // or the broken input), and later lines are not even tried. Failing it at once would hand a
  // caller's loop a synchronous failure per call while the end is still on its way, and name a
  // crash as if the host had closed the connection.
  let inputRefused = false
  const write = (line: string): boolean => {
    if (!inputRefused && transport.writeLine(line)) return true
    inputRefused = true
    return false
  }

  const abandon = (id: number) => {
    abandoned.add(id)
    if (abandoned.size > abandonedMemory) {
      const oldest = abandoned.values().next()
      if (!oldest.done) abandoned.delete(oldest.value)
    }
  }

  // Timeouts: at most one sweeper fiber per connection instead of a timer (and a race) per call.
  // It sleeps until the earliest deadline, fails what has expired, sleeps again until the next
  // one, and ends when nothing is pending. A call starts one when none runs; a call whose deadline
  // comes before the one the sweeper sleeps towards (a shorter timeout than the calls before it)
  // replaces it. Calls with the usual timeout never do, so a busy connection keeps one sleeping
  // fiber, and the end of the connection interrupts it: no race, no wake-up signal. Deadlines come
  // from `Clock`, so `TestClock` drives them.
  const clock = yield* Clock.Clock

  /**
   * Sends a call (its line waits for room if the outgoing queue is full: its timeout runs from
   * now all the same); the reason it could not be sent, if so.
   */
  const dispatch = (call: Call): PluginClientError.Reason | undefined => {
    const id = nextId++
    const line = JsonRpc.encode(JsonRpc.request(id, call.method, call.params))
    if (Result.isFailure(line)) return new PluginClientError.InvalidParams({ method: call.method, detail: line.failure })
    call.id = id
    call.deadline = clock.currentTimeMillisUnsafe() + call.timeoutMillis
    // Registered before the write: the reply may be read before `writeLine` returns.
    pending.set(id, call)
    if (serial) inFlight = id
    if (isBlocked() || !fits(line.success.length + 1, maxQueuedBytes)) {
      block(call, line.success)
    } else if (write(line.success)) {
      stats.requestsSent++
    }
    if (call.deadline < sweepTarget) {
      sweeper?.interruptUnsafe()
      sweepTarget = call.deadline
      sweeper = runFork(Effect.andThen(Effect.sleep(Duration.millis(call.timeoutMillis)), sweep))
    }
    return undefined
  }

  const block = (call: Call, line: string) => {
    call.line = line
    // Calls given up while blocked leave an entry behind until the queue moves: a plugin that
    // never reads would make them pile up, so they are swept out now and then.
    if (blocked.length - blockedHead > 2 * maxConcurrent + 16) {
      blocked = blocked.slice(blockedHead).filter((c) => c.line !== undefined && pending.get(c.id) === c)
      blockedHead = 0
    }
    blocked.push(call)
  }

  /** Writes blocked calls, in order, while there is room (called when queued bytes went out). */
  const unblock = () => {
    while (isBlocked() && broken === undefined) {
      const call = blocked[blockedHead]!
      const line = call.line
      if (line === undefined || pending.get(call.id) !== call) {
        blockedHead++
        continue
      }
      if (!fits(line.length + 1, maxQueuedBytes)) break
      blockedHead++
      call.line = undefined
      // A refused line's call stays pending until the connection ends (see `write`).
      if (write(line)) stats.requestsSent++
    }
    if (!isBlocked()) {
      blocked = []
      blockedHead = 0
    }
  }
  if (transport.listenWritten !== undefined) {
    yield* transport.listenWritten(() => {
      if (isBlocked()) unblock()
    })
  }

  /** Sends waiting calls while there are free slots. */
  const admit = () => {
    while (waitingHead < waiting.length && pending.size < maxConcurrent && broken === undefined) {
      const call = waiting[waitingHead++]!
      if (call.cancelled) continue
      const problem = dispatch(call)
      if (problem !== undefined) call.resume(Exit.fail(fail(problem)))
    }
    if (waitingHead === waiting.length) {
      waiting = []
      waitingHead = 0
    } else if (waitingHead > 1024 && waitingHead * 2 > waiting.length) {
      waiting = waiting.slice(waitingHead)
      waitingHead = 0
    }
  }

  /** A sent call is over (answered, timed out or given up): its slot goes to the next waiter. */
  const release = (id: number) => {
    pending.delete(id)
    if (inFlight === id) inFlight = undefined
    if (waitingHead < waiting.length) admit()
  }

  const expire = (id: number, call: Call) => {
    call.line = undefined
    release(id)
    abandon(id)
    stats.timeouts++
    call.resume(Exit.fail(fail(new PluginClientError.Timeout({ method: call.method, timeout: call.timeout }))))
  }
  // One pass of the sweeper: a call resumed by `expire` may call again at once (its deadline is
  // later than `sweepTarget`, so it starts no sweeper of its own) and is seen by this same pass.
  const sweep: Effect.Effect<void> = Effect.suspend(() => {
    if (broken !== undefined) return Effect.void
    const now = clock.currentTimeMillisUnsafe()
    let earliest = Number.POSITIVE_INFINITY
    for (const [id, call] of pending) {
      if (call.deadline <= now) expire(id, call)
      else if (call.deadline < earliest) earliest = call.deadline
    }
    sweepTarget = earliest
    if (earliest === Number.POSITIVE_INFINITY) {
      sweeper = undefined
      return Effect.void
    }
    return Effect.andThen(Effect.sleep(Duration.millis(earliest - now)), sweep)
  })

  /** The caller gave up (interruption): a waiting call leaves the line, a sent one its slot. */
  const cancel = (call: Call) => {
    if (call.id === 0) {
      call.cancelled = true
    } else if (pending.get(call.id) === call) {
      call.line = undefined
      abandon(call.id)
      release(call.id)
    }
  }

  const request: RpcPeer["request"] = (method, params, callOptions) => {
    const timeout = callOptions?.timeout === undefined
      ? defaultTimeout
      : Duration.min(Duration.fromInputUnsafe(callOptions.timeout), maxTimeout)
    const timeoutMillis = Duration.toMillis(timeout)
    return Effect.callback<unknown, PluginClientError.PluginClientError>((resume) => {
      if (broken !== undefined) return resume(Exit.fail(fail(brokenReason())))
      const call: Call = { method, params, timeout, timeoutMillis, resume, id: 0, deadline: 0, cancelled: false, line: undefined }
      if (pending.size < maxConcurrent && waitingHead === waiting.length) {
        const problem = dispatch(call)
        if (problem !== undefined) return resume(Exit.fail(fail(problem)))
      } else {
        waiting.push(call)
      }
      // Runs only if the caller is interrupted before the call is over.
      return Effect.sync(() => cancel(call))
    })
  }

  /** Fails with the connection's end reason once it is known (after a refused write, it comes). */
  const failAtEnd: Effect.Effect<never, PluginClientError.PluginClientError> = Effect.flatMap(
    Deferred.await(closedDeferred),
    () => Effect.fail(fail(brokenReason()))
  )
  const refuseNotification = () => {
    stats.notificationsRefused++
    return Effect.fail(fail(new PluginClientError.Backpressure({ queuedBytes: queuedBytes(), limit: maxQueuedBytes })))
  }
  // A notification cannot wait (the caller expects it sent or refused now): with the queue full,
  // or calls waiting for room ahead of it, it is refused.
  const notify: RpcPeer["notify"] = (method, params) =>
    Effect.suspend(() => {
      if (broken !== undefined) return Effect.fail(fail(brokenReason()))
      // A full queue refuses before encoding: a caller retrying in a loop makes no garbage.
      if (isBlocked() || queuedBytes() >= maxQueuedBytes) return refuseNotification()
      const line = JsonRpc.encode(JsonRpc.notification(method, params))
      if (Result.isFailure(line)) return Effect.fail(fail(new PluginClientError.InvalidParams({ method, detail: line.failure })))
      if (!fits(line.success.length + 1, maxQueuedBytes)) return refuseNotification()
      return write(line.success) ? Effect.void : failAtEnd
    })

  return {
    plugin,
    request,
    notify,
    pending: Effect.sync(() => pending.size),
    stats: Effect.sync((): Stats => ({ ...stats, queuedBytes: queuedBytes(), queuedNotificationBytes: inbox?.queuedBytes() ?? 0 })),
    closeReason: Effect.sync(() => broken === undefined ? Option.none() : Option.some(brokenReason())),
    closed: Effect.map(Deferred.await(closedDeferred), brokenReason),
    ended: Deferred.await(closedDeferred),
    handlersIdle: Effect.suspend(() => serving === 0 ? Effect.void : Deferred.await(idle))
  }
})
