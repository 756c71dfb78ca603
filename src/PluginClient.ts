/**
 * One plugin, kept alive on demand: the lifetime contract around a plugin process.
 *
 * A `PluginClient` spawns its plugin lazily on the first request (concurrent first requests
 * share one spawn) or eagerly, verifies the executable's checksum before every spawn, runs the
 * handshake, and then multiplexes calls over one {@link RpcPeer} connection. An idle plugin is
 * reaped by a scoped timer fiber that every call re-arms (it never fires while calls are in
 * flight); the next call respawns it.
 *
 * A crash — an unexpected exit, a broken pipe, a protocol violation, a failed spawn or
 * handshake, or too many timeouts in a row — is recorded in the plugin's restart history, and
 * one pure decision (`internal/restartDecision.ts`) says what follows. Without a backoff, when
 * the sliding window holds `restartCap` crashes the plugin is `Disabled`: the call that tripped
 * it fails with `RestartCapExceeded`, later calls fail fast with `Disabled` until
 * `clearDisabled`; a plugin that crashes less often stays usable for ever. With a backoff, each
 * crash is followed by a restart after a growing delay, until `giveUpAfter` restarts in a row.
 * A plugin's own error objects are not crashes. Every state change goes through one
 * `transition` function and is published as an event.
 *
 * Each spawn is a new generation of the plugin. Only the current generation's crash changes the
 * state: a process a stop, restart or reap has replaced is torn down and otherwise ignored, so a
 * race between a crash and a restart never leaves two processes or a state that lies. Listeners
 * (`onEvent`, `events`) are fed through queues and run on their own fibers, never inside a
 * transition. Every fiber the client starts (exit watchers, the idle watch, the backoff timer,
 * the listener) is owned by its Scope.
 *
 * A client is made in a Scope with {@link make}, or provided as a service: {@link layer} gives
 * the {@link PluginClient} service, {@link layerAs} the same client under a tag of the user's
 * own, one per plugin. Its options are grouped by concern: what to run ({@link RunOptions}),
 * how to talk ({@link ProtocolOptions}), who watches ({@link ObserverOptions}), and per call
 * ({@link CallOptions}). A manifest loaded from disk knows its folder, so a relative executable
 * needs no `manifestDir`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FileSystem from "effect/FileSystem"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Path from "effect/Path"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Handshake from "./Handshake.ts"
import * as ManagedClient from "./internal/managedClient.ts"
import { formatDuration } from "./internal/formatDuration.ts"
import * as Lifecycle from "./internal/lifecycle.ts"
import * as Protocol from "./internal/protocol.ts"
import * as RestartDecision from "./internal/restartDecision.ts"
import type * as JsonRpc from "./JsonRpc.ts"
import * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClientError from "./PluginClientError.ts"
import * as PluginManifest from "./PluginManifest.ts"
import type * as PluginMethod from "./PluginMethod.ts"
import * as PluginProcess from "./PluginProcess.ts"
import * as RpcPeer from "./RpcPeer.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * Where a plugin's life stands.
 *
 * @category models
 */
export type PluginState =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Running" }
  | { readonly _tag: "Stopping" }
  | { readonly _tag: "Recovering" }
  | { readonly _tag: "Backoff"; readonly until: number }
  | { readonly _tag: "Disabled"; readonly reason: string }
  | { readonly _tag: "Stopped" }

/**
 * Constructors for {@link PluginState}.
 *
 * @category models
 */
export const PluginState: {
  readonly Idle: PluginState
  readonly Starting: PluginState
  readonly Running: PluginState
  readonly Stopping: PluginState
  readonly Recovering: PluginState
  readonly Stopped: PluginState
  readonly Backoff: (until: number) => PluginState
  readonly Disabled: (reason: string) => PluginState
} = {
  Idle: { _tag: "Idle" },
  Starting: { _tag: "Starting" },
  Running: { _tag: "Running" },
  Stopping: { _tag: "Stopping" },
  Recovering: { _tag: "Recovering" },
  Stopped: { _tag: "Stopped" },
  Backoff: (until) => ({ _tag: "Backoff", until }),
  Disabled: (reason) => ({ _tag: "Disabled", reason })
}

/**
 * What happened to a plugin, in order. The events of one process (`Ready`, `Exit`, `Reaped`)
 * carry its `generation`: 1 for the client's first process, one more for each spawn. An `Exit`
 * can arrive after the `Ready` of the next generation (a restart does not wait for it to be
 * published); it says nothing about the newer process.
 *
 * @category models
 */
export type PluginEvent =
  | { readonly _tag: "Ready"; readonly plugin: string; readonly pid: number; readonly generation: number }
  | {
    readonly _tag: "Exit"
    readonly plugin: string
    readonly pid: number
    readonly generation: number
    readonly code: number | null
    readonly signal: string | null
    readonly requested: boolean
  }
  | {
    readonly _tag: "Crash"
    readonly plugin: string
    readonly reason: string
    readonly code: number | null
    readonly signal: string | null
    readonly willRestart: boolean
  }
  | { readonly _tag: "StateChanged"; readonly plugin: string; readonly from: PluginState; readonly to: PluginState }
  | { readonly _tag: "Log"; readonly plugin: string; readonly level: string; readonly message: string; readonly meta: unknown }
  | { readonly _tag: "Notification"; readonly plugin: string; readonly method: string; readonly params: unknown }
  | { readonly _tag: "Reaped"; readonly plugin: string; readonly pid: number; readonly generation: number }
  | StreamEvent

/**
 * A `streams.open` / `streams.emit` / `streams.close` notification from the plugin (a channel of
 * values it pushes to the host). When the plugin dies, every channel it left open gets a
 * synthetic `close` with `synthetic: true`.
 *
 * @category models
 */
export interface StreamEvent {
  readonly _tag: "Stream"
  readonly plugin: string
  readonly action: "open" | "emit" | "close"
  readonly channel: string
  readonly params: unknown
  readonly synthetic: boolean
}

/**
 * A snapshot of a plugin's health. Times are epoch milliseconds from `Clock`.
 *
 * @category models
 */
export interface PluginHealth {
  readonly pluginName: string
  readonly state: PluginState
  readonly crashesInWindow: number
  readonly lastUsed: number | undefined
  readonly lastCrash: number | undefined
  readonly lastError: string | undefined
  /**
   * The `PluginClientError` reason tag of the last failure (`Exited`, `InitFailed`,
   * `ChecksumMismatch`…), so callers decide on what failed without reading `lastError`'s text.
   */
  readonly lastErrorReason: PluginClientError.Reason["_tag"] | undefined
  readonly pid: number | undefined
  readonly uptime: Duration.Duration | undefined
  readonly consecutiveCrashes: number
  readonly totalCrashes: number
  readonly spawns: number
  readonly requests: number
  readonly pendingRequests: number
  readonly nextRestartAt: number | undefined
  readonly stderrExcerpt: string
  readonly supportedMethods: ReadonlyArray<string> | undefined
  /**
   * Notifications from the running process dropped because the handlers could not keep up (a
   * quarter of the policy's `maxQueuedBytes` of them were waiting); 0 when no process runs. Also counted, across
   * processes, by the `plugin_notifications_dropped_total` metric.
   */
  readonly notificationsDropped: number
  /** Bytes written for the running process and not yet read by it (capped by `maxQueuedBytes`). */
  readonly queuedBytes: number
}

/**
 * What to run: a `PluginManifest`, or any record with the same fields. A relative `executable`
 * is resolved against `options.manifestDir`, else the manifest's own folder (`location`, set
 * when it was loaded or discovered); a record with neither runs `executable` as given.
 *
 * @category models
 */
export interface PluginSource {
  readonly name: string
  readonly executable: string
  readonly args?: ReadonlyArray<string> | undefined
  readonly allowedEnvVars?: ReadonlyArray<string> | undefined
  readonly checksumSha256?: string | undefined
  readonly location?: PluginManifest.Location | undefined
}

/**
 * What to run besides the manifest: the process's environment and folders.
 *
 * @category options
 */
export interface RunOptions {
  /** Extra fixed environment variables. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** The plugin's working directory. Default the host's. */
  readonly cwd?: string | undefined
  /** The host environment allow-listed variables come from. Default `process.env`. */
  readonly hostEnv?: Readonly<Record<string, string | undefined>> | undefined
  /**
   * Folder a relative `executable` is resolved against (and its checksum verified in). Default
   * the manifest's `location.dir`; needed only for a manifest built in code.
   */
  readonly manifestDir?: string | undefined
}

/**
 * How the host and the plugin talk: the lifetime policy, the handshake, what the host answers
 * and hears, and how a stop begins.
 *
 * @category options
 */
export interface ProtocolOptions {
  /** Default `LifetimePolicy.defaultPolicy`. */
  readonly policy?: LifetimePolicy.LifetimePolicy | undefined
  /** Default `Handshake.none`. */
  readonly handshake?: Handshake.Handshake | undefined
  /** Requests the plugin may send the host (unknown methods are answered with -32601). */
  readonly hostHandlers?: RpcPeer.HostHandlers | undefined
  /** Every notification except `log` and `streams.*` (which go to the logger and the events). */
  readonly onNotification?: ((notification: JsonRpc.Notification) => Effect.Effect<void>) | undefined
  /** `streams.open/emit/close` notifications, and the synthetic `close` of channels left open at a crash. */
  readonly onStreamNotification?: ((event: StreamEvent) => Effect.Effect<void>) | undefined
  /** A request sent as the graceful first step of stopping (e.g. `shutdown`). Default none. */
  readonly shutdownRequest?: string | undefined
}

/**
 * Who watches the plugin's life.
 *
 * @category options
 */
export interface ObserverOptions {
  /**
   * Called with every event, in order, from the client's creation (no subscription race, unlike
   * `events`, which only sees events after the stream starts). It runs on a fiber of its own,
   * never inside the plugin's lifecycle: a slow listener delays only its own later events, and
   * one that fails is logged and keeps receiving. A listener 10,000 events behind misses the
   * plugin's messages (`Log`, `Notification`, `Stream`) until it catches up, never an event of
   * the plugin's life. When the client's Scope closes, the listener gets one turn to take the
   * last events (`Stopped`); one still busy then is interrupted.
   */
  readonly onEvent?: ((event: PluginEvent) => Effect.Effect<void>) | undefined
}

/**
 * Everything a client can be told when it is made: what to run, how to talk, who watches.
 *
 * @category options
 */
export interface Options extends RunOptions, ProtocolOptions, ObserverOptions {}

/**
 * Options of one call.
 *
 * @category options
 */
export interface CallOptions {
  /** How long to wait for the reply. Default the policy's `requestTimeout`, capped by `maxRequestTimeout`. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A live plugin.
 *
 * @category models
 */
export interface PluginClient {
  readonly name: string
  /** Calls a method, spawning the plugin first if needed. */
  readonly request: (
    method: string,
    params?: unknown,
    options?: CallOptions
  ) => Effect.Effect<unknown, PluginClientError.PluginClientError>
  /**
   * Calls a method only if the plugin is running right now: never spawns, and does not count as
   * activity (the idle timer, `lastUsed` and the timeout streak are untouched) — for health
   * probes. Fails with `Unavailable` when the plugin is not running.
   */
  readonly requestIfRunning: (
    method: string,
    params?: unknown,
    options?: CallOptions
  ) => Effect.Effect<unknown, PluginClientError.PluginClientError>
  /** Calls a typed method: params encoded and result decoded with its Schemas. */
  readonly call: <Params, Result, ParamsWire, ResultWire>(
    method: PluginMethod.PluginMethod<Params, Result, ParamsWire, ResultWire>,
    params: Params,
    options?: CallOptions
  ) => Effect.Effect<Result, PluginClientError.PluginClientError>
  /**
   * Sends a notification, spawning the plugin first if needed. Like a call, it re-arms the idle
   * timer, and a dead connection under it is recorded as a crash (failing with
   * `RestartCapExceeded` if it tripped the cap).
   */
  readonly notify: (method: string, params?: unknown) => Effect.Effect<void, PluginClientError.PluginClientError>
  readonly health: Effect.Effect<PluginHealth>
  readonly state: Effect.Effect<PluginState>
  /** Spawns the plugin now (no-op when running). */
  readonly start: Effect.Effect<void, PluginClientError.PluginClientError>
  /** Stops the plugin (if running) and starts it again. */
  readonly restart: Effect.Effect<void, PluginClientError.PluginClientError>
  /**
   * Stops the plugin and cancels any pending restart. It stays `Stopped` (calls fail fast with
   * `Closed`) until `start`.
   */
  readonly stop: Effect.Effect<void>
  /** Stops the plugin for good; later calls and `start` fail with `Closed`. */
  readonly shutdown: Effect.Effect<void>
  /** Forgets recorded crashes and leaves `Disabled` for `Idle`. */
  readonly clearDisabled: Effect.Effect<void>
  readonly events: Stream.Stream<PluginEvent>
}

/**
 * The plugin client as a service: `yield* PluginClient.PluginClient` in a program that is
 * provided {@link layer}. The tag and the interface share one name (as Effect's own `McpClient`
 * and `FileSystem` do), so `PluginClient.PluginClient` stays the type of every client, however
 * it was made. To host several plugins as services at once, give each its own tag and build it
 * with {@link layerAs}.
 *
 * @category services
 */
export const PluginClient: Context.Service<PluginClient, PluginClient> = Context.Service<PluginClient>(
  "effect-plugin-host/PluginClient"
)

// ---------------------------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------------------------

/** @category metrics */
export const spawnsTotal = Metric.counter("plugin_spawns_total", { description: "Plugin processes spawned" })
/** @category metrics */
export const crashesTotal = Metric.counter("plugin_crashes_total", { description: "Plugin crashes (exits, protocol violations, failed starts)" })
/** @category metrics */
export const requestsTotal = Metric.counter("plugin_requests_total", { description: "Requests sent to plugins" })
/** @category metrics */
export const reapsTotal = Metric.counter("plugin_idle_reaps_total", { description: "Idle plugins stopped" })
/** @category metrics */
export const requestDuration = Metric.timer("plugin_request_duration", { description: "Plugin request round trip" })

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

interface Incarnation {
  readonly generation: number
  readonly scope: Scope.Closeable
  readonly process: PluginProcess.PluginProcess
  readonly peer: RpcPeer.RpcPeer
  /** Set once the crash of this incarnation has been recorded: whether it tripped the cap. */
  readonly crash: Deferred.Deferred<boolean>
  crashClaimed: boolean
  stopping: boolean
  /** What a failed call on this incarnation goes through (made once, not per call). */
  readonly onCallFailure: (cause: Cause.Cause<PluginClientError.PluginClientError>) => Effect.Effect<never, PluginClientError.PluginClientError>
}

/**
 * A client's life in one record: where it stands (`state`), the incarnation that owns it
 * (`current`: the only one whose crash may change `state`, see `crashed`), and the counters and
 * the idle timer around it. The lifecycle lock guards every change of `state`, `current`,
 * `generation` and `closed`; the call counters and the idle deadline are moved by the hot path
 * without it (single numbers, never a decision).
 */
interface Life {
  state: PluginState
  current: Incarnation | undefined
  /** Of the newest incarnation spawned (0 before the first): every spawn takes the next one. */
  generation: number
  /** Set by `shutdown`: the client is done for good. */
  closed: boolean
  inFlight: number
  consecutiveTimeouts: number
  spawns: number
  requests: number
  lastUsed: number | undefined
  lastStderr: string
  supportedMethods: ReadonlyArray<string> | undefined
  /** When the idle period of the running plugin ends (epoch ms). */
  idleDeadline: number
  /** The one fiber sleeping until `idleDeadline`, if any. */
  idleSleeper: Fiber.Fiber<void> | undefined
  /** Plugin messages dropped for an `onEvent` listener too far behind. */
  droppedForListener: number
}

/** How far an `onEvent` listener may fall behind before the plugin's own messages are dropped for it. */
const listenerBacklog = 10_000

/** What the plugin said (as opposed to what happened to it): the events a slow listener may lose. */
const isPluginMessage = (event: PluginEvent): boolean =>
  event._tag === "Log" || event._tag === "Notification" || event._tag === "Stream"

/** Reasons that mean the connection itself is gone (so the plugin crashed or was stopped). */
const isConnectionFailure = (reason: PluginClientError.Reason): boolean => {
  switch (reason._tag) {
    case "Exited":
    case "Io":
    case "MalformedResponse":
    case "IdMismatch":
      return true
    default:
      return false
  }
}

/**
 * Why a handshake failed, as the `detail` of `InitFailed`. The stderr excerpt is left out: the
 * `InitFailed` carries it (read after the process is stopped), and its message appends it.
 */
const handshakeFailure = (method: string, initTimeout: Duration.Duration, reason: PluginClientError.Reason): string => {
  switch (reason._tag) {
    case "Timeout":
      return `no answer to \`${method}\` within ${formatDuration(initTimeout)}`
    case "Exited":
      return reason.summary
    default:
      return reason.message
  }
}

const streamActions: Readonly<Record<string, "open" | "emit" | "close">> = {
  "streams.open": "open",
  "streams.emit": "emit",
  "streams.close": "close"
}

const channelOf = (params: unknown): string => {
  if (typeof params === "object" && params !== null) {
    for (const key of ["channel", "streamId", "id"]) {
      const value: unknown = Reflect.get(params, key)
      if (typeof value === "string" || typeof value === "number") return String(value)
    }
  }
  return "default"
}

/**
 * The check before every spawn: resolve the executable against the manifest's folder
 * (`manifestDir` when given, else the source's own `location.dir`) and, when a checksum is
 * declared, compare it (the source system checked only at discovery, so a binary swapped later
 * ran unchecked). Needs the `FileSystem` and `Path` services only then; they are captured when
 * the verifier is made.
 *
 * @category constructors
 */
export const verifier = (manifestDir: string | undefined) =>
  Effect.gen(function*() {
    const fs = yield* Effect.serviceOption(FileSystem.FileSystem)
    const path = yield* Effect.serviceOption(Path.Path)
    return (source: PluginSource): Effect.Effect<string, PluginClientError.Reason> => {
      const dir = manifestDir ?? source.location?.dir
      if (dir === undefined && source.checksumSha256 === undefined) return Effect.succeed(source.executable)
      if (Option.isNone(fs) || Option.isNone(path)) {
        return Effect.fail(new PluginClientError.Spawn({
          path: source.executable,
          detail: "verifying the executable needs the FileSystem and Path services (provide NodeServices.layer)"
        }))
      }
      return PluginManifest.verify(source, dir ?? path.value.resolve(".")).pipe(
        Effect.provideService(FileSystem.FileSystem, fs.value),
        Effect.provideService(Path.Path, path.value),
        Effect.mapError((error): PluginClientError.Reason => {
          const reason = error.reason
          return reason._tag === "ChecksumMismatch"
            ? new PluginClientError.ChecksumMismatch({ executable: reason.executable, declared: reason.declared, actual: reason.actual })
            : new PluginClientError.Spawn({ path: source.executable, detail: reason.message })
        })
      )
    }
  })

/**
 * Makes a client for one plugin in the current Scope. Nothing is spawned until the first
 * request (unless the policy says `start: "eager"`). Closing the Scope shuts the plugin down
 * with the full stop sequence.
 *
 * @category constructors
 */
export const make = (
  source: PluginSource,
  options?: Options
): Effect.Effect<PluginClient, never, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.flatMap(ManagedClient.ManagedClient, (managed) =>
    // Read once: nothing the client runs later (handlers, callbacks) inherits a manager's knobs.
    makeClient(source, options, managed).pipe(Effect.provideService(ManagedClient.ManagedClient, ManagedClient.standalone)))

const makeClient = Effect.fnUntraced(function*(
  source: PluginSource,
  options: Options | undefined,
  managed: ManagedClient.ManagedClientOptions
): Effect.fn.Return<PluginClient, never, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> {
  const name = source.name
  const policy = options?.policy ?? LifetimePolicy.defaultPolicy
  const handshake = options?.handshake ?? Handshake.none
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
  const clientScope = yield* Effect.scope
  // Every incarnation's scope hangs off this one, made before the client's own finalizer (the
  // full stop: shutdown request, drain, SIGTERM, grace, SIGKILL) is added: finalizers run in
  // reverse, so closing the client's scope stops the plugin gracefully first and only then
  // closes what is left of its processes.
  const incarnations = yield* Scope.fork(clientScope, "sequential")
  const fail = (reason: PluginClientError.Reason) => PluginClientError.make(name, reason)
  const attributes = { plugin: name }
  // Series of this plugin, made as their own metrics (same ids as the exported ones): a metric
  // caches the key of the last attributes it saw, and a shared one would rebuild it whenever
  // calls to two plugins interleave.
  const spawnsMetric = Metric.counter(spawnsTotal.id, { description: spawnsTotal.description, attributes })
  const crashesMetric = Metric.counter(crashesTotal.id, { description: crashesTotal.description, attributes })
  const requestsMetric = Metric.counter(requestsTotal.id, { description: requestsTotal.description, attributes })
  const reapsMetric = Metric.counter(reapsTotal.id, { description: reapsTotal.description, attributes })
  const requestDurationMetric = Metric.timer(requestDuration.id, { description: requestDuration.description, attributes })
  // The hot path updates metrics in place, with the context the client was made in.
  const metricContext = yield* Effect.context<never>()
  const clock = yield* Clock.Clock
  const annotate = Effect.annotateLogs({ plugin: name })
  // Annotating switches the fiber's context twice; a debug line that is filtered out skips it
  // (it was a tenth of the time to stop 100 plugins at once).
  const logDebug = (message: string) =>
    Effect.withFiber((fiber) =>
      LogLevel.isGreaterThan(fiber.getRef(References.MinimumLogLevel), "Debug") ? Effect.void : annotate(Effect.logDebug(message))
    )

  // Crashes in the window, the consecutive run, the last crash: what restart decisions read.
  const restarts = yield* Ref.make(RestartDecision.empty)
  const events = yield* PubSub.unbounded<PluginEvent>()
  const lifecycle = yield* Semaphore.make(1)
  // The timers the lifecycle starts outside an Effect (the idle watch and the reap it runs):
  // owned by the client's scope, so closing it leaves none running.
  const background = yield* FiberSet.make<void>()

  const life: Life = {
    state: PluginState.Idle,
    current: undefined,
    generation: 0,
    closed: false,
    inFlight: 0,
    consecutiveTimeouts: 0,
    spawns: 0,
    requests: 0,
    lastUsed: undefined,
    lastStderr: "",
    supportedMethods: undefined,
    idleDeadline: 0,
    idleSleeper: undefined,
    droppedForListener: 0
  }
  let totalCrashes = 0
  let lastError: string | undefined
  let lastErrorReason: PluginClientError.Reason["_tag"] | undefined
  // The pending restart of a plugin waiting out its backoff.
  let restartFiber: Fiber.Fiber<void> | undefined
  // Stream channels the running plugin has opened and not closed.
  const openChannels = new Set<string>()

  // Listeners never run in the lifecycle's critical section: a publish only enqueues (it never
  // waits), and the `onEvent` listener is called, in order, by a fiber of its own that the
  // client's scope owns. A slow or failing listener delays only its own later events, never a
  // transition, a call or a stop. What the plugin says (logs, notifications, stream values) is
  // dropped for a listener that has fallen `listenerBacklog` events behind, so a chatty plugin
  // and a slow listener cannot grow memory without bound; events of the plugin's life are
  // always queued (a few per spawn).
  const onEvent = options?.onEvent
  const listenerQueue = onEvent === undefined ? undefined : yield* Queue.unbounded<PluginEvent, Cause.Done>()
  if (onEvent !== undefined && listenerQueue !== undefined) {
    yield* Stream.fromQueue(listenerQueue).pipe(
      Stream.runForEach((event) =>
        onEvent(event).pipe(
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.logWarning("the onEvent listener failed", Cause.pretty(cause)).pipe(annotate)
          )
        )
      ),
      Effect.forkIn(clientScope)
    )
  }
  const publish = (event: PluginEvent): Effect.Effect<void> => Effect.suspend(() => publishNow(event))
  const publishNow = (event: PluginEvent): Effect.Effect<void> => {
    PubSub.publishUnsafe(events, event)
    if (listenerQueue === undefined) return Effect.void
    if (!isPluginMessage(event) || Queue.sizeUnsafe(listenerQueue) < listenerBacklog) {
      Queue.offerUnsafe(listenerQueue, event)
      return Effect.void
    }
    life.droppedForListener++
    // Warned at 1, 10, 100… drops: visible without a log line per dropped message.
    return Number.isInteger(Math.log10(life.droppedForListener))
      ? Effect.logWarning(`the onEvent listener is ${listenerBacklog} events behind; ${life.droppedForListener} plugin messages dropped for it so far`).pipe(annotate)
      : Effect.void
  }
  /**
   * When the client closes, the listener is given one turn to take the events already published
   * (the last is `Stopped`): one that keeps up sees them all. One still busy is interrupted with
   * the scope rather than waited for, so a slow listener never holds up a shutdown.
   */
  const drainListener = listenerQueue === undefined ? Effect.void : Queue.end(listenerQueue).pipe(Effect.andThen(Effect.yieldNow))

  /** The one place state changes. */
  const transition = (to: PluginState) =>
    Effect.suspend(() => {
      const from = life.state
      if (from._tag === to._tag && from._tag !== "Backoff" && from._tag !== "Disabled") return Effect.void
      life.state = to
      return publish({ _tag: "StateChanged", plugin: name, from, to }).pipe(
        Effect.andThen(logDebug(`state ${from._tag} → ${to._tag}`))
      )
    })

  // -- notifications -------------------------------------------------------------------------
  const onNotification = (notification: JsonRpc.Notification): Effect.Effect<void> => {
    if (notification.method === "log") {
      const params = Option.getOrUndefined(Protocol.decodeLogParams(notification.params))
      const level = Protocol.logLevelOf(params?.level)
      const message = params?.message ?? JSON.stringify(notification.params)
      const annotations: Record<string, unknown> = { plugin: name, source: "plugin" }
      if (params?.timestamp !== undefined) annotations.pluginTimestamp = params.timestamp
      if (params?.meta !== undefined) annotations.meta = params.meta
      return Effect.logWithLevel(level)(message).pipe(
        Effect.annotateLogs(annotations),
        Effect.andThen(publish({ _tag: "Log", plugin: name, level, message, meta: params?.meta }))
      )
    }
    const action = Object.hasOwn(streamActions, notification.method) ? streamActions[notification.method] : undefined
    if (action !== undefined) {
      const channel = channelOf(notification.params)
      if (action === "open") openChannels.add(channel)
      if (action === "close") openChannels.delete(channel)
      return emitStream({ _tag: "Stream", plugin: name, action, channel, params: notification.params, synthetic: false })
    }
    return publish({ _tag: "Notification", plugin: name, method: notification.method, params: notification.params }).pipe(
      Effect.andThen(options?.onNotification === undefined ? Effect.void : options.onNotification(notification))
    )
  }
  const emitStream = (event: StreamEvent) =>
    publish(event).pipe(Effect.andThen(options?.onStreamNotification === undefined ? Effect.void : options.onStreamNotification(event)))
  /** A dead plugin cannot close its channels: close them for it. */
  const closeOpenStreams = Effect.suspend(() => {
    if (openChannels.size === 0) return Effect.void
    const channels = [...openChannels]
    openChannels.clear()
    return Effect.forEach(channels, (channel) =>
      emitStream({ _tag: "Stream", plugin: name, action: "close", channel, params: { channel, reason: "plugin exited" }, synthetic: true }), { discard: true })
  })

  // -- executable ----------------------------------------------------------------------------
  const verifyExecutable = yield* verifier(options?.manifestDir)

  // -- crash accounting ----------------------------------------------------------------------
  /**
   * Records the crash of an incarnation once (whoever sees it first: the exit watcher or a
   * failing call) and tears it down. Resolves to whether it tripped the restart cap.
   */
  const crashed = (incarnation: Incarnation, reason: PluginClientError.Reason): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      if (incarnation.crashClaimed) return Deferred.await(incarnation.crash)
      incarnation.crashClaimed = true
      return lifecycle.withPermits(1)(
        Effect.gen(function*() {
          // The generation rule: a stop, restart or reap may have replaced this incarnation
          // while its crash waited for the lock. Its process is still torn down, but it no
          // longer owns the state: recording its crash would put a newer, healthy incarnation
          // in `Recovering` or `Backoff` (whose restart would then spawn a second process).
          const isCurrent = Lifecycle.ownsState(life.current, incarnation)
          if (isCurrent) life.current = undefined
          yield* incarnation.process.stop()
          yield* Scope.close(incarnation.scope, Exit.void)
          if (!isCurrent) {
            yield* logDebug(`generation ${incarnation.generation} ended after it was replaced; not a crash of the current one`)
            return false
          }
          life.lastStderr = yield* incarnation.process.stderrExcerpt
          return yield* recordCrash(
            reason,
            reason._tag === "Exited" ? { code: reason.code, signal: reason.signal } : undefined
          )
        })
      ).pipe(
        Effect.tap((tripped) => Deferred.succeed(incarnation.crash, tripped)),
        Effect.uninterruptible
      )
    })

  /**
   * Counts a crash (of a running plugin or of a start) and does what `RestartDecision.decide`
   * says: `Recover` → `Recovering` (the next call respawns), `Backoff` → `Backoff` and a restart
   * scheduled after the delay, `Disable` → `Disabled` until `clearDisabled`. Runs under the
   * lifecycle lock. Returns whether the plugin was disabled by this crash.
   */
  const recordCrash = (failure: PluginClientError.Reason, exit?: { readonly code: number | null; readonly signal: string | null }) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const random = yield* Random.next
      const detail = failure.message
      totalCrashes++
      lastError = detail
      lastErrorReason = failure._tag
      yield* Metric.update(crashesMetric, 1)
      const decision = yield* Ref.modify(restarts, (history) => {
        const [next, decided] = RestartDecision.afterCrash(policy, history, now, random)
        return [decided, next]
      })
      yield* closeOpenStreams
      const crash = (willRestart: boolean) =>
        publish({ _tag: "Crash", plugin: name, reason: detail, code: exit?.code ?? null, signal: exit?.signal ?? null, willRestart })
      if (life.closed || life.state._tag === "Stopped" || life.state._tag === "Stopping") return false
      switch (decision._tag) {
        case "Disable": {
          const reason = `${RestartDecision.describeDisableReason(decision.reason)}; last: ${detail}`
          yield* crash(false)
          yield* transition(PluginState.Disabled(reason))
          yield* Effect.logError(`disabled: ${reason}`).pipe(annotate)
          return true
        }
        case "Recover": {
          yield* crash(true)
          yield* transition(PluginState.Recovering)
          yield* Effect.logWarning(`crashed: ${detail}`).pipe(annotate)
          return false
        }
        case "Backoff": {
          const delay = decision.delay
          yield* crash(true)
          yield* transition(PluginState.Backoff(now + Duration.toMillis(delay)))
          yield* Effect.logWarning(`crashed (${decision.restart} in a row): ${detail}; restarting in ${formatDuration(delay)}`).pipe(annotate)
          restartFiber = yield* Effect.sleep(delay).pipe(
            Effect.andThen(restartAfterBackoff),
            Effect.forkIn(clientScope)
          )
          return false
        }
      }
    })

  /** The scheduled restart: a failed spawn or handshake records another crash and reschedules. */
  const restartAfterBackoff: Effect.Effect<void> = Effect.suspend(() =>
    lifecycle.withPermits(1)(
      Effect.suspend(() => {
        if (life.closed || life.state._tag !== "Backoff") return Effect.void
        restartFiber = undefined
        return spawn.pipe(
          Effect.andThen(armIdleTimer),
          Effect.catch((error) => Effect.logWarning(`restart failed: ${error.reason.message}`).pipe(annotate))
        )
      })
    )
  )

  const cancelRestart = Effect.suspend(() => {
    const fiber = restartFiber
    restartFiber = undefined
    return fiber === undefined ? Effect.void : Fiber.interrupt(fiber)
  })

  const capExceeded = () => fail(new PluginClientError.RestartCapExceeded({ cap: policy.restartCap, window: policy.restartWindow }))

  // -- spawning ------------------------------------------------------------------------------
  const runHandshake = (peer: RpcPeer.RpcPeer) => {
    if (handshake._tag === "None") return Effect.succeed<Handshake.HandshakeInfo>({})
    return peer.request(handshake.method, handshake.params, { timeout: policy.initTimeout }).pipe(
      Effect.catch((error) =>
        handshake.acceptErrorReplies && error.reason._tag === "PluginError" ? Effect.succeed(undefined) : Effect.fail(error)
      ),
      Effect.mapError((error) => handshakeFailure(handshake.method, policy.initTimeout, error.reason)),
      Effect.flatMap(handshake.validate),
      Effect.tap(() =>
        handshake.afterwards === undefined
          ? Effect.void
          : peer.notify(handshake.afterwards.method, handshake.afterwards.params).pipe(Effect.mapError((e) => e.reason.message))
      )
    )
  }

  /** Spawns and handshakes a new incarnation. Must run under the lifecycle lock. */
  const spawn = Effect.gen(function*() {
    // One live process per client: an older generation still held is torn down first (its
    // pending crash, if any, then finds it replaced and changes nothing).
    if (life.current !== undefined) yield* stopCurrent
    yield* transition(PluginState.Starting)
    const executable = yield* verifyExecutable(source).pipe(Effect.mapError(fail))
    const scope = yield* Scope.fork(incarnations, "sequential")
    openChannels.clear()
    const gen = ++life.generation
    const built = yield* Effect.gen(function*() {
      const proc = yield* PluginProcess.make({
        name,
        executable,
        args: source.args,
        allowedEnvVars: source.allowedEnvVars,
        env: options?.env,
        cwd: options?.cwd,
        hostEnv: options?.hostEnv
      }, {
        shutdownGrace: policy.shutdownGrace,
        drainTimeout: policy.drainTimeout
      })
      life.spawns++
      yield* Metric.update(spawnsMetric, 1)
      const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), {
        maxConcurrentRequests: policy.maxConcurrentRequests,
        requestTimeout: policy.requestTimeout,
        maxRequestTimeout: policy.maxRequestTimeout,
        maxLineBytes: policy.maxLineBytes,
        maxQueuedBytes: policy.maxQueuedBytes,
        // Parsed notifications take several times the bytes of their lines.
        maxQueuedNotificationBytes: Math.floor(policy.maxQueuedBytes / 4),
        hostHandlers: options?.hostHandlers,
        onNotification
      })
      return { proc, peer }
    }).pipe(
      Scope.provide(scope),
      Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, spawner),
      Effect.onError(() => Scope.close(scope, Exit.void))
    )
    const incarnation: Incarnation = {
      generation: gen,
      scope,
      process: built.proc,
      peer: built.peer,
      crash: Deferred.makeUnsafe<boolean>(),
      crashClaimed: false,
      stopping: false,
      onCallFailure: (cause) => {
        const error = Cause.findErrorOption(cause)
        return Option.isSome(error) ? Effect.flatMap(onCallFailure(incarnation, error.value), Effect.fail) : Effect.failCause(cause)
      }
    }
    const info = yield* runHandshake(built.peer).pipe(
      Effect.catch((detail) =>
        Effect.gen(function*() {
          const stderrExcerpt = yield* built.proc.stderrExcerpt
          yield* built.proc.stop()
          yield* Scope.close(scope, Exit.void)
          life.lastStderr = stderrExcerpt
          return yield* Effect.fail(fail(new PluginClientError.InitFailed({ detail, stderrExcerpt })))
        })
      )
    )
    life.supportedMethods = info.supportedMethods
    life.current = incarnation
    // A successful (re)initialize ends the run of consecutive crashes (the Paperclip rule).
    yield* Ref.update(restarts, RestartDecision.started)
    life.consecutiveTimeouts = 0
    // The watcher lives in the client scope: it must outlive the incarnation's scope, which it
    // closes itself when the plugin dies.
    // A stop's end is not a crash: its reason is not even built.
    yield* built.peer.ended.pipe(
      Effect.andThen(Effect.suspend(() =>
        incarnation.stopping
          ? Effect.void
          : Effect.flatMap(built.peer.closed, (reason) =>
            reason._tag === "Exited" && reason.requested ? Effect.void : crashed(incarnation, reason))
      )),
      Effect.andThen(built.proc.exit),
      Effect.flatMap((exit) => publish({ _tag: "Exit", plugin: name, pid: built.proc.pid, generation: gen, ...exit })),
      Effect.forkIn(clientScope)
    )
    yield* transition(PluginState.Running)
    yield* publish({ _tag: "Ready", plugin: name, pid: built.proc.pid, generation: gen })
    return incarnation
  }).pipe(
    (effect) => managed.spawnPermits === undefined ? effect : managed.spawnPermits.withPermits(1)(effect),
    Effect.catch((error: PluginClientError.PluginClientError) =>
      // A failed spawn or handshake is a crash too (the source system never counted them).
      recordCrash(error.reason).pipe(
        Effect.flatMap((tripped) => Effect.fail(tripped ? capExceeded() : error))
      )
    ),
    Effect.withSpan("PluginClient.spawn", { attributes })
  )

  const refused = (refusal: Lifecycle.Refusal): PluginClientError.PluginClientError => {
    switch (refusal._tag) {
      case "Disabled":
        return fail(new PluginClientError.Disabled({ reason: refusal.reason }))
      case "Stopped":
        return fail(new PluginClientError.Closed({ detail: refusal.shutDown ? "the client is shut down" : "the plugin is stopped" }))
      case "Stopping":
        return fail(new PluginClientError.Closed({ detail: "the plugin is stopping" }))
      case "Backoff":
        return fail(new PluginClientError.Unavailable({
          detail: `restarting after a crash, at ${new Date(refusal.until).toISOString()}${lastError === undefined ? "" : ` (last error: ${lastError})`}`
        }))
    }
  }

  /**
   * The running incarnation, spawning one if needed (concurrent callers share the spawn). While
   * the crash of the current one is being recorded, the caller waits for that decision
   * (respawn, backoff, disable) outside the lock, then asks again: a spawn never replaces an
   * incarnation whose crash is still pending.
   */
  const ensureRunning: Effect.Effect<Incarnation, PluginClientError.PluginClientError> = Effect.suspend(() => {
    const admission = Lifecycle.admit(life.state, life.closed, life.current)
    switch (admission._tag) {
      case "Refuse":
        return Effect.fail(refused(admission.refusal))
      case "Use":
        return Effect.succeed(admission.incarnation)
      case "AwaitCrash":
        return afterCrash(admission.incarnation)
      case "Spawn":
        return lifecycle.withPermits(1)(spawnIfStillNeeded).pipe(
          Effect.flatMap((running) => running.crashClaimed ? afterCrash(running) : Effect.succeed(running))
        )
    }
  })
  /** Asked again under the lock: a concurrent first call may have spawned meanwhile (they share it). */
  const spawnIfStillNeeded: Effect.Effect<Incarnation, PluginClientError.PluginClientError> = Effect.suspend(() => {
    const admission = Lifecycle.admit(life.state, life.closed, life.current)
    switch (admission._tag) {
      case "Refuse":
        return Effect.fail(refused(admission.refusal))
      case "Spawn":
        return spawn
      default:
        return Effect.succeed(admission.incarnation)
    }
  })
  /** Waits, outside the lock (recording the crash needs it), for the crash's decision, then asks again. */
  const afterCrash = (incarnation: Incarnation) => Effect.andThen(Deferred.await(incarnation.crash), ensureRunning)

  // -- stopping ------------------------------------------------------------------------------
  /** Stops the current incarnation with the full stop sequence. Must run under the lock. */
  const stopCurrent = Effect.gen(function*() {
    const incarnation = life.current
    if (incarnation === undefined) return
    life.current = undefined
    incarnation.stopping = true
    const graceful = options?.shutdownRequest === undefined
      ? undefined
      : incarnation.peer.request(options.shutdownRequest, undefined, { timeout: policy.drainTimeout })
    yield* incarnation.process.stop({ graceful })
    life.lastStderr = yield* incarnation.process.stderrExcerpt
    yield* Scope.close(incarnation.scope, Exit.void)
  })

  // -- idle reaping --------------------------------------------------------------------------
  const reap = lifecycle.withPermits(1)(
    Effect.gen(function*() {
      const incarnation = life.current
      if (incarnation === undefined || life.inFlight > 0 || life.state._tag !== "Running") return
      yield* Effect.logInfo(`idle for ${policy.idleTimeout === undefined ? "ever" : formatDuration(policy.idleTimeout)}; stopping`).pipe(annotate)
      yield* transition(PluginState.Stopping)
      yield* stopCurrent
      yield* transition(PluginState.Idle)
      yield* Metric.update(reapsMetric, 1)
      yield* publish({ _tag: "Reaped", plugin: name, pid: incarnation.process.pid, generation: incarnation.generation })
    })
  ).pipe(Effect.uninterruptible)

  // One sleeping fiber per idle period rather than a timer re-forked on every call: a call only
  // moves the deadline (a number). When the sleep ends the deadline is checked: a reap once it
  // has passed with no call in flight, another sleep until it otherwise. The reap lands exactly
  // `idleTimeout` after the last call ended. The fiber does nothing but sleep (the check runs when
  // it ends), so stopping interrupts a bare sleep, the same step as the stop's other timers:
  // interrupting a watcher loop held in a `FiberHandle` took 5 of the 42 ms of CPU that stopping
  // 100 plugins at once used, most of it V8 compiling code that nothing else in a stop runs. It
  // is interrupted by every stop, including the one the client's Scope runs when it closes.
  const idleTimeout = policy.idleTimeout
  const idleMillis = idleTimeout === undefined ? 0 : Duration.toMillis(idleTimeout)
  const runInClient = Effect.runForkWith(metricContext)
  const sleepUntilIdle = (millis: number) => {
    const sleeper = runInClient(Effect.sleep(Duration.millis(millis)))
    FiberSet.addUnsafe(background, sleeper)
    life.idleSleeper = sleeper
    sleeper.addObserver((exit) => {
      if (life.idleSleeper !== sleeper) return
      life.idleSleeper = undefined
      if (exit._tag === "Success") checkIdle()
    })
  }
  const checkIdle = () => {
    if (life.current === undefined || life.state._tag !== "Running") return
    const now = clock.currentTimeMillisUnsafe()
    if (life.inFlight === 0 && now >= life.idleDeadline) FiberSet.addUnsafe(background, runInClient(reap))
    else sleepUntilIdle(life.inFlight > 0 ? idleMillis : life.idleDeadline - now)
  }
  /** Activity ended at `now`: the idle period starts again (a sleeping watcher just gets the new deadline). */
  const armIdleAt = (now: number): Effect.Effect<void> => {
    if (idleTimeout === undefined) return Effect.void
    life.idleDeadline = now + idleMillis
    if (life.idleSleeper === undefined && life.current !== undefined) sleepUntilIdle(idleMillis)
    return Effect.void
  }
  const armIdleTimer = Effect.suspend(() => armIdleAt(clock.currentTimeMillisUnsafe()))
  const disarmIdleTimer = Effect.sync(() => {
    const sleeper = life.idleSleeper
    life.idleSleeper = undefined
    sleeper?.interruptUnsafe()
  })

  // -- calls ---------------------------------------------------------------------------------
  const onCallFailure = (incarnation: Incarnation, error: PluginClientError.PluginClientError) =>
    Effect.gen(function*() {
      const reason = error.reason
      if (reason._tag === "Timeout") {
        life.consecutiveTimeouts++
        if (life.consecutiveTimeouts >= policy.consecutiveTimeoutsBeforeRecycle && !incarnation.crashClaimed) {
          life.consecutiveTimeouts = 0
          yield* Effect.logWarning(`${policy.consecutiveTimeoutsBeforeRecycle} calls in a row timed out; recycling the process`).pipe(annotate)
          const tripped = yield* crashed(incarnation, reason)
          return tripped ? capExceeded() : error
        }
        return error
      }
      life.consecutiveTimeouts = 0
      if (isConnectionFailure(reason) && !incarnation.stopping && !(reason._tag === "Exited" && reason.requested)) {
        const tripped = yield* crashed(incarnation, reason)
        return tripped ? capExceeded() : error
      }
      return error
    })

  // The hot path, when the plugin is running: no generator, no lock, no per-call fiber; the
  // failure handler is made once per incarnation; metrics are updated in place (series built
  // once); spans only when someone collects them, and without a captured stack trace
  // (capturing one per call cost more than the call).
  const callOn = (
    incarnation: Incarnation,
    method: string,
    params: unknown,
    callOptions: CallOptions | undefined
  ) => {
    requestsMetric.updateUnsafe(1, metricContext)
    return Effect.catchCause(incarnation.peer.request(method, params, callOptions), incarnation.onCallFailure)
  }
  const request: PluginClient["request"] = (method, params, callOptions) =>
    Effect.withFiber((fiber) => {
      life.requests++
      life.inFlight++
      const startedNanos = clock.monotonicTimeNanosUnsafe()
      const incarnation = life.current
      const call = incarnation !== undefined && !incarnation.crashClaimed && life.state._tag === "Running"
        ? callOn(incarnation, method, params, callOptions)
        : Effect.flatMap(ensureRunning, (running) => callOn(running, method, params, callOptions))
      // The end of a call: a success ends a timeout streak, the duration is recorded, and the
      // idle period starts again from now.
      const tracked = Effect.onExit(call, (exit) => {
        life.inFlight--
        if (exit._tag === "Success") life.consecutiveTimeouts = 0
        requestDurationMetric.updateUnsafe(Duration.nanos(clock.monotonicTimeNanosUnsafe() - startedNanos), metricContext)
        const now = clock.currentTimeMillisUnsafe()
        life.lastUsed = now
        return armIdleAt(now)
      })
      // With Effect's built-in tracer nothing is exported, and building a span was a third of
      // the cost of a call.
      return fiber.getRef(Tracer.Tracer) === Tracer.nativeTracer
        ? tracked
        : tracked.pipe(
          Effect.withSpan("PluginClient.request", { attributes: { plugin: name, "rpc.method": method } }, {
            captureStackTrace: false
          })
        )
    })

  const requestIfRunning: PluginClient["requestIfRunning"] = (method, params, callOptions) =>
    Effect.suspend(() => {
      const incarnation = life.current
      if (incarnation === undefined || incarnation.crashClaimed || incarnation.stopping || life.state._tag !== "Running") {
        return Effect.fail(fail(new PluginClientError.Unavailable({ detail: `not running (${life.state._tag})` })))
      }
      // Not activity, but a dead connection is still a crash to account for.
      return Effect.catch(incarnation.peer.request(method, params, callOptions), (error) => crashIfDead(incarnation, error))
    })

  /**
   * A failure that says the connection is gone (and not because the host stopped it) is this
   * incarnation's crash, recorded by whoever sees it first; the caller gets `RestartCapExceeded`
   * if it tripped the cap, the failure itself otherwise.
   */
  const crashIfDead = (incarnation: Incarnation, error: PluginClientError.PluginClientError) =>
    isConnectionFailure(error.reason) && !incarnation.stopping && !(error.reason._tag === "Exited" && error.reason.requested)
      ? Effect.flatMap(crashed(incarnation, error.reason), (tripped) => Effect.fail(tripped ? capExceeded() : error))
      : Effect.fail(error)

  const call: PluginClient["call"] = (method, params, callOptions) =>
    Schema.encodeEffect(method.params)(params).pipe(
      Effect.mapError((e) => fail(new PluginClientError.InvalidParams({ method: method.name, detail: e.message }))),
      Effect.flatMap((wire) => request(method.name, wire, callOptions)),
      Effect.flatMap((result) =>
        Schema.decodeUnknownEffect(method.result)(result).pipe(
          Effect.mapError((e) => fail(new PluginClientError.UnexpectedPayload({ method: method.name, detail: e.message })))
        )
      )
    )

  // A notification is accounted like a call, without a reply to wait for: it spawns the plugin
  // if needed, holds off the reaper while it is being sent (a lazy spawn takes a while), starts
  // the idle period again when it is over, and a dead connection under it is a crash.
  const notifyOn = (incarnation: Incarnation, method: string, params: unknown) =>
    Effect.catch(incarnation.peer.notify(method, params), (error) => crashIfDead(incarnation, error))
  const notify: PluginClient["notify"] = (method, params) =>
    Effect.suspend(() => {
      life.inFlight++
      const incarnation = life.current
      const sent = incarnation !== undefined && !incarnation.crashClaimed && life.state._tag === "Running"
        ? notifyOn(incarnation, method, params)
        : Effect.flatMap(ensureRunning, (running) => notifyOn(running, method, params))
      return Effect.onExit(sent, () => {
        life.inFlight--
        const now = clock.currentTimeMillisUnsafe()
        life.lastUsed = now
        return armIdleAt(now)
      })
    })

  // -- lifetime operations -------------------------------------------------------------------
  /** Spawns now: also from `Stopped`, and without waiting out a backoff. */
  const start: PluginClient["start"] = lifecycle.withPermits(1)(
    Effect.gen(function*() {
      if (life.closed) return yield* Effect.fail(fail(new PluginClientError.Closed({ detail: "the client is shut down" })))
      if (life.state._tag === "Stopped" || life.state._tag === "Backoff") {
        yield* cancelRestart
        yield* transition(PluginState.Idle)
      }
    })
  ).pipe(Effect.andThen(ensureRunning), Effect.andThen(armIdleTimer), Effect.asVoid)

  const restart: PluginClient["restart"] = lifecycle.withPermits(1)(
    Effect.gen(function*() {
      if (life.closed) return yield* Effect.fail(fail(new PluginClientError.Closed({ detail: "the client is shut down" })))
      if (life.state._tag === "Disabled") return yield* Effect.fail(fail(new PluginClientError.Disabled({ reason: life.state.reason })))
      yield* cancelRestart
      if (life.current !== undefined) {
        yield* transition(PluginState.Stopping)
        yield* stopCurrent
      }
      yield* transition(PluginState.Idle)
      yield* spawn
    })
  ).pipe(Effect.andThen(armIdleTimer))

  const stopPlugin = lifecycle.withPermits(1)(
    Effect.gen(function*() {
      yield* cancelRestart
      yield* disarmIdleTimer
      if (life.state._tag === "Stopped") return
      yield* transition(PluginState.Stopping)
      yield* stopCurrent
      yield* closeOpenStreams
      yield* transition(PluginState.Stopped)
    })
  ).pipe(Effect.uninterruptible)

  const stop: PluginClient["stop"] = stopPlugin
  const shutdown: PluginClient["shutdown"] = Effect.suspend(() => {
    life.closed = true
    return stopPlugin
  })

  const clearDisabled: PluginClient["clearDisabled"] = lifecycle.withPermits(1)(
    Effect.gen(function*() {
      yield* Ref.update(restarts, RestartDecision.cleared)
      if (life.state._tag === "Disabled") yield* transition(PluginState.Idle)
    })
  )

  const health: PluginClient["health"] = Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const incarnation = life.current
    const history = yield* Ref.get(restarts)
    const peerStats = incarnation === undefined ? undefined : yield* incarnation.peer.stats
    return {
      pluginName: name,
      state: life.state,
      crashesInWindow: RestartDecision.crashesInWindow(policy, history, now),
      lastUsed: life.lastUsed,
      lastCrash: history.lastCrashAt,
      lastError,
      lastErrorReason,
      pid: incarnation?.process.pid,
      uptime: incarnation === undefined ? undefined : Duration.millis(now - incarnation.process.startedAt),
      consecutiveCrashes: history.consecutive,
      totalCrashes,
      spawns: life.spawns,
      requests: life.requests,
      pendingRequests: incarnation === undefined ? 0 : yield* incarnation.peer.pending,
      nextRestartAt: life.state._tag === "Backoff" ? life.state.until : undefined,
      stderrExcerpt: incarnation === undefined ? life.lastStderr : yield* incarnation.process.stderrExcerpt,
      supportedMethods: life.supportedMethods,
      notificationsDropped: peerStats?.notificationsDropped ?? 0,
      queuedBytes: peerStats?.queuedBytes ?? 0
    }
  })

  yield* Effect.addFinalizer(() => Effect.andThen(shutdown, drainListener))

  if (policy.start === "eager" && managed.autoStart) {
    yield* start.pipe(
      Effect.catchCause((cause) => Effect.logWarning("eager start failed", Cause.pretty(cause))),
      annotate,
      Effect.forkScoped
    )
  }

  return {
    name,
    request,
    requestIfRunning,
    call,
    notify,
    health,
    state: Effect.sync(() => life.state),
    start,
    restart,
    stop,
    shutdown,
    clearDisabled,
    events: Stream.fromPubSub(events)
  }
})

// ---------------------------------------------------------------------------------------------
// layers
// ---------------------------------------------------------------------------------------------

/**
 * One plugin as the service `tag`, for hosting several plugins side by side: each gets a tag
 * of its own (`class Echo extends Context.Service<Echo, PluginClient.PluginClient>()("app/Echo") {}`),
 * so the type of a program says which plugins it needs and a test can replace one of them with
 * `Layer.succeed(Echo, fake)`. The client lives as long as the layer; releasing it shuts the
 * plugin down with the full stop sequence. Needs a `ChildProcessSpawner` (e.g.
 * `NodeServices.layer`, which also brings the `FileSystem` and `Path` that checksum checks use).
 *
 * @category layers
 */
export const layerAs = <Identifier>(
  tag: Context.Key<Identifier, PluginClient>,
  source: PluginSource,
  options?: Options
): Layer.Layer<Identifier, never, ChildProcessSpawner.ChildProcessSpawner> => Layer.effect(tag, make(source, options))

/**
 * One plugin as the {@link PluginClient} service (see {@link layerAs} for several).
 *
 * @category layers
 */
export const layer = (
  source: PluginSource,
  options?: Options
): Layer.Layer<PluginClient, never, ChildProcessSpawner.ChildProcessSpawner> => layerAs(PluginClient, source, options)
