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
 * A plugin's own error objects are not crashes.
 *
 * The client's life is one explicit state machine: one record, changed only by the pure
 * `step` of `internal/lifecycle.ts`, which `internal/clientEngine.ts` applies one event at a time
 * and whose actions it carries out; every change of state is published as an event. Each spawn
 * is a new generation of the plugin, and every event of a process carries its generation: one
 * from a process a stop, restart or reap has replaced never changes the state of its successor,
 * and a new process is launched only once every older one is gone, so a race between a crash and
 * a restart never leaves two processes or a state that lies. Listeners (`onEvent`, `events`)
 * are fed through queues of their own and run on their own fibers, never inside a step. Every
 * fiber the client starts (launches, teardowns, exit watchers, the idle watch, the backoff
 * timer, the listener) is owned by its Scope.
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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as FileSystem from "effect/FileSystem"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Path from "effect/Path"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Handshake from "./Handshake.ts"
import * as ClientEngine from "./internal/clientEngine.ts"
import * as EventFeed from "./internal/eventFeed.ts"
import type * as Incarnation from "./internal/incarnation.ts"
import * as Lifecycle from "./internal/lifecycle.ts"
import * as ManagedClient from "./internal/managedClient.ts"
import * as PluginMessages from "./internal/pluginMessages.ts"
import * as RestartDecision from "./internal/restartDecision.ts"
import type * as JsonRpc from "./JsonRpc.ts"
import * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClientError from "./PluginClientError.ts"
import * as PluginEvents from "./PluginEvent.ts"
import * as PluginManifest from "./PluginManifest.ts"
import type * as PluginMethod from "./PluginMethod.ts"
import * as RpcPeer from "./RpcPeer.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * Where a plugin's life stands (see `PluginEvent.ts`).
 *
 * @category models
 */
export type PluginState = PluginEvents.PluginState

/**
 * Constructors for {@link PluginState}.
 *
 * @category models
 */
export const PluginState = PluginEvents.PluginState

/**
 * What happened to a plugin, in order (see `PluginEvent.ts`).
 *
 * @category models
 */
export type PluginEvent = PluginEvents.PluginEvent

/**
 * A stream channel's open, value or close from the plugin (see `PluginEvent.ts`).
 *
 * @category models
 */
export type StreamEvent = PluginEvents.StreamEvent

/**
 * A snapshot of a client's health (`client.health`). Times are epoch milliseconds from `Clock`.
 *
 * @category models
 */
export interface HealthSnapshot {
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
  /**
   * The plugin's own messages (`Log`, `Notification`, `Stream` events) dropped for listeners
   * (`onEvent`, `events` subscribers) that fell 10,000 events behind, since the client was made.
   */
  readonly eventsDropped: number
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
  /** Injection variables (`NODE_OPTIONS`, `LD_PRELOAD`…) deliberately allowed in `allowedEnvVars` or `env`. */
  readonly unsafeEnvVars?: ReadonlyArray<string> | undefined
  readonly checksumSha256?: string | undefined
  /** Other files to verify before every spawn (path relative to the manifest's folder → SHA-256). */
  readonly checksums?: Readonly<Record<string, string>> | undefined
  readonly location?: PluginManifest.Location | undefined
  /** The framing the plugin speaks; given, it overrides the policy's `framing`. */
  readonly framing?: LifetimePolicy.Framing | undefined
  /** The cancellation dialect the plugin speaks; given, it overrides the policy's `cancellation`. */
  readonly cancellation?: LifetimePolicy.Cancellation | undefined
}

/**
 * What to run besides the manifest: the process's environment and folders.
 *
 * @category options
 */
export interface RunOptions {
  /** Extra fixed environment variables. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /**
   * Injection variables (`NODE_OPTIONS`, `LD_PRELOAD`…) deliberately allowed in `env` or the
   * allow-list, besides those the source marks (`unsafeEnvVars`).
   */
  readonly unsafeEnvVars?: ReadonlyArray<string> | undefined
  /** The plugin's working directory. Default the host's. */
  readonly cwd?: string | undefined
  /** The host environment allow-listed variables come from. Default `process.env`. */
  readonly hostEnv?: Readonly<Record<string, string | undefined>> | undefined
  /**
   * Folder a relative `executable` is resolved against (and its checksum verified in). Default
   * the manifest's `location.dir`; needed only for a manifest built in code.
   */
  readonly manifestDir?: string | undefined
  /**
   * The level the plugin's stderr lines are logged at (`None`: kept in the excerpt only).
   * Default the handshake's dialect's (`Warn` under `Handshake.paperclip`), else `Debug`.
   */
  readonly stderrLogLevel?: Handshake.StderrLogLevel | undefined
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
  /**
   * Asks the plugin for progress (see `RpcPeer.CallOptions`): the request carries a progress
   * token in the dialect of the policy's `cancellation`, each progress the plugin reports is
   * handed here, and moves the call's deadline to a full timeout from then, never past
   * `maxRequestTimeout` after the call was sent.
   */
  readonly onProgress?: ((value: unknown) => Effect.Effect<void>) | undefined
}

/**
 * Options of a call streamed with its progress: those of any call but `onProgress`, which the
 * stream supplies.
 *
 * @category options
 */
export type ProgressCallOptions = Omit<CallOptions, "onProgress">

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
   * Calls a method asking for progress, as a `Stream` (see `RpcPeer.progressStream`): each
   * progress the plugin reports is a `{_tag: "Progress", value}`, then the result is a
   * `{_tag: "Result", value}` and the stream ends; a failed call fails it. Each progress extends
   * the call's deadline as with `onProgress`. The call runs while the stream is pulled, and a
   * consumer that stops early cancels it.
   */
  readonly requestWithProgress: (
    method: string,
    params?: unknown,
    options?: ProgressCallOptions
  ) => Stream.Stream<RpcPeer.CallUpdate<unknown>, PluginClientError.PluginClientError>
  /** {@link requestWithProgress} for a typed method: params encoded, result decoded with its Schemas. */
  readonly callWithProgress: <Params, Result, ParamsWire, ResultWire>(
    method: PluginMethod.PluginMethod<Params, Result, ParamsWire, ResultWire>,
    params: Params,
    options?: ProgressCallOptions
  ) => Stream.Stream<RpcPeer.CallUpdate<Result>, PluginClientError.PluginClientError>
  /**
   * Sends a notification, spawning the plugin first if needed. Like a call, it re-arms the idle
   * timer, and a dead connection under it is recorded as a crash (failing with
   * `RestartCapExceeded` if it tripped the cap).
   */
  readonly notify: (method: string, params?: unknown) => Effect.Effect<void, PluginClientError.PluginClientError>
  readonly health: Effect.Effect<HealthSnapshot>
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

/**
 * The check before every spawn: resolve the executable against the manifest's folder
 * (`manifestDir` when given, else the source's own `location.dir`), check every `checksums`
 * file and, when a checksum is declared, hash the executable into a private read-only copy and
 * return that copy's path: the bytes hashed are the bytes spawned (the source system checked
 * only at discovery, so a binary swapped later ran unchecked). Needs the `FileSystem` and
 * `Path` services only then; they are captured when the verifier is made.
 *
 * @category constructors
 */
export const verifier = (manifestDir: string | undefined) =>
  Effect.gen(function*() {
    const fs = yield* Effect.serviceOption(FileSystem.FileSystem)
    const path = yield* Effect.serviceOption(Path.Path)
    return (source: PluginSource): Effect.Effect<string, PluginClientError.Reason> => {
      const dir = manifestDir ?? source.location?.dir
      if (dir === undefined && source.checksumSha256 === undefined && source.checksums === undefined) {
        return Effect.succeed(source.executable)
      }
      if (Option.isNone(fs) || Option.isNone(path)) {
        return Effect.fail(new PluginClientError.Spawn({
          path: source.executable,
          detail: "verifying the executable needs the FileSystem and Path services (provide NodeServices.layer)"
        }))
      }
      return PluginManifest.verify(source, dir ?? path.value.resolve("."), { forSpawn: true }).pipe(
        Effect.provideService(FileSystem.FileSystem, fs.value),
        Effect.provideService(Path.Path, path.value),
        Effect.mapError((error): PluginClientError.Reason => {
          const reason = error.reason
          return reason._tag === "ChecksumMismatch"
            ? new PluginClientError.ChecksumMismatch({
              executable: reason.executable,
              declared: reason.declared,
              actual: reason.actual,
              ...(reason.file === undefined ? {} : { file: reason.file })
            })
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

/**
 * The policy a source runs under: the wire its manifest declares (`framing`, `cancellation`) is
 * a fact about the plugin, so it wins over the policy's, which is the host's default.
 */
const policyFor = (source: PluginSource, policy: LifetimePolicy.LifetimePolicy): LifetimePolicy.LifetimePolicy =>
  source.framing === undefined && source.cancellation === undefined ? policy : {
    ...policy,
    ...(source.framing === undefined ? {} : { framing: source.framing }),
    ...(source.cancellation === undefined ? {} : { cancellation: source.cancellation })
  }

const makeClient = Effect.fnUntraced(function*(
  source: PluginSource,
  options: Options | undefined,
  managed: ManagedClient.ManagedClientOptions
): Effect.fn.Return<PluginClient, never, Scope.Scope | ChildProcessSpawner.ChildProcessSpawner> {
  const name = source.name
  const policy = policyFor(source, options?.policy ?? LifetimePolicy.defaultPolicy)
  const clientScope = yield* Effect.scope
  // Every incarnation's scope hangs off this one, made before the client's own finalizer (the
  // full stop: shutdown request, drain, SIGTERM, grace, SIGKILL) is added: finalizers run in
  // reverse, so closing the client's scope stops the plugin gracefully first and only then
  // closes what is left of its processes.
  const incarnations = yield* Scope.fork(clientScope, "sequential")
  // The fibers the engine starts (launches, teardowns, timers): owned by the client's scope.
  const background = yield* FiberSet.make<unknown, unknown>()
  const context = yield* Effect.context<never>()
  const runInClient = Effect.runForkWith(context)
  const run = <A, E>(effect: Effect.Effect<A, E>): Fiber.Fiber<A, E> => {
    const fiber = runInClient(effect)
    FiberSet.addUnsafe(background, fiber)
    return fiber
  }
  const metrics = clientMetrics(name, context)
  const annotate = Effect.annotateLogs({ plugin: name })
  const feed = yield* EventFeed.make<PluginEvent>({
    observer: managed.observe,
    backlog: listenerBacklog,
    droppable: isPluginMessage,
    // Warned at 1, 10, 100… drops: visible without a log line per dropped message.
    onDrop: (total) => {
      if (Number.isInteger(Math.log10(total))) {
        run(annotate(Effect.logWarning(`a listener is ${listenerBacklog} events behind; ${total} plugin messages dropped for listeners so far`)))
      }
    }
  })
  const onEvent = options?.onEvent
  if (onEvent !== undefined) {
    yield* EventFeed.listen(feed, onEvent, (cause) => annotate(Effect.logWarning("the onEvent listener failed", Cause.pretty(cause))), clientScope)
  }
  const messages = PluginMessages.make({
    name,
    publish: feed.publish,
    onNotification: options?.onNotification,
    onStreamNotification: options?.onStreamNotification
  })
  const activity: Activity = { inFlight: 0, consecutiveTimeouts: 0, spawns: 0, requests: 0, lastUsed: undefined, supportedMethods: undefined }
  const engine = ClientEngine.make({
    name,
    policy,
    launcher: launcherOf(source, options, {
      policy,
      verify: Effect.suspend(() => verifyExecutable(source)),
      onNotification: messages.onNotification,
      parent: incarnations,
      spawner: yield* ChildProcessSpawner.ChildProcessSpawner,
      spawnPermits: managed.spawnPermits,
      spawned: metrics.spawns
    }),
    publish: feed.publish,
    closeOpenStreams: messages.closeOpenStreams,
    onLaunch: () => messages.forgetOpenStreams(),
    onSpawned: () => void activity.spawns++,
    onUp: (incarnation) => {
      activity.supportedMethods = incarnation.supportedMethods
      activity.consecutiveTimeouts = 0
    },
    run,
    scope: clientScope,
    clock: yield* Clock.Clock,
    busy: () => activity.inFlight > 0,
    crashes: metrics.crashes,
    reaps: metrics.reaps,
    context,
    annotate,
    logDebug: (message) =>
      // Annotating switches the fiber's context twice; a debug line that is filtered out skips it.
      Effect.withFiber((fiber) =>
        LogLevel.isGreaterThan(fiber.getRef(References.MinimumLogLevel), "Debug") ? Effect.void : annotate(Effect.logDebug(message))
      )
  })
  const verifyExecutable = yield* verifier(options?.manifestDir)
  const calls = makeCalls({ name, policy, engine, activity, metrics, context, clock: yield* Clock.Clock, annotate })

  yield* Effect.addFinalizer(() => Effect.andThen(engine.stop(true), feed.end.pipe(Effect.andThen(Effect.yieldNow))))

  const start: PluginClient["start"] = engine.start.pipe(Effect.tap(() => calls.armIdle))
  if (policy.start === "eager" && managed.autoStart) {
    yield* start.pipe(
      Effect.catchCause((cause) => Effect.logWarning("eager start failed", Cause.pretty(cause))),
      annotate,
      Effect.forkScoped
    )
  }

  return {
    name,
    ...calls.api,
    health: health(name, policy, engine, activity, feed),
    state: Effect.sync(() => Lifecycle.stateOf(engine.life().phase)),
    start,
    restart: engine.restart.pipe(Effect.tap(() => calls.armIdle)),
    stop: engine.stop(false),
    shutdown: engine.stop(true),
    clearDisabled: engine.clearDisabled,
    events: feed.subscribe
  }
})

/**
 * The injection variables a plugin is deliberately allowed: those its source marks and those the
 * options mark.
 *
 * @category options
 */
export const unsafeEnvVarsOf = (source: PluginSource, options: RunOptions | undefined): ReadonlyArray<string> | undefined =>
  options?.unsafeEnvVars === undefined ? source.unsafeEnvVars : [...(source.unsafeEnvVars ?? []), ...options.unsafeEnvVars]

/** What every launch of the plugin shares: the source and the options, and the client's parts. */
const launcherOf = (
  source: PluginSource,
  options: Options | undefined,
  parts: Pick<Incarnation.Launcher, "policy" | "verify" | "onNotification" | "parent" | "spawner" | "spawnPermits" | "spawned">
): Incarnation.Launcher => ({
  ...parts,
  name: source.name,
  handshake: Handshake.forPlugin(options?.handshake ?? Handshake.none, source),
  stderrLogLevel: options?.stderrLogLevel ?? Handshake.stderrLogLevel(options?.handshake ?? Handshake.none),
  args: source.args,
  allowedEnvVars: source.allowedEnvVars,
  unsafeEnvVars: unsafeEnvVarsOf(source, options),
  env: options?.env,
  cwd: options?.cwd,
  hostEnv: options?.hostEnv,
  hostHandlers: options?.hostHandlers,
  shutdownRequest: options?.shutdownRequest
})

/** What the call path counts: single numbers moved by calls, never a decision of the lifecycle. */
interface Activity {
  inFlight: number
  consecutiveTimeouts: number
  spawns: number
  requests: number
  lastUsed: number | undefined
  supportedMethods: ReadonlyArray<string> | undefined
}

/** The buckets of `requestDuration` (those of every `Metric.timer`), in milliseconds. */
const durationBoundaries = Metric.exponentialBoundaries({ start: 0.5, factor: 2, count: 35 })

/**
 * Series of one plugin, made as their own metrics (same ids as the exported ones): a metric
 * caches the key of the last attributes it saw, and a shared one would rebuild it whenever calls
 * to two plugins interleave. The duration is the histogram under `requestDuration` (a timer is a
 * histogram in milliseconds: same id, description and attributes, so the same series), fed the
 * milliseconds themselves rather than a `Duration` to convert on every call. Every call updates
 * two of them through `callContext`: the metric registry and attributes of the client's context,
 * found there once (a metric looks both up on every update).
 */
const clientMetrics = (name: string, context: Context.Context<never>) => {
  const attributes = { plugin: name }
  return {
    spawns: Metric.counter(spawnsTotal.id, { description: spawnsTotal.description, attributes }),
    crashes: Metric.counter(crashesTotal.id, { description: crashesTotal.description, attributes }),
    requests: Metric.counter(requestsTotal.id, { description: requestsTotal.description, attributes }),
    reaps: Metric.counter(reapsTotal.id, { description: reapsTotal.description, attributes }),
    durationMillis: Metric.histogram(requestDuration.id, {
      description: requestDuration.description,
      boundaries: durationBoundaries,
      attributes: { ...attributes, time_unit: "milliseconds" }
    }),
    callContext: Context.make(Metric.MetricRegistry, Context.get(context, Metric.MetricRegistry)).pipe(
      Context.add(Metric.CurrentMetricAttributes, Context.get(context, Metric.CurrentMetricAttributes))
    )
  }
}

/** How far a listener may fall behind before the plugin's own messages are dropped for it. */
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

/** A failure that says the connection is gone, and not because the host ended it. */
const isCrash = (reason: PluginClientError.Reason): boolean =>
  isConnectionFailure(reason) && !(reason._tag === "Exited" && reason.requested)

interface CallContext {
  readonly name: string
  readonly policy: LifetimePolicy.LifetimePolicy
  readonly engine: ClientEngine.Engine
  readonly activity: Activity
  readonly metrics: ReturnType<typeof clientMetrics>
  readonly context: Context.Context<never>
  readonly clock: Clock.Clock
  readonly annotate: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** What a failed call of one incarnation goes through: a timeout streak or a dead connection is its crash. */
type FailureHandler = (cause: Cause.Cause<PluginClientError.PluginClientError>) => Effect.Effect<never, PluginClientError.PluginClientError>

/**
 * `requestWithProgress` and `callWithProgress` over a client's `request` and `call` (any
 * transport whose calls take `onProgress`): streams of each progress, ending with the result.
 *
 * @category constructors
 */
export const progressCalls = (
  request: PluginClient["request"],
  call: PluginClient["call"]
): Pick<PluginClient, "requestWithProgress" | "callWithProgress"> => ({
  requestWithProgress: (method, params, callOptions) =>
    RpcPeer.progressStream((onProgress) => request(method, params, { ...callOptions, onProgress })),
  callWithProgress: (method, params, callOptions) =>
    RpcPeer.progressStream((onProgress) => call(method, params, { ...callOptions, onProgress }))
})

/**
 * The calls: `request`, `requestIfRunning`, `call`, `notify`, and the progress streams of the
 * first and the third. The hot path, when the plugin is
 * running, takes no lock and starts no fiber: it reads the running incarnation and sends; the
 * connection counts and times the call as it starts and ends (a `CallObserver`, one per client,
 * instead of an `onExit` around every call); the failure handler is made once per incarnation;
 * metrics are updated in place; spans only when someone collects them, and without a captured
 * stack trace (capturing one per call cost more than the call).
 */
const makeCalls = (ctx: CallContext) => {
  const { name, policy, engine, activity, metrics, context, clock } = ctx
  const failureHandlers = new WeakMap<Incarnation.Incarnation, FailureHandler>()
  const patience = (callOptions: CallOptions | undefined): number =>
    clock.currentTimeMillisUnsafe() + Duration.toMillis(
      callOptions?.timeout === undefined ? policy.requestTimeout : Duration.min(Duration.fromInputUnsafe(callOptions.timeout), policy.maxRequestTimeout)
    )
  const running = (): Incarnation.Incarnation | undefined => engine.running()

  /** A failed call: a timeout streak or a dead connection is this incarnation's crash. */
  const onCallFailure = (incarnation: Incarnation.Incarnation, error: PluginClientError.PluginClientError) =>
    Effect.gen(function*() {
      const reason = error.reason
      if (reason._tag === "Timeout") {
        activity.consecutiveTimeouts++
        if (activity.consecutiveTimeouts < policy.consecutiveTimeoutsBeforeRecycle || running() !== incarnation) return error
        activity.consecutiveTimeouts = 0
        yield* ctx.annotate(Effect.logWarning(`${policy.consecutiveTimeoutsBeforeRecycle} calls in a row timed out; recycling the process`))
        return (yield* engine.crash(incarnation, reason)) ? engine.capExceeded() : error
      }
      activity.consecutiveTimeouts = 0
      if (!isCrash(reason)) return error
      return (yield* engine.crash(incarnation, reason)) ? engine.capExceeded() : error
    })
  let lastHandled: { readonly incarnation: Incarnation.Incarnation; readonly handler: FailureHandler } | undefined
  const failureHandler = (incarnation: Incarnation.Incarnation): FailureHandler => {
    if (lastHandled?.incarnation === incarnation) return lastHandled.handler
    let handler = failureHandlers.get(incarnation)
    if (handler === undefined) {
      handler = (cause) => {
        const error = Cause.findErrorOption(cause)
        return Option.isSome(error) ? Effect.flatMap(onCallFailure(incarnation, error.value), Effect.fail) : Effect.failCause(cause)
      }
      failureHandlers.set(incarnation, handler)
    }
    lastHandled = { incarnation, handler }
    return handler
  }
  /** A failure of a call that is not activity: a dead connection is still a crash. */
  const crashIfDead = (incarnation: Incarnation.Incarnation, error: PluginClientError.PluginClientError) =>
    isCrash(error.reason)
      ? Effect.flatMap(engine.crash(incarnation, error.reason), (tripped) => Effect.fail(tripped ? engine.capExceeded() : error))
      : Effect.fail(error)

  /** The end of a call: the idle period starts again from now. */
  const ended = () => {
    activity.inFlight--
    const now = clock.currentTimeMillisUnsafe()
    activity.lastUsed = now
    engine.idle.arm(now)
  }

  /** A call is over: a success ends a timeout streak, the duration is recorded, the idle period starts again. */
  const callEnded = (succeeded: boolean, startedNanos: bigint) => {
    if (succeeded) activity.consecutiveTimeouts = 0
    metrics.durationMillis.updateUnsafe(Number(clock.monotonicTimeNanosUnsafe() - startedNanos) / 1_000_000, metrics.callContext)
    ended()
  }
  // A call to the running process is counted and timed by the connection as it is made and as it
  // ends (no effect wrapped around each call to do it).
  const observer: RpcPeer.CallObserver = {
    started: () => {
      activity.requests++
      activity.inFlight++
      metrics.requests.updateUnsafe(1, metrics.callContext)
    },
    ended: callEnded
  }
  /** A call that waits for the plugin to run first: counted and timed from before the wait. */
  const acquireThenCall = (method: string, params: unknown, callOptions: CallOptions | undefined) => {
    activity.requests++
    activity.inFlight++
    const startedNanos = clock.monotonicTimeNanosUnsafe()
    const call = Effect.flatMap(engine.acquire(patience(callOptions)), (incarnation) => {
      metrics.requests.updateUnsafe(1, metrics.callContext)
      return Effect.catchCause(incarnation.peer.request(method, params, callOptions), failureHandler(incarnation))
    })
    return Effect.onExit(call, (exit) => {
      callEnded(exit._tag === "Success", startedNanos)
      return Effect.void
    })
  }

  const request: PluginClient["request"] = (method, params, callOptions) =>
    Effect.withFiber((fiber) => {
      const incarnation = running()
      const call = incarnation !== undefined
        ? Effect.catchCause(incarnation.peer.request(method, params, callOptions, observer), failureHandler(incarnation))
        : acquireThenCall(method, params, callOptions)
      // With Effect's built-in tracer nothing is exported, and building a span was a third of
      // the cost of a call.
      return fiber.getRef(Tracer.Tracer) === Tracer.nativeTracer
        ? call
        : call.pipe(Effect.withSpan("PluginClient.request", { attributes: { plugin: name, "rpc.method": method } }, { captureStackTrace: false }))
    })

  const requestIfRunning: PluginClient["requestIfRunning"] = (method, params, callOptions) =>
    Effect.suspend(() => {
      const incarnation = running()
      if (incarnation === undefined) {
        const state = Lifecycle.stateOf(engine.life().phase)
        return Effect.fail(engine.fail(new PluginClientError.Unavailable({ detail: `not running (${state._tag})` })))
      }
      return Effect.catch(incarnation.peer.request(method, params, callOptions), (error) => crashIfDead(incarnation, error))
    })

  const call: PluginClient["call"] = (method, params, callOptions) =>
    Schema.encodeEffect(method.params)(params).pipe(
      Effect.mapError((e) => engine.fail(new PluginClientError.InvalidParams({ method: method.name, detail: e.message }))),
      Effect.flatMap((wire) => request(method.name, wire, callOptions)),
      Effect.flatMap((result) =>
        Schema.decodeUnknownEffect(method.result)(result).pipe(
          Effect.mapError((e) => engine.fail(new PluginClientError.UnexpectedPayload({ method: method.name, detail: e.message })))
        )
      )
    )

  // A notification is accounted like a call, without a reply to wait for: it starts the plugin
  // if needed, holds off the reaper while it is being sent, starts the idle period again when it
  // is over, and a dead connection under it is a crash.
  const notify: PluginClient["notify"] = (method, params) =>
    Effect.suspend(() => {
      activity.inFlight++
      const send = (incarnation: Incarnation.Incarnation) =>
        Effect.catch(incarnation.peer.notify(method, params), (error) => crashIfDead(incarnation, error))
      const incarnation = running()
      const sent = incarnation !== undefined ? send(incarnation) : Effect.flatMap(engine.acquire(patience(undefined)), send)
      return Effect.onExit(sent, () => Effect.sync(ended))
    })

  const armIdle = Effect.sync(() => engine.idle.arm(clock.currentTimeMillisUnsafe()))
  return { api: { request, requestIfRunning, call, notify, ...progressCalls(request, call) }, armIdle }
}

/** The health snapshot: the life, the activity, and the running process's connection. */
const health = (
  name: string,
  policy: LifetimePolicy.LifetimePolicy,
  engine: ClientEngine.Engine,
  activity: Activity,
  feed: EventFeed.EventFeed<PluginEvent>
): Effect.Effect<HealthSnapshot> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const life = engine.life()
    const incarnation = engine.running()
    const peerStats = incarnation === undefined ? undefined : yield* incarnation.peer.stats
    const state = Lifecycle.stateOf(life.phase)
    return {
      pluginName: name,
      state,
      crashesInWindow: RestartDecision.crashesInWindow(policy, life.history, now),
      lastUsed: activity.lastUsed,
      lastCrash: life.history.lastCrashAt,
      lastError: life.lastError?.message,
      lastErrorReason: life.lastError?._tag,
      pid: incarnation?.process.pid,
      uptime: incarnation === undefined ? undefined : Duration.millis(now - incarnation.process.startedAt),
      consecutiveCrashes: life.history.consecutive,
      totalCrashes: life.totalCrashes,
      spawns: activity.spawns,
      requests: activity.requests,
      pendingRequests: incarnation === undefined ? 0 : yield* incarnation.peer.pending,
      nextRestartAt: state._tag === "Backoff" ? state.until : undefined,
      stderrExcerpt: incarnation === undefined ? life.lastStderr : yield* incarnation.process.stderrExcerpt,
      supportedMethods: activity.supportedMethods,
      notificationsDropped: peerStats?.notificationsDropped ?? 0,
      queuedBytes: peerStats?.queuedBytes ?? 0,
      eventsDropped: feed.dropped()
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
