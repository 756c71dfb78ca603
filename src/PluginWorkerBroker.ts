/**
 * The broker half of the worker SDK: serving a worker's handlers over a `Broker` (NATS for
 * workers on other machines) as one instance of a NATS micro service (`serveBroker`, `runBroker`,
 * `mainBroker`, documented where users meet them: `PluginWorker`). `PluginWorker` loads this
 * module on demand, the first time one of them runs, so a stdio worker never loads `Broker`,
 * `Poller` or the NATS micro responder; it shares the handler table with the stdio half through
 * `internal/workerHandlers.ts` and imports nothing from `PluginWorker`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Broker from "./Broker.ts"
import * as BrokerService from "./internal/brokerService.ts"
import type * as EndpointStatsModule from "./internal/endpointStats.ts"
import type * as InvalidServiceModule from "./internal/invalidService.ts"
import * as NatsMicro from "./internal/natsMicro.ts"
import * as Protocol from "./internal/protocol.ts"
import * as RemoteWire from "./internal/remoteWire.ts"
import {
  brokerHostConnection,
  type Handler,
  handlerTable,
  HostConnection,
  type NotificationHandler,
  notificationHandler,
  runAsMain
} from "./internal/workerHandlers.ts"
import * as JsonRpc from "./JsonRpc.ts"

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
  /** The same handlers as `PluginWorker.serve`; `poll_tick` answers `<prefix>.tick`. */
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
   * in `PluginWorker.ServeOptions`; one instance of the queue group handles each.
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
export type InvalidService = InvalidServiceModule.InvalidService

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

/** The host connection of a handler whose request came with its host's inbox. */
const linkedHostConnection = (link: BrokerService.HostLink): HostConnection["Service"] =>
  HostConnection.of({
    request: (method, params, callOptions) => link.request(method, params, callOptions?.timeout),
    notify: link.notify
  })

/** Serves `options.handlers` over the current `Broker` as one instance of a service (`PluginWorker.serveBroker`). */
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

/** Serves a worker over a broker built from `layer` until interrupted (`PluginWorker.runBroker`). */
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

/** Runs a broker worker on NATS as the process's main program (`PluginWorker.mainBroker`). */
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
