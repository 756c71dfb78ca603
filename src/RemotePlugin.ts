/**
 * A plugin on other machines: a `PluginClient` whose plugin is a NATS service (any number of
 * `PluginWorker.serveBroker` instances sharing the subject prefix in a queue group) instead of
 * a child process.
 *
 * It keeps the `PluginClient` contract — `request`/`call`/`notify`, typed `PluginMethod`s,
 * timeouts, the same tagged `PluginClientError` reasons, events, a health snapshot — so a
 * `PluginManager` holds remote and local plugins side by side and callers cannot tell them
 * apart. What cannot apply to a remote plugin (spawning, signals, restarts, the restart cap)
 * does not: the instances are someone else's processes, and the broker's reconnects replace
 * restarts. Each client subscribes one inbox of its own, carried by each call, on which the
 * instance serving a call reaches the host: host calls go to `hostHandlers`, `log`, `streams.*`
 * and other notifications become events (and `onNotification`), progress goes to the call's
 * `onProgress` and moves its deadline. A call the host gives up (timeout, interrupted caller)
 * is cancelled on the instance holding it; an instance that dies mid-call is noticed by asking
 * whether anyone still holds the call; `NoResponders` says which service has no instance; only
 * methods declared idempotent are sent again after either. The wire is
 * `internal/remoteWire.ts`, the calls `internal/remoteCalls.ts`.
 *
 * @since 0.2.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Broker from "./Broker.ts"
import * as EventFeed from "./internal/eventFeed.ts"
import * as PluginMessages from "./internal/pluginMessages.ts"
import * as RemoteCalls from "./internal/remoteCalls.ts"
import * as RemoteInbox from "./internal/remoteInbox.ts"
import * as RemoteWire from "./internal/remoteWire.ts"
import * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClient from "./PluginClient.ts"
import * as PluginClientError from "./PluginClientError.ts"
import * as PluginEvents from "./PluginEvent.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * Where a remote plugin is and how to call it.
 *
 * @category options
 */
export interface RemoteOptions {
  /** The subject prefix its instances serve (`<prefix>.call`, `<prefix>.tick`…). */
  readonly subjectPrefix: string
  /** The NATS service name, as errors and health name it. Default the plugin's name. */
  readonly service?: string | undefined
  /**
   * Methods that may run twice: only these are sent again after `NoResponders` or
   * `InstanceLost` (within their deadline). Default none.
   */
  readonly idempotent?: ReadonlyArray<string> | undefined
  /** The prefix of this client's inbox subject (`<inboxPrefix>.<unique id>`). Default `_PLUGIN_HOST`. */
  readonly inboxPrefix?: string | undefined
  /**
   * How long a call goes unanswered before the host asks whether an instance still holds it
   * (and again each time this passes): how soon a dead instance's calls end. Default 2 s.
   */
  readonly livenessInterval?: Duration.Input | undefined
  /** How long the host waits for an instance to say it holds a call. Default 1 s. */
  readonly livenessTimeout?: Duration.Input | undefined
}

/**
 * Everything a remote client is made with: where the plugin is, the timeouts (the policy's
 * `requestTimeout` and `maxRequestTimeout`; the rest of the policy is about processes and does
 * not apply), what the host answers and hears, and who watches.
 *
 * @category options
 */
export interface Options
  extends
    RemoteOptions,
    Pick<PluginClient.ProtocolOptions, "hostHandlers" | "onNotification" | "onStreamNotification">,
    PluginClient.ObserverOptions
{
  readonly policy?: LifetimePolicy.LifetimePolicy | undefined
}

/** What the health snapshot reads: numbers moved by calls and the client's own life. */
interface Activity {
  state: PluginEvents.PluginState
  /** Shut down for good: `start` fails. */
  shutDown: boolean
  startedAt: number
  requests: number
  lastUsed: number | undefined
  lastFailureAt: number | undefined
  lastError: PluginClientError.Reason | undefined
}

/** Failures that say something about the service rather than about one call's arguments. */
const isServiceFailure = (reason: PluginClientError.Reason): boolean =>
  reason._tag === "NoResponders" || reason._tag === "InstanceLost" || reason._tag === "Timeout" || reason._tag === "Io" ||
  reason._tag === "MalformedResponse"

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

/**
 * Makes a remote plugin client in the current Scope, on the `Broker` it is given (a
 * `NatsBroker` layer, or `Broker.layerMemory` in tests): subscribes its inbox, then serves
 * calls. Closing the Scope unsubscribes it; calls then fail with `Closed`.
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(
  name: string,
  options: Options
): Effect.fn.Return<PluginClient.PluginClient, Broker.BrokerError, Broker.Broker | Scope.Scope> {
  const broker = yield* Broker.Broker
  const clock = yield* Clock.Clock
  const clientScope = yield* Effect.scope
  const policy = options.policy ?? LifetimePolicy.defaultPolicy
  const service = options.service ?? name
  const idempotent = new Set(options.idempotent ?? [])
  const inbox = `${options.inboxPrefix ?? "_PLUGIN_HOST"}.${crypto.randomUUID().replaceAll("-", "")}`
  const annotate = Effect.annotateLogs({ plugin: name, service })

  const feed = yield* EventFeed.make<PluginEvents.PluginEvent>({
    backlog: 10_000,
    droppable: (event) => event._tag === "Log" || event._tag === "Notification" || event._tag === "Stream",
    onDrop: () => undefined
  })
  const onEvent = options.onEvent
  if (onEvent !== undefined) {
    yield* EventFeed.listen(feed, onEvent, (cause) => annotate(Effect.logWarning("the onEvent listener failed", Cause.pretty(cause))), clientScope)
  }
  const messages = PluginMessages.make({
    name,
    publish: feed.publish,
    onNotification: options.onNotification,
    onStreamNotification: options.onStreamNotification
  })
  const calls = RemoteCalls.make({
    name,
    service,
    subjects: RemoteWire.subjects(options.subjectPrefix),
    inbox,
    broker,
    clock,
    requestTimeout: policy.requestTimeout,
    maxRequestTimeout: policy.maxRequestTimeout,
    livenessInterval: Duration.fromInputUnsafe(options.livenessInterval ?? "2 seconds"),
    livenessTimeout: Duration.fromInputUnsafe(options.livenessTimeout ?? "1 second"),
    isIdempotent: (method) => idempotent.has(method)
  }, yield* FiberSet.makeRuntime<never, void, never>())
  yield* RemoteInbox.serve({
    subject: inbox,
    hostHandlers: options.hostHandlers,
    maxConcurrentHandlers: 1_024,
    onProgress: calls.progress,
    onNotification: messages.onNotification
  })

  const activity: Activity = {
    state: PluginEvents.PluginState.Running,
    shutDown: false,
    startedAt: clock.currentTimeMillisUnsafe(),
    requests: 0,
    lastUsed: undefined,
    lastFailureAt: undefined,
    lastError: undefined
  }
  const moveTo = (to: PluginEvents.PluginState) =>
    Effect.sync(() => {
      const from = activity.state
      if (from._tag === to._tag) return
      activity.state = to
      feed.publish({ _tag: "StateChanged", plugin: name, from, to })
    })
  feed.publish({ _tag: "StateChanged", plugin: name, from: PluginEvents.PluginState.Idle, to: PluginEvents.PluginState.Running })
  yield* Effect.addFinalizer(() =>
    moveTo(PluginEvents.PluginState.Stopped).pipe(
      Effect.andThen(Effect.sync(() => calls.close("the client was closed"))),
      Effect.andThen(feed.end)
    )
  )

  const api = clientCalls(name, calls, activity, clock, yield* Effect.context<never>())
  return {
    name,
    ...api,
    ...PluginClient.progressCalls(api.request, api.call),
    health: health(name, calls, activity, feed, clock),
    state: Effect.sync(() => activity.state),
    start: Effect.suspend(() =>
      activity.shutDown
        ? Effect.fail(PluginClientError.make(name, new PluginClientError.Closed({ detail: "the client was shut down" })))
        : moveTo(PluginEvents.PluginState.Running)
    ),
    restart: moveTo(PluginEvents.PluginState.Running),
    stop: moveTo(PluginEvents.PluginState.Stopped),
    shutdown: Effect.andThen(Effect.sync(() => void (activity.shutDown = true)), moveTo(PluginEvents.PluginState.Stopped)),
    clearDisabled: Effect.void,
    events: feed.subscribe
  } satisfies PluginClient.PluginClient
})

/** Series of one plugin (same ids as `PluginClient`'s metrics). */
const clientMetrics = (name: string) => {
  const attributes = { plugin: name, transport: "nats" }
  return {
    requests: Metric.counter(PluginClient.requestsTotal.id, { description: PluginClient.requestsTotal.description, attributes }),
    duration: Metric.timer(PluginClient.requestDuration.id, { description: PluginClient.requestDuration.description, attributes })
  }
}

/** `request`, `requestIfRunning`, `call`, `notify` on top of the remote calls. */
const clientCalls = (
  name: string,
  calls: RemoteCalls.RemoteCalls,
  activity: Activity,
  clock: Clock.Clock,
  context: Context.Context<never>
) => {
  const metrics = clientMetrics(name)
  const fail = (reason: PluginClientError.Reason) => Effect.fail(PluginClientError.make(name, reason))
  const refused = () =>
    activity.state._tag === "Stopped"
      ? fail(new PluginClientError.Closed({ detail: "the client is stopped" }))
      : undefined
  const track = <A>(effect: Effect.Effect<A, PluginClientError.PluginClientError>, counts: boolean) =>
    Effect.suspend(() => {
      const started = clock.monotonicTimeNanosUnsafe()
      if (counts) {
        activity.requests++
        metrics.requests.updateUnsafe(1, context)
      }
      return Effect.onExit(effect, (exit) =>
        Effect.sync(() => {
          const now = clock.currentTimeMillisUnsafe()
          if (counts) activity.lastUsed = now
          metrics.duration.updateUnsafe(Duration.nanos(clock.monotonicTimeNanosUnsafe() - started), context)
          if (exit._tag === "Failure") {
            const error = Cause.findErrorOption(exit.cause)
            if (error._tag === "Some" && isServiceFailure(error.value.reason)) {
              activity.lastError = error.value.reason
              activity.lastFailureAt = now
            }
          }
        }))
    })

  const request: PluginClient.PluginClient["request"] = (method, params, callOptions) =>
    Effect.suspend(() => refused() ?? track(calls.request(method, params, callOptions), true))
  const requestIfRunning: PluginClient.PluginClient["requestIfRunning"] = (method, params, callOptions) =>
    Effect.suspend(() => refused() ?? track(calls.request(method, params, callOptions), false))
  const call: PluginClient.PluginClient["call"] = (method, params, callOptions) =>
    Schema.encodeEffect(method.params)(params).pipe(
      Effect.mapError((e) => PluginClientError.make(name, new PluginClientError.InvalidParams({ method: method.name, detail: e.message }))),
      Effect.flatMap((wire) => request(method.name, wire, callOptions)),
      Effect.flatMap((result) =>
        Schema.decodeUnknownEffect(method.result)(result).pipe(
          Effect.mapError((e) => PluginClientError.make(name, new PluginClientError.UnexpectedPayload({ method: method.name, detail: e.message })))
        )
      )
    )
  const notify: PluginClient.PluginClient["notify"] = (method, params) =>
    Effect.suspend(() => refused() ?? calls.notify(method, params))
  return { request, requestIfRunning, call, notify }
}

/** The health snapshot: what applies to a remote plugin; the process fields are empty. */
const health = (
  name: string,
  calls: RemoteCalls.RemoteCalls,
  activity: Activity,
  feed: EventFeed.EventFeed<PluginEvents.PluginEvent>,
  clock: Clock.Clock
): Effect.Effect<PluginClient.HealthSnapshot> =>
  Effect.sync(() => {
    const now = clock.currentTimeMillisUnsafe()
    return {
      pluginName: name,
      state: activity.state,
      crashesInWindow: 0,
      lastUsed: activity.lastUsed,
      lastCrash: activity.lastFailureAt,
      lastError: activity.lastError === undefined ? undefined : PluginClientError.make(name, activity.lastError).message,
      lastErrorReason: activity.lastError?._tag,
      pid: undefined,
      uptime: activity.state._tag === "Stopped" ? undefined : Duration.millis(now - activity.startedAt),
      consecutiveCrashes: 0,
      totalCrashes: 0,
      spawns: 0,
      requests: activity.requests,
      pendingRequests: calls.pending(),
      nextRestartAt: undefined,
      stderrExcerpt: "",
      supportedMethods: undefined,
      notificationsDropped: 0,
      queuedBytes: 0,
      eventsDropped: feed.dropped()
    }
  })

// ---------------------------------------------------------------------------------------------
// brokers
// ---------------------------------------------------------------------------------------------

/**
 * Where a remote plugin's instances are: the servers its manifest names, or the named set of
 * servers the host is configured with, or (neither) the host's default servers.
 *
 * @category brokers
 */
export interface Target {
  readonly servers: ReadonlyArray<string> | undefined
  readonly serverSet: string | undefined
}

/**
 * Makes the broker for a {@link Target}, in the Scope given (`PluginManager` makes one per
 * distinct target and keeps it while it lives).
 *
 * @category brokers
 */
export type BrokerFactory = (target: Target) => Effect.Effect<Broker.Broker["Service"], Broker.BrokerError, Scope.Scope>

/**
 * The servers of a target: its own, else those of its server set from `Config`
 * (`PLUGIN_HOST_NATS_SERVERS_<SET>`), else the default ones (`PLUGIN_HOST_NATS_SERVERS`); a list
 * is comma-separated. A missing or empty variable fails with a `Connection` reason naming it.
 *
 * @category brokers
 */
export const serversOf = (target: Target): Effect.Effect<ReadonlyArray<string>, Broker.BrokerError> => {
  if (target.servers !== undefined) return Effect.succeed(target.servers)
  const name = target.serverSet === undefined ? "PLUGIN_HOST_NATS_SERVERS" : `PLUGIN_HOST_NATS_SERVERS_${target.serverSet.toUpperCase()}`
  const fail = (problem: string) => Broker.make(new Broker.Connection({ detail: `no NATS servers in ${name}: ${problem}` }))
  return Effect.flatMap(
    Effect.mapError(Config.String(name), (error) => fail(error.message)),
    (text) => {
      const servers = text.split(",").map((server) => server.trim()).filter((server) => server !== "")
      return servers.length > 0 ? Effect.succeed(servers) : Effect.fail(fail("it is empty"))
    }
  )
}

/**
 * A {@link BrokerFactory} on NATS: a `NatsBroker` connection to the target's servers
 * ({@link serversOf}), named `name` (default `plugin-host`). The NATS client is loaded only when
 * a remote plugin is first registered.
 *
 * @category brokers
 */
export const natsBrokers = (options?: { readonly name?: string | undefined }): BrokerFactory => (target) =>
  Effect.flatMap(serversOf(target), (servers) =>
    Effect.flatMap(
      Effect.promise(() => import("./NatsBroker.ts")),
      (NatsBroker) => NatsBroker.make({ servers, name: options?.name ?? "plugin-host" })
    ))

// ---------------------------------------------------------------------------------------------
// layers
// ---------------------------------------------------------------------------------------------

/**
 * One remote plugin as the service `tag` (see `PluginClient.layerAs`): the same tag type as a
 * local plugin's, so a program does not know which it got.
 *
 * @category layers
 */
export const layerAs = <Identifier>(
  tag: Context.Key<Identifier, PluginClient.PluginClient>,
  name: string,
  options: Options
): Layer.Layer<Identifier, Broker.BrokerError, Broker.Broker> => Layer.effect(tag, make(name, options))

/**
 * One remote plugin as the `PluginClient` service.
 *
 * @category layers
 */
export const layer = (name: string, options: Options): Layer.Layer<PluginClient.PluginClient, Broker.BrokerError, Broker.Broker> =>
  layerAs(PluginClient.PluginClient, name, options)
