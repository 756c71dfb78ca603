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
 * A plugin whose manifest has a `[remote]` table runs on other machines: the manager holds a
 * `RemotePlugin` client for it (on the broker `ManagerOptions.brokers` makes for its servers,
 * one per distinct target) beside the local ones, with the same calls, events and diagnostics;
 * nothing is spawned, and its broker's reconnects stand in for restarts. The remote plugins
 * registered (and the broker each is reached on) are published as they change
 * ({@link PluginManager} `remotes`), which is how `PluginHealth` watches their instances.
 *
 * @since 0.1.0
 */
import * as nodePath from "node:path"
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
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Broker from "./Broker.ts"
import * as Handshake from "./Handshake.ts"
import * as ManagedClient from "./internal/managedClient.ts"
import * as PluginEnvironment from "./internal/pluginEnvironment.ts"
import * as Protocol from "./internal/protocol.ts"
import * as VerificationPlan from "./internal/verificationPlan.ts"
import * as SpawnRegistry from "./internal/spawnRegistry.ts"
import * as Leftovers from "./Leftovers.ts"
import * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClient from "./PluginClient.ts"
import type * as PluginClientError from "./PluginClientError.ts"
import * as PluginManifest from "./PluginManifest.ts"
import * as RemotePlugin from "./RemotePlugin.ts"

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
 * A remote plugin (a manifest with a `[remote]` table) could not be registered: the manager was
 * given no way to reach a broker (`ManagerOptions.brokers`), or connecting failed.
 *
 * @category errors
 */
export class RemoteUnavailable extends Schema.TaggedError<RemoteUnavailable>()("RemoteUnavailable", {
  detail: Schema.String
}) {
  override get message() {
    return `is remote and cannot be reached: ${this.detail}`
  }
}

/**
 * A registry operation failed.
 *
 * @category errors
 */
export class ManagerError extends Schema.TaggedError<ManagerError>()("ManagerError", {
  id: Schema.String,
  reason: Schema.Union([AlreadyRegistered, NotRegistered, RemoteUnavailable])
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
  /**
   * The marked injection variables the plugin is passed, and the interpreter the host resolves
   * for its `#!/usr/bin/env` script when it gets no `PATH` (as a spawn would resolve it now).
   */
  readonly environment?: PluginEnvironment.Report | undefined
  readonly health: PluginClient.HealthSnapshot
  /**
   * Reads what a spawn verifies: the executable, each `checksums` file, unverified interpreter
   * scripts. It hashes those files when run, so the doctor runs it and a status view does not.
   * None for a remote plugin (nothing is spawned here).
   */
  readonly verification?: Effect.Effect<VerificationPlan.Verification> | undefined
  /** For a plugin served on other machines: its manifest's `[remote]` table. */
  readonly remote?: PluginManifest.RemoteSection | undefined
}

/**
 * How to register a plugin: its id (default the manifest's `name`) and the client's options.
 * For an eager policy without a handshake the default is Paperclip's: `Handshake.paperclip()`
 * (`initialize` with `{manifest, config, instanceInfo, apiVersion}`, answered by
 * `{ok: true, supportedMethods}`; stderr logged at warn) and the graceful stop request is
 * `shutdown`.
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
  /**
   * How remote plugins (manifests with a `[remote]` table) are reached: the broker for their
   * target (the manifest's `servers` or `serverSet`), e.g. `RemotePlugin.natsBrokers()` (servers
   * from `PLUGIN_HOST_NATS_SERVERS[_<SET>]` when the manifest names none). The manager makes one
   * per distinct target and keeps it until it is released (brokers outlive their plugins).
   * Without it, registering a remote plugin fails with `RemoteUnavailable`.
   */
  readonly brokers?: BrokerFactory | undefined
}

/**
 * A registered remote plugin, as the health view watches it: its id, the NATS `service` its
 * instances serve (the manifest's, else its name), the `minInstances` it needs (the manifest's
 * `min_instances`), its manifest's `[remote]` table, and the broker its client calls on (where
 * its instances are discovered). One registration is one object for as long as it lasts, so a
 * re-registration under the same id is a different one.
 *
 * @category models
 */
export interface RemoteRegistration {
  readonly id: string
  readonly service: string
  readonly minInstances: number
  readonly remote: PluginManifest.RemoteSection
  readonly broker: Broker.Broker["Service"]
}

/**
 * Makes the broker of a remote plugin's target (see `RemotePlugin.BrokerFactory`;
 * `RemotePlugin.natsBrokers()` is the NATS one).
 *
 * @category models
 */
export type BrokerFactory = RemotePlugin.BrokerFactory

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
  /** The remote plugins registered now, in registration order. */
  readonly remotes: Effect.Effect<ReadonlyArray<RemoteRegistration>>
  /**
   * The remote plugins registered now, then again after each `register`/`unregister` (or
   * `discover`) that changed them.
   */
  readonly remoteChanges: Stream.Stream<ReadonlyArray<RemoteRegistration>>
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
  /** What a spawn is prepared from, for the doctor's view of the environment; none for a remote plugin. */
  readonly launchInput: PluginEnvironment.LaunchInput | undefined
  readonly remote: RemoteRegistration | undefined
  /** Where the plugin's paths resolve (its manifest's folder) and where it runs. */
  readonly dir: string | undefined
  readonly cwd: string | undefined
}

/**
 * What a manager holds: its plugins by id, the manifests `discover` rejected, the one event
 * stream, and what every client is made with. `entries` changes only under `registryLock` (register,
 * unregister); everything else reads it as it is.
 */
interface ManagerState {
  readonly entries: Map<string, Entry>
  /** The manifests each `discover(dir)` rejected, by `dir`. */
  readonly rejections: Map<string, ReadonlyArray<PluginManifest.DiscoveredRejected>>
  readonly registryLock: Semaphore.Semaphore
  readonly events: PubSub.PubSub<ManagerEvent>
  readonly spawner: ChildProcessSpawner.ChildProcessSpawner["Service"]
  /** Held by a client from spawn to the end of its handshake: the cap on spawns in progress. */
  readonly spawnPermits: Semaphore.Semaphore
  /** The parent of every client's Scope, closing them all at once. */
  readonly clientScopes: Scope.Closeable
  /** The remote entries' registrations, set whenever they change (under `registryLock`). */
  readonly remotes: SubscriptionRef.SubscriptionRef<ReadonlyArray<RemoteRegistration>>
  /** The brokers of remote plugins, by target, and the Scope they live in (closed after the clients'). */
  readonly brokers: {
    readonly factory: BrokerFactory | undefined
    readonly made: Map<string, Broker.Broker["Service"]>
    readonly scope: Scope.Scope
  }
}

/**
 * Fills in the always-on defaults: an eager plugin speaks Paperclip's worker dialect unless
 * told otherwise (`initialize` with `{manifest, config, instanceInfo, apiVersion}`, stderr
 * logged at warn).
 */
const withDefaults = (options: PluginClient.Options | undefined): PluginClient.Options => {
  const policy = options?.policy ?? LifetimePolicy.defaultPolicy
  if (policy.start !== "eager") return { ...options, policy }
  return {
    ...options,
    policy,
    handshake: options?.handshake ?? Handshake.paperclip(),
    shutdownRequest: options?.shutdownRequest ?? "shutdown"
  }
}

/** `NotRegistered`, with the rejected manifest whose file name implies `id`, if there is one. */
const notRegistered = (manager: ManagerState, id: string): ManagerError => {
  for (const rejected of manager.rejections.values()) {
    const found = rejected.find((r) => PluginManifest.stemMatches(PluginManifest.stemOf(r.path), id))
    if (found !== undefined) return new ManagerError({ id, reason: new NotRegistered({ rejected: found.error }) })
  }
  return new ManagerError({ id, reason: new NotRegistered() })
}

const lookup = (manager: ManagerState, id: string): Effect.Effect<Entry, ManagerError> =>
  Effect.suspend(() => {
    const entry = manager.entries.get(id)
    return entry === undefined ? Effect.fail(notRegistered(manager, id)) : Effect.succeed(entry)
  })

const allEntries = (manager: ManagerState): Effect.Effect<Array<Entry>> => Effect.sync(() => [...manager.entries.values()])

/**
 * Forwards a client's events, adding the crashed/restarted pair of the worker dialect: a
 * synchronous observer of the client's events (it runs as the client publishes them, so no
 * fiber or queue per plugin carries them here). The PubSub is unbounded, so the synchronous
 * publish is the same as `PubSub.publish`.
 */
const forwarder = (events: PubSub.PubSub<ManagerEvent>, id: string) => {
  /** Whether the plugin crashed since its last ready: its next ready is a restart. */
  const worker = { crashedSinceReady: false }
  return (event: PluginClient.PluginEvent): void => {
    PubSub.publishUnsafe(events, { _tag: "Plugin", id, event })
    switch (event._tag) {
      case "Crash":
        worker.crashedSinceReady = true
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
        if (!worker.crashedSinceReady) return
        worker.crashedSinceReady = false
        PubSub.publishUnsafe(events, { _tag: "WorkerRestarted", id, pid: event.pid })
        return
    }
  }
}

/**
 * Makes the client of a new entry in a Scope of its own: its events forwarded to the manager's
 * stream (then to the caller's `onEvent`), its spawns under the manager's cap.
 */
const makeEntry = Effect.fnUntraced(function*(
  manager: ManagerState,
  id: string,
  source: PluginClient.PluginSource,
  options: PluginClient.Options
) {
  const remote = remoteOf(source)
  if (remote !== undefined) return yield* makeRemoteEntry(manager, id, source, remote, options)
  const resolved = withDefaults(options)
  const clientScope = yield* Scope.fork(manager.clientScopes, "sequential")
  // The caller's `onEvent` (if any) listens as usual; the manager's stream observes the events
  // as they are published.
  const client = yield* PluginClient.make(source, resolved).pipe(
    Scope.provide(clientScope),
    Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, manager.spawner),
    // The manager starts eager plugins itself (`startAll`), a few at a time.
    Effect.provideService(ManagedClient.ManagedClient, {
      spawnPermits: manager.spawnPermits,
      autoStart: false,
      observe: forwarder(manager.events, id)
    })
  )
  // What the plugin is passed: allow-listed, explicit, and the framing the host tells it of.
  const framing = source.framing ?? resolved.policy?.framing
  const envVarNames = [...new Set([
    ...(source.allowedEnvVars ?? []),
    ...Object.keys(resolved.env ?? {}),
    ...(framing === "content-length" ? [Protocol.framingVariable] : [])
  ])]
  const entry: Entry = {
    id,
    source,
    client,
    scope: clientScope,
    eager: resolved.policy?.start === "eager",
    envVarNames,
    launchInput: launchInputOf(source, resolved),
    remote: undefined,
    dir: resolved.manifestDir ?? source.location?.dir,
    cwd: resolved.cwd
  }
  return entry
})

/** The `[remote]` table of a manifest, if the plugin is served on other machines. */
const remoteOf = (source: PluginClient.PluginSource): PluginManifest.RemoteSection | undefined =>
  "remote" in source && source.remote instanceof PluginManifest.RemoteSection ? source.remote : undefined

/** The broker for a target: made once per distinct target, in the brokers' Scope. */
const brokerFor = (manager: ManagerState, id: string, target: RemotePlugin.Target) =>
  Effect.suspend(() => {
    const { factory, made, scope } = manager.brokers
    if (factory === undefined) {
      return Effect.fail(new ManagerError({ id, reason: new RemoteUnavailable({ detail: "the manager has no brokers (ManagerOptions.brokers)" }) }))
    }
    const key = JSON.stringify([target.servers ?? null, target.serverSet ?? null])
    const known = made.get(key)
    if (known !== undefined) return Effect.succeed(known)
    return factory(target).pipe(
      Scope.provide(scope),
      Effect.tap((broker) => Effect.sync(() => made.set(key, broker))),
      Effect.mapError((error) => new ManagerError({ id, reason: new RemoteUnavailable({ detail: error.message }) }))
    )
  })

/**
 * Makes the client of a remote plugin in a Scope of its own: a `RemotePlugin` on the broker of
 * its servers, its events forwarded like a local plugin's.
 */
const makeRemoteEntry = Effect.fnUntraced(function*(
  manager: ManagerState,
  id: string,
  source: PluginClient.PluginSource,
  remote: PluginManifest.RemoteSection,
  options: PluginClient.Options
) {
  const broker = yield* brokerFor(manager, id, { servers: remote.servers, serverSet: remote.serverSet })
  const forward = forwarder(manager.events, id)
  const userOnEvent = options.onEvent
  const clientScope = yield* Scope.fork(manager.clientScopes, "sequential")
  const client = yield* RemotePlugin.make(id, {
    subjectPrefix: remote.subjectPrefix,
    service: remote.service ?? source.name,
    idempotent: remote.idempotent,
    policy: options.policy,
    hostHandlers: options.hostHandlers,
    onNotification: options.onNotification,
    onStreamNotification: options.onStreamNotification,
    onEvent: (event) => userOnEvent === undefined ? Effect.sync(() => forward(event)) : Effect.andThen(Effect.sync(() => forward(event)), userOnEvent(event))
  }).pipe(
    Scope.provide(clientScope),
    Effect.provideService(Broker.Broker, broker),
    Effect.mapError((error) => new ManagerError({ id, reason: new RemoteUnavailable({ detail: error.message }) }))
  )
  const entry: Entry = {
    id,
    source,
    client,
    scope: clientScope,
    eager: false,
    envVarNames: [],
    launchInput: undefined,
    remote: { id, service: remote.service ?? source.name, minInstances: remote.minInstances, remote, broker },
    dir: source.location?.dir,
    cwd: undefined
  }
  return entry
})

/** What a spawn of `source` is prepared from: its executable resolved as the verifier does, its environment. */
const launchInputOf = (source: PluginClient.PluginSource, options: PluginClient.Options): PluginEnvironment.LaunchInput => {
  const dir = options.manifestDir ?? source.location?.dir
  return {
    executable: dir === undefined ? source.executable : nodePath.resolve(dir, source.executable),
    args: source.args,
    cwd: options.cwd,
    allowedEnvVars: source.allowedEnvVars,
    unsafeEnvVars: PluginClient.unsafeEnvVarsOf(source, options),
    env: options.env,
    hostEnv: options.hostEnv
  }
}

const closeEntry = (entry: Entry) => entry.client.shutdown.pipe(Effect.andThen(Scope.close(entry.scope, Exit.void)))

/** Registers under the registry's lock; a replaced (stopped) entry is closed after it. */
const register = (
  manager: ManagerState,
  source: PluginClient.PluginSource,
  registerOptions: RegisterOptions | undefined
): Effect.Effect<PluginClient.PluginClient, ManagerError> =>
  manager.registryLock.withPermits(1)(
    Effect.gen(function*() {
      const { id = source.name, ...options } = registerOptions ?? {}
      const existing = manager.entries.get(id)
      if (existing !== undefined) {
        const state = yield* existing.client.state
        if (state._tag !== "Stopped") return yield* new ManagerError({ id, reason: new AlreadyRegistered() })
        manager.entries.delete(id)
      }
      const entry = yield* makeEntry(manager, id, source, options)
      manager.entries.set(id, entry)
      if (entry.remote !== undefined || existing?.remote !== undefined) yield* publishRemotes(manager)
      return { client: entry.client, replaced: existing }
    })
  ).pipe(
    Effect.tap(({ replaced }) => replaced === undefined ? Effect.void : closeEntry(replaced)),
    Effect.map(({ client }) => client)
  )

/** The remote entries' registrations, in registration order. */
const remotesOf = (manager: ManagerState): Array<RemoteRegistration> =>
  [...manager.entries.values()].flatMap((entry) => entry.remote === undefined ? [] : [entry.remote])

/** Publishes the remote registrations after a change of them (called under `registryLock`). */
const publishRemotes = (manager: ManagerState): Effect.Effect<void> => SubscriptionRef.set(manager.remotes, remotesOf(manager))

/** Forgets the id under the registry's lock, then stops its plugin outside it. */
const unregister = (manager: ManagerState, id: string): Effect.Effect<void> =>
  manager.registryLock.withPermits(1)(
    Effect.suspend(() => {
      const entry = manager.entries.get(id)
      manager.entries.delete(id)
      return entry?.remote === undefined ? Effect.succeed(entry) : Effect.as(publishRemotes(manager), entry)
    })
  ).pipe(Effect.flatMap((entry) => entry === undefined ? Effect.void : closeEntry(entry)))

/** Runs `f` for every entry at once, logging (never raising) its failures as `what … failed`. */
const forEveryEntry = (
  entries: ReadonlyArray<Entry>,
  what: string,
  f: (entry: Entry) => Effect.Effect<void, PluginClientError.PluginClientError>
): Effect.Effect<void> =>
  Effect.forEach(
    entries,
    (entry) => f(entry).pipe(Effect.catchCause((cause) => Effect.logWarning(`${what} of ${entry.id} failed`, Cause.pretty(cause)))),
    { concurrency: "unbounded", discard: true }
  )

const startAll = (manager: ManagerState): Effect.Effect<void> =>
  Effect.flatMap(allEntries(manager), (list) => forEveryEntry(list.filter((entry) => entry.eager), "start", (entry) => entry.client.start))

const stopAll = (manager: ManagerState): Effect.Effect<void> =>
  Effect.flatMap(allEntries(manager), (list) => forEveryEntry(list, "stop", (entry) => entry.client.stop))

const diagnostics = (manager: ManagerState): Effect.Effect<ReadonlyArray<Diagnostics>> =>
  Effect.flatMap(allEntries(manager), (list) =>
    Effect.forEach(list, (entry) =>
      entry.launchInput === undefined
        ? Effect.map(entry.client.health, (health): Diagnostics => ({
          id: entry.id,
          manifest: entry.source,
          allowedEnvVars: [],
          envVarNames: [],
          checksumDeclared: false,
          health,
          remote: entry.remote?.remote
        }))
        : Effect.zipWith(entry.client.health, PluginEnvironment.describe(entry.launchInput), (health, environment): Diagnostics => ({
          id: entry.id,
          manifest: entry.source,
          allowedEnvVars: entry.source.allowedEnvVars ?? [],
          envVarNames: entry.envVarNames,
          // Declared in `checksum_sha256`, or the executable named in `checksums` (verified in place).
          checksumDeclared: entry.source.checksumSha256 !== undefined || declaresExecutable(entry),
          environment,
          health,
          verification: VerificationPlan.inspect(entry.source, { dir: entry.dir, cwd: nodePath.resolve(entry.cwd ?? ".") })
        }))))

/** Whether the entry's `checksums` name its executable (resolved as a spawn resolves both). */
const declaresExecutable = (entry: Entry): boolean => {
  const checksums = entry.source.checksums
  if (checksums === undefined) return false
  const dir = entry.dir ?? "."
  const executable = nodePath.resolve(dir, entry.source.executable)
  return Object.keys(checksums).some((name) => nodePath.resolve(dir, name) === executable)
}

/** Registers every valid manifest of `dir`, and remembers the rejected ones in place of the last `discover` of `dir`. */
const discover = (
  manager: ManagerState,
  dir: string,
  options: DiscoverOptions | undefined
): Effect.Effect<ReadonlyArray<PluginManifest.Discovered>, PluginManifest.ManifestError, FileSystem.FileSystem | Path.Path> =>
  PluginManifest.discover(dir).pipe(
    Effect.tap((outcomes) => Effect.sync(() => manager.rejections.set(dir, outcomes.flatMap((o) => o._tag === "Valid" ? [] : [o])))),
    Effect.tap((outcomes) =>
      Effect.forEach(outcomes, (outcome) =>
        outcome._tag === "Valid"
          ? register(manager, outcome.manifest, options).pipe(
            Effect.catch((error) => Effect.logWarning(error.message))
          )
          : Effect.logWarning(outcome.error.message), { discard: true })
    )
  )

/**
 * Makes a manager in the current Scope; closing the Scope stops every plugin.
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(managerOptions?: ManagerOptions) {
  const scope = yield* Effect.scope
  // Made before the clients' Scope, so released after it: the plugins stop before their brokers.
  const brokerScope = yield* Scope.fork(scope, "sequential")
  const manager: ManagerState = {
    brokers: { factory: managerOptions?.brokers, made: new Map(), scope: brokerScope },
    spawner: yield* ChildProcessSpawner.ChildProcessSpawner,
    spawnPermits: yield* Semaphore.make(Math.max(1, managerOptions?.maxConcurrentSpawns ?? 8)),
    events: yield* PubSub.unbounded<ManagerEvent>(),
    entries: new Map(),
    remotes: yield* SubscriptionRef.make<ReadonlyArray<RemoteRegistration>>([]),
    rejections: new Map(),
    registryLock: yield* Semaphore.make(1),
    // Every client lives in its own Scope, a child of this one. The manager's own Scope (a
    // layer's, or the caller's) closes its children one after another, so releasing would take
    // the sum of the plugins' stops (each up to drain + grace + kill); this one closes them all
    // at once, so releasing takes only the slowest stop.
    clientScopes: yield* Scope.fork(scope, "parallel")
  }
  // What a host that was killed left running is reaped once per host process, in the background
  // (see Leftovers); simulated processes leave nothing to reap.
  if ((yield* SpawnRegistry.guardsFor(manager.spawner)).registry) yield* Effect.forkIn(Leftovers.reapAtStart, scope)
  return PluginManager.of({
    register: (source, options) => register(manager, source, options),
    unregister: (id) => unregister(manager, id),
    start: (id) =>
      Effect.flatMap(lookup(manager, id), (entry) => entry.client.start).pipe(
        // Kept by the plugin's fibers for as long as it runs: no stack trace (it would point here).
        Effect.withSpan("PluginManager.start", { attributes: { plugin: id } }, { captureStackTrace: false })
      ),
    stop: (id) =>
      Effect.suspend(() => {
        const entry = manager.entries.get(id)
        return entry === undefined ? Effect.void : entry.client.stop
      }),
    get: (id) => Effect.map(lookup(manager, id), (entry) => entry.client),
    isRunning: (id) =>
      Effect.suspend(() => {
        const entry = manager.entries.get(id)
        return entry === undefined ? Effect.succeed(false) : Effect.map(entry.client.state, (s) => s._tag === "Running")
      }),
    ids: Effect.sync(() => [...manager.entries.keys()]),
    call: (id, method, params, options) => Effect.flatMap(lookup(manager, id), (entry) => entry.client.request(method, params, options)),
    notify: (id, method, params) => Effect.flatMap(lookup(manager, id), (entry) => entry.client.notify(method, params)),
    startAll: startAll(manager),
    stopAll: stopAll(manager),
    diagnostics: diagnostics(manager),
    remotes: Effect.sync(() => remotesOf(manager)),
    remoteChanges: SubscriptionRef.changes(manager.remotes),
    events: Stream.fromPubSub(manager.events),
    subscribe: Effect.map(PubSub.subscribe(manager.events), Stream.fromSubscription),
    discover: (dir, options) => discover(manager, dir, options)
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
