/**
 * Many plugins under one roof: a service that registers plugins by id, starts and stops them,
 * routes calls, and reports on all of them.
 *
 * Each registered plugin is a {@link PluginClient} living in its own Scope under the manager's
 * layer, so lazy (on-demand) and always-on (eager, with backoff restarts) plugins share one
 * manager. Concurrent `start`s of one id share the in-flight start; a global cap on spawns in
 * progress (default 8) keeps a host restart with hundreds of plugins from stampeding the
 * machine. Every client's events reach one stream, tagged with the plugin id, together with
 * `WorkerCrashed` and `WorkerRestarted` (a ready that follows a crash).
 * Releasing the layer (or closing the Scope of {@link make}) stops every plugin concurrently,
 * each bounded by its own policy's deadlines, so the whole release takes as long as the slowest
 * stop, not their sum. Unregistering one id never waits for another's stop.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as FileSystem from "effect/FileSystem"
import * as Layer from "effect/Layer"
import type * as Path from "effect/Path"
import * as PubSub from "effect/PubSub"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Handshake from "./Handshake.ts"
import * as ManagedClient from "./internal/managedClient.ts"
import * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClient from "./PluginClient.ts"
import type * as PluginClientError from "./PluginClientError.ts"
import * as PluginManifest from "./PluginManifest.ts"

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

/**
 * An id is registered already (and its plugin is not stopped).
 *
 * @category errors
 */
export class AlreadyRegistered extends Schema.TaggedError<AlreadyRegistered>()("AlreadyRegistered", {}) {
  override get message() {
    return "is already registered"
  }
}

/**
 * No plugin has this id. When a `discover` rejected a manifest whose file name implies this id
 * (see `PluginManifest.stemMatches`), `rejected` is that manifest's error, so the caller learns
 * why the plugin is missing instead of only that it is.
 *
 * @category errors
 */
export class NotRegistered extends Schema.TaggedError<NotRegistered>()("NotRegistered", {
  rejected: Schema.optionalKey(PluginManifest.ManifestError)
}) {
  override get message() {
    return this.rejected === undefined
      ? "is not registered"
      : `is not registered: its manifest ${this.rejected.path} was rejected: ${this.rejected.reason.message}`
  }
}

/**
 * A registry operation failed.
 *
 * @category errors
 */
export class ManagerError extends Schema.TaggedError<ManagerError>()("ManagerError", {
  id: Schema.String,
  reason: Schema.Union([AlreadyRegistered, NotRegistered])
}) {
  override get message() {
    return `plugin id \`${this.id}\` ${this.reason.message}`
  }
}

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * What the manager's event stream carries.
 *
 * @category models
 */
export type ManagerEvent =
  | { readonly _tag: "Plugin"; readonly id: string; readonly event: PluginClient.PluginEvent }
  | {
    readonly _tag: "WorkerCrashed"
    readonly id: string
    readonly code: number | null
    readonly signal: string | null
    readonly reason: string
    readonly willRestart: boolean
  }
  | { readonly _tag: "WorkerRestarted"; readonly id: string; readonly pid: number }

/**
 * One plugin's health, under its id.
 *
 * @category models
 */
export interface Diagnostics {
  readonly id: string
  readonly manifest: PluginClient.PluginSource
  readonly allowedEnvVars: ReadonlyArray<string>
  /** Names (never values) of every variable the plugin may receive: allow-listed and explicit. */
  readonly envVarNames: ReadonlyArray<string>
  /** Whether the manifest declares a checksum (then it is verified before every spawn). */
  readonly checksumDeclared: boolean
  readonly health: PluginClient.HealthSnapshot
}

/**
 * How to register a plugin: its id (default the manifest's `name`) and the client's options.
 * For an eager policy without a handshake the default is `initialize`
 * (`{ok: true, supportedMethods}`) and the graceful stop request is `shutdown`.
 *
 * @category models
 */
export interface RegisterOptions extends PluginClient.Options {
  /** The id the plugin is registered (and called, stopped, reported) under. Default the manifest's `name`. */
  readonly id?: string | undefined
}

/**
 * How {@link PluginManager} `discover` runs what it finds: the client's options, for every
 * plugin. Each registers under its manifest's name, with the manifest's folder.
 *
 * @category models
 */
export type DiscoverOptions = Omit<PluginClient.Options, "manifestDir">

/**
 * Options of the manager itself.
 *
 * @category models
 */
export interface ManagerOptions {
  /** How many plugins may be spawning (spawn through handshake) at once. Default 8. */
  readonly maxConcurrentSpawns?: number | undefined
}

/**
 * The manager service.
 *
 * @category models
 */
export class PluginManager extends Context.Service<PluginManager, {
  /**
   * Registers a plugin under `options.id` (default the manifest's `name`); nothing is spawned.
   * Fails with `AlreadyRegistered` unless the existing one is stopped.
   */
  readonly register: (source: PluginClient.PluginSource, options?: RegisterOptions) => Effect.Effect<PluginClient.PluginClient, ManagerError>
  /** Stops and forgets a plugin. Unknown ids are a no-op. */
  readonly unregister: (id: string) => Effect.Effect<void>
  /** Spawns a plugin now and waits for its handshake. */
  readonly start: (id: string) => Effect.Effect<void, ManagerError | PluginClientError.PluginClientError>
  /** Stops a plugin and cancels any pending restart. Unknown ids are a no-op. */
  readonly stop: (id: string) => Effect.Effect<void>
  readonly get: (id: string) => Effect.Effect<PluginClient.PluginClient, ManagerError>
  readonly isRunning: (id: string) => Effect.Effect<boolean>
  readonly ids: Effect.Effect<ReadonlyArray<string>>
  readonly call: (
    id: string,
    method: string,
    params?: unknown,
    options?: PluginClient.CallOptions
  ) => Effect.Effect<unknown, ManagerError | PluginClientError.PluginClientError>
  readonly notify: (id: string, method: string, params?: unknown) => Effect.Effect<void, ManagerError | PluginClientError.PluginClientError>
  /** Starts every registered plugin whose policy is eager, in parallel (failures are logged). */
  readonly startAll: Effect.Effect<void>
  /** Stops every plugin in parallel; errors are logged, never raised. */
  readonly stopAll: Effect.Effect<void>
  readonly diagnostics: Effect.Effect<ReadonlyArray<Diagnostics>>
  /** Every event after the stream starts running. */
  readonly events: Stream.Stream<ManagerEvent>
  /** Subscribes now (no event published after this returns is missed); lives in the Scope. */
  readonly subscribe: Effect.Effect<Stream.Stream<ManagerEvent>, never, Scope.Scope>
  /**
   * Registers every valid manifest in `dir` (id = manifest name) and returns every outcome,
   * bad manifests included. The rejected ones are remembered (until the next `discover` of the
   * same `dir`): using an id their file name implies fails with `NotRegistered` carrying the
   * rejection. A missing `dir` fails with the `ManifestError` of `PluginManifest.discover`.
   */
  readonly discover: (
    dir: string,
    options?: DiscoverOptions
  ) => Effect.Effect<ReadonlyArray<PluginManifest.Discovered>, PluginManifest.ManifestError, FileSystem.FileSystem | Path.Path>
}>()("effect-plugin-host/PluginManager") {}

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

interface Entry {
  readonly id: string
  readonly source: PluginClient.PluginSource
  readonly client: PluginClient.PluginClient
  readonly scope: Scope.Closeable
  readonly eager: boolean
  readonly envVarNames: ReadonlyArray<string>
}

/**
 * Fills in the always-on defaults: an eager plugin speaks the worker dialect unless told
 * otherwise.
 */
const withDefaults = (options: PluginClient.Options | undefined): PluginClient.Options => {
  const policy = options?.policy ?? LifetimePolicy.defaultPolicy
  if (policy.start !== "eager") return { ...options, policy }
  return {
    ...options,
    policy,
    handshake: options?.handshake ?? Handshake.initialize(),
    shutdownRequest: options?.shutdownRequest ?? "shutdown"
  }
}

/**
 * Makes a manager in the current Scope; closing the Scope stops every plugin.
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(managerOptions?: ManagerOptions) {
  const scope = yield* Effect.scope
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
  const spawnPermits = yield* Semaphore.make(Math.max(1, managerOptions?.maxConcurrentSpawns ?? 8))
  const events = yield* PubSub.unbounded<ManagerEvent>()
  const entries = new Map<string, Entry>()
  const registry = yield* Semaphore.make(1)
  // Every client lives in its own Scope, a child of this one. The manager's own Scope (a layer's,
  // or the caller's) closes its children one after another, so releasing would take the sum of
  // the plugins' stops (each up to drain + grace + kill); this one closes them all at once, so
  // releasing takes only the slowest stop.
  const clientScopes = yield* Scope.fork(scope, "parallel")

  /** The manifests each `discover(dir)` rejected, by `dir`. */
  const rejections = new Map<string, ReadonlyArray<PluginManifest.DiscoveredRejected>>()
  const rejectionOf = (id: string): PluginManifest.ManifestError | undefined => {
    for (const rejected of rejections.values()) {
      const found = rejected.find((r) => PluginManifest.stemMatches(PluginManifest.stemOf(r.path), id))
      if (found !== undefined) return found.error
    }
    return undefined
  }
  const notRegistered = (id: string) => {
    const rejected = rejectionOf(id)
    return new ManagerError({ id, reason: rejected === undefined ? new NotRegistered() : new NotRegistered({ rejected }) })
  }
  const lookup = (id: string) =>
    Effect.suspend(() => {
      const entry = entries.get(id)
      return entry === undefined ? Effect.fail(notRegistered(id)) : Effect.succeed(entry)
    })

  /**
   * Forwards a client's events, adding the crashed/restarted pair of the worker dialect. The
   * PubSub is unbounded, so the synchronous publish is the same as `PubSub.publish`.
   */
  const forwarder = (id: string) => {
    let crashedSinceReady = false
    return (event: PluginClient.PluginEvent): Effect.Effect<void> =>
      Effect.sync(() => {
        PubSub.publishUnsafe(events, { _tag: "Plugin", id, event })
        switch (event._tag) {
          case "Crash":
            crashedSinceReady = true
            PubSub.publishUnsafe(events, {
              _tag: "WorkerCrashed",
              id,
              code: event.code,
              signal: event.signal,
              reason: event.reason,
              willRestart: event.willRestart
            })
            return
          case "Ready":
            if (!crashedSinceReady) return
            crashedSinceReady = false
            PubSub.publishUnsafe(events, { _tag: "WorkerRestarted", id, pid: event.pid })
            return
        }
      })
  }

  const closeEntry = (entry: Entry) =>
    entry.client.shutdown.pipe(Effect.andThen(Scope.close(entry.scope, Exit.void)))

  /** Registers under the registry's lock; a replaced (stopped) entry is closed after it. */
  const register: PluginManager["Service"]["register"] = (source, registerOptions) =>
    registry.withPermits(1)(
      Effect.gen(function*() {
        const { id = source.name, ...options } = registerOptions ?? {}
        const existing = entries.get(id)
        if (existing !== undefined) {
          const state = yield* existing.client.state
          if (state._tag !== "Stopped") return yield* new ManagerError({ id, reason: new AlreadyRegistered() })
          entries.delete(id)
        }
        const resolved = withDefaults(options)
        const userOnEvent = resolved.onEvent
        const forward = forwarder(id)
        const clientScope = yield* Scope.fork(clientScopes, "sequential")
        const client = yield* PluginClient.make(source, {
          ...resolved,
          onEvent: (event) => userOnEvent === undefined ? forward(event) : Effect.andThen(forward(event), userOnEvent(event))
        }).pipe(
          Scope.provide(clientScope),
          Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, spawner),
          // The manager starts eager plugins itself (`startAll`), a few at a time.
          Effect.provideService(ManagedClient.ManagedClient, { spawnPermits, autoStart: false })
        )
        const envVarNames = [...new Set([...(source.allowedEnvVars ?? []), ...Object.keys(resolved.env ?? {})])]
        entries.set(id, { id, source, client, scope: clientScope, eager: resolved.policy?.start === "eager", envVarNames })
        return { client, replaced: existing }
      })
    ).pipe(
      Effect.tap(({ replaced }) => replaced === undefined ? Effect.void : closeEntry(replaced)),
      Effect.map(({ client }) => client)
    )

  /** Forgets the id under the registry's lock, then stops its plugin outside it. */
  const unregister: PluginManager["Service"]["unregister"] = (id) =>
    registry.withPermits(1)(
      Effect.sync(() => {
        const entry = entries.get(id)
        entries.delete(id)
        return entry
      })
    ).pipe(Effect.flatMap((entry) => entry === undefined ? Effect.void : closeEntry(entry)))

  const start: PluginManager["Service"]["start"] = (id) =>
    Effect.flatMap(lookup(id), (entry) => entry.client.start).pipe(Effect.withSpan("PluginManager.start", { attributes: { plugin: id } }))

  const stop: PluginManager["Service"]["stop"] = (id) =>
    Effect.suspend(() => {
      const entry = entries.get(id)
      return entry === undefined ? Effect.void : entry.client.stop
    })

  const all = Effect.sync(() => [...entries.values()])

  const startAll: PluginManager["Service"]["startAll"] = Effect.flatMap(all, (list) =>
    Effect.forEach(
      list.filter((entry) => entry.eager),
      (entry) =>
        entry.client.start.pipe(
          Effect.catchCause((cause) => Effect.logWarning(`start of ${entry.id} failed`, Cause.pretty(cause)))
        ),
      { concurrency: "unbounded", discard: true }
    ))

  const stopAll: PluginManager["Service"]["stopAll"] = Effect.flatMap(all, (list) =>
    Effect.forEach(
      list,
      (entry) =>
        entry.client.stop.pipe(
          Effect.catchCause((cause) => Effect.logWarning(`stop of ${entry.id} failed`, Cause.pretty(cause)))
        ),
      { concurrency: "unbounded", discard: true }
    ))

  const diagnostics: PluginManager["Service"]["diagnostics"] = Effect.flatMap(all, (list) =>
    Effect.forEach(list, (entry) =>
      Effect.map(entry.client.health, (health): Diagnostics => ({
        id: entry.id,
        manifest: entry.source,
        allowedEnvVars: entry.source.allowedEnvVars ?? [],
        envVarNames: entry.envVarNames,
        checksumDeclared: entry.source.checksumSha256 !== undefined,
        health
      }))))

  const discover: PluginManager["Service"]["discover"] = (dir, options) =>
    PluginManifest.discover(dir).pipe(
      Effect.tap((outcomes) => Effect.sync(() => rejections.set(dir, outcomes.flatMap((o) => o._tag === "Valid" ? [] : [o])))),
      Effect.tap((outcomes) =>
        Effect.forEach(outcomes, (outcome) =>
          outcome._tag === "Valid"
            ? register(outcome.manifest, options).pipe(
              Effect.catch((error) => Effect.logWarning(error.message))
            )
            : Effect.logWarning(outcome.error.message), { discard: true })
      )
    )

  return PluginManager.of({
    register,
    unregister,
    start,
    stop,
    get: (id) => Effect.map(lookup(id), (entry) => entry.client),
    isRunning: (id) =>
      Effect.suspend(() => {
        const entry = entries.get(id)
        return entry === undefined ? Effect.succeed(false) : Effect.map(entry.client.state, (s) => s._tag === "Running")
      }),
    ids: Effect.sync(() => [...entries.keys()]),
    call: (id, method, params, options) => Effect.flatMap(lookup(id), (entry) => entry.client.request(method, params, options)),
    notify: (id, method, params) => Effect.flatMap(lookup(id), (entry) => entry.client.notify(method, params)),
    startAll,
    stopAll,
    diagnostics,
    events: Stream.fromPubSub(events),
    subscribe: Effect.map(PubSub.subscribe(events), Stream.fromSubscription),
    discover
  })
})

/**
 * The manager as a layer, with its options (all optional). Needs a `ChildProcessSpawner`
 * (e.g. `NodeServices.layer`). Releasing the layer stops every plugin.
 *
 * @category layers
 */
export const layer = (options?: ManagerOptions): Layer.Layer<PluginManager, never, ChildProcessSpawner.ChildProcessSpawner> =>
  Layer.effect(PluginManager, make(options))
