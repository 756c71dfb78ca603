/**
 * The poller router: which plugin owns which poller *kind*, and how one tick reaches it.
 *
 * A plugin claims kinds through the `poller` section of its manifest; a kind owned by another
 * plugin is refused (`DuplicateKind`), while re-registering the same plugin replaces its old
 * entry (a hot restart). `tick(kind, …)` runs the owner's lifecycle, never more than its
 * `maxConcurrentTicks` at once (the source system declared that limit but never enforced it):
 *
 * - **ephemeral**: spawn the executable for this tick alone, with the restricted environment
 *   plus nexo's `NEXO_POLLER_EPHEMERAL=1` and `NEXO_POLLER_PLUGIN_ID`, write one request line
 *   (nexo's `{"method":"poll_tick","params":…}`), close stdin, read one reply line within
 *   `tickTimeout`; a timeout or an interruption kills the process group at once; the process is
 *   reaped (bounded) after the reply.
 * - **long-lived over a broker**: a request to `<prefix>.tick` through the {@link Broker}
 *   carrying nexo's `{"method":"poll_tick","params":…}`, with the reply's `result`/`error`
 *   unwrapped (the source system forgot, so errors looked like success).
 * - **long-lived over stdio** (no broker, or no topic prefix): a `poll_tick` request to the
 *   plugin's own {@link PluginClient}, spawned on demand and kept alive by its policy.
 *
 * The `dialect` register option (see {@link Poller.Dialect}) switches the ephemeral and broker
 * wires to this host's earlier one (`"jsonrpc"`: a JSON-RPC request line, `POLLER_*`
 * variables, bare params over the broker); nexo's is the default so that nexo pollers run
 * unchanged, and the worker SDK reads both.
 *
 * Every failure is a {@link Poller.PollerError}: `Config`, `Transient` or `Permanent`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Broker from "./Broker.ts"
import * as Framing from "./Framing.ts"
import * as LifetimePolicy from "./LifetimePolicy.ts"
import * as PluginClient from "./PluginClient.ts"
import type * as PluginClientError from "./PluginClientError.ts"
import type * as PluginManifest from "./PluginManifest.ts"
import * as PluginProcess from "./PluginProcess.ts"
import * as Poller from "./Poller.ts"
import { formatDuration } from "./internal/formatDuration.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * A registered poller plugin: what it owns and how a tick reaches it.
 *
 * @category models
 */
export interface PollerHandle {
  readonly plugin: string
  readonly kinds: ReadonlyArray<string>
  readonly lifecycle: "ephemeral" | "long_lived"
  readonly maxConcurrentTicks: number
  readonly tickTimeout: Duration.Duration
  readonly brokerTopicPrefix: string | undefined
  /** Runs one tick (the router adds the concurrency limit). */
  readonly tick: (request: Poller.TickRequest) => Effect.Effect<Poller.TickAck, Poller.PollerError>
}

/**
 * How to register a manifest's plugin: its id (default the manifest's `name`; the owner named
 * in `DuplicateKind` and the key of `unregister`), what to run (`env`, `cwd`, `hostEnv`,
 * `manifestDir` — the client's {@link PluginClient.RunOptions}) and, for a long-lived plugin
 * served over stdio, its lifetime `policy` (default `LifetimePolicy.defaultPolicy`); an
 * ephemeral plugin takes the policy's `containment` only, `"cgroup"` by default like every other
 * plugin. That default is deliberate: what a group costs a tick is a wait in the plugin's own
 * start (the kernel's grace period, 5–16 ms, none where cgroup2 has `favordynmods`), not host
 * work, while `"process-tree"` walks all of `/proc` as each tick's process is stopped (host CPU
 * that grows with the machine's process count: ~4 ms a tick against ~0.5 ms at 400 processes)
 * and lets a poller that double-forks a `setsid` child escape. A prebuilt {@link PollerHandle}
 * ignores them.
 *
 * @category models
 */
export interface RegisterOptions extends PluginClient.RunOptions, Pick<PluginClient.ProtocolOptions, "policy"> {
  readonly id?: string | undefined
  /** How ephemeral and broker ticks travel. Default `Poller.defaultDialect` (`"nexo"`). */
  readonly dialect?: Poller.Dialect | undefined
}

/**
 * What a tick is about.
 *
 * @category models
 */
export interface TickInput {
  readonly jobId: string
  readonly agentId: string
  readonly config: unknown
  readonly cursor?: Uint8Array | undefined
  readonly now: Date
  readonly intervalHint: Duration.Input
}

/**
 * The router service.
 *
 * @category models
 */
export class PollerRouter extends Context.Service<PollerRouter, {
  /**
   * Registers a manifest with a `poller` section (under `options.id`, default its `name`), or a
   * prebuilt handle (under its `plugin`). Registering an id again replaces its entry.
   */
  readonly register: (
    plugin: PluginManifest.PluginManifest | PollerHandle,
    options?: RegisterOptions
  ) => Effect.Effect<void, Poller.PollerRouteError>
  readonly unregister: (plugin: string) => Effect.Effect<void>
  readonly handleForKind: (kind: string) => Effect.Effect<Option.Option<PollerHandle>>
  readonly handlesForPlugin: (plugin: string) => Effect.Effect<ReadonlyArray<PollerHandle>>
  /** Number of kinds routed. */
  readonly size: Effect.Effect<number>
  readonly tick: (kind: string, input: TickInput) => Effect.Effect<Poller.TickAck, Poller.PollerError>
}>()("effect-plugin-host/PollerRouter") {}

// ---------------------------------------------------------------------------------------------
// lifecycles
// ---------------------------------------------------------------------------------------------

/** How long a one-shot plugin may take to exit on its own after replying. */
const reapAfterReply = Duration.seconds(1)
/** Grace between SIGTERM and SIGKILL when a tick is cut short: the deadline has passed. */
const cutShortGrace = Duration.millis(100)

const transient = (detail: string) => new Poller.Transient({ detail })

const withStderr = (detail: string, stderr: string) => {
  const tail = stderr.trim()
  return tail.length === 0 ? detail : `${detail}; stderr: ${tail.slice(-1_000)}`
}

const isLine = (frame: Framing.Frame): frame is string => typeof frame === "string"

/**
 * The first line the process writes to stdout, or `None` once stdout ends (or fails) without
 * one; an over-long line is skipped. Read in the launcher's callbacks where it has them (the
 * Node launcher: no stream, queue or fiber per tick), else from `stdout`.
 */
const firstLine = (proc: PluginProcess.PluginProcess): Effect.Effect<Option.Option<string>, never, Scope.Scope> => {
  const listen = proc.listenStdout
  if (listen === undefined) {
    return proc.stdout.pipe(Framing.frames(), Stream.filter(isLine), Stream.runHead, Effect.orElseSucceed(Option.none))
  }
  return Effect.suspend(() => {
    const first = Deferred.makeUnsafe<Option.Option<string>>()
    const lines = Framing.makeLineDecoder()
    const onFrame = (frame: Framing.Frame) => {
      if (isLine(frame)) Deferred.doneUnsafe(first, Exit.succeed(Option.some(frame)))
    }
    return listen({
      onChunk: (chunk) => {
        if (!Deferred.isDoneUnsafe(first)) lines.push(chunk, onFrame)
      },
      onEnd: () => {
        if (!Deferred.isDoneUnsafe(first)) lines.end(onFrame)
        Deferred.doneUnsafe(first, Exit.succeed(Option.none()))
      }
    }).pipe(Effect.andThen(Deferred.await(first)))
  })
}

/**
 * The ephemeral lifecycle: one process per tick.
 */
const ephemeralTick = (
  id: string,
  manifest: PluginManifest.PluginManifest,
  section: PluginManifest.PollerSection,
  options: RegisterOptions | undefined,
  spawner: ChildProcessSpawner.ChildProcessSpawner["Service"],
  verify: (source: PluginClient.PluginSource) => Effect.Effect<string, PluginClientError.Reason>
) =>
(request: Poller.TickRequest): Effect.Effect<Poller.TickAck, Poller.PollerErrorReason> =>
  Effect.scoped(
    Effect.gen(function*() {
      const executable = yield* verify(manifest).pipe(Effect.mapError((reason) => transient(reason.message)))
      const proc = yield* PluginProcess.make({
        name: id,
        executable,
        args: manifest.args,
        allowedEnvVars: manifest.allowedEnvVars,
        unsafeEnvVars: PluginClient.unsafeEnvVarsOf(manifest, options),
        env: { ...options?.env, ...Poller.ephemeralEnv(options?.dialect ?? Poller.defaultDialect, id) },
        cwd: options?.cwd,
        hostEnv: options?.hostEnv
      }, {
        shutdownGrace: cutShortGrace,
        drainTimeout: cutShortGrace,
        stderrLogLevel: options?.stderrLogLevel,
        containment: options?.policy?.containment
      }).pipe(
        Effect.mapError((error) => transient(error.reason.message))
      )
      proc.writeLine(Poller.tickLine(request, options?.dialect ?? Poller.defaultDialect))
      yield* proc.endInput
      const line = yield* firstLine(proc).pipe(Effect.timeoutOption(section.tickTimeout))
      if (Option.isNone(line)) {
        yield* proc.stop()
        return yield* Effect.fail(transient(`tick timed out after ${formatDuration(section.tickTimeout)}`))
      }
      if (Option.isNone(line.value)) {
        const exit = yield* proc.exit.pipe(Effect.timeoutOption(reapAfterReply))
        const how = Option.match(exit, {
          onNone: () => "closed stdout without replying",
          onSome: (e) => e.signal !== null ? `was killed by ${e.signal} before replying` : `exited with code ${e.code} before replying`
        })
        return yield* Effect.fail(transient(withStderr(`empty reply: the plugin ${how}`, yield* proc.stderrExcerpt)))
      }
      const ack = Poller.decodeReplyLine(line.value.value)
      // Reaped here, bounded: a one-shot plugin exits once it has replied and stdin is closed.
      yield* proc.exit.pipe(Effect.timeoutOption(reapAfterReply))
      if (Result.isFailure(ack)) {
        const reason = ack.failure.reason
        return yield* Effect.fail(reason._tag === "Transient" ? transient(withStderr(reason.detail, yield* proc.stderrExcerpt)) : reason)
      }
      return ack.success
    })
  ).pipe(Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, spawner))

/**
 * The long-lived lifecycle over the broker.
 */
const brokerTick = (
  prefix: string,
  section: PluginManifest.PollerSection,
  broker: Broker.Broker["Service"],
  dialect: Poller.Dialect
) =>
(request: Poller.TickRequest): Effect.Effect<Poller.TickAck, Poller.PollerErrorReason> =>
  Broker.requestJson(`${prefix}.tick`, Poller.brokerPayload(request, dialect), section.tickTimeout).pipe(
    Effect.provideService(Broker.Broker, broker),
    Effect.mapError((error) => transient(error.message)),
    Effect.flatMap((reply) => {
      const ack = Poller.decodeReplyEnvelope(reply)
      return Result.isSuccess(ack) ? Effect.succeed(ack.success) : Effect.fail(ack.failure.reason)
    })
  )

/**
 * The long-lived lifecycle over the plugin's own stdio connection.
 */
const clientTick = (client: PluginClient.PluginClient, section: PluginManifest.PollerSection) =>
(request: Poller.TickRequest): Effect.Effect<Poller.TickAck, Poller.PollerErrorReason> =>
  client.request(Poller.method, Poller.encodeTickParams(request), { timeout: section.tickTimeout }).pipe(
    Effect.mapError((error) => {
      const reason = error.reason
      return reason._tag === "PluginError"
        ? Poller.classifyError({ code: reason.code, message: reason.message, data: reason.data })
        : transient(error.message)
    }),
    Effect.flatMap((result) => {
      const ack = Poller.decodeTickReply(result)
      return Result.isSuccess(ack) ? Effect.succeed(ack.success) : Effect.fail(ack.failure.reason)
    })
  )

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

interface Entry {
  readonly handle: PollerHandle
  readonly permits: Semaphore.Semaphore
  /** Resources of the registration (a long-lived plugin's client). */
  readonly scope: Scope.Closeable
}

const isHandle = (value: PluginManifest.PluginManifest | PollerHandle): value is PollerHandle => "tick" in value

/**
 * Makes a router in the current Scope. A `Broker` in the context is used for long-lived plugins
 * that declare a topic prefix.
 *
 * @category constructors
 */
export const make = Effect.gen(function*() {
  const routerScope = yield* Effect.scope
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
  const broker = yield* Effect.serviceOption(Broker.Broker)
  const byPlugin = new Map<string, Entry>()
  const byKind = new Map<string, string>()
  const registry = yield* Semaphore.make(1)

  const invalid = (plugin: string, detail: string) =>
    new Poller.PollerRouteError({ reason: new Poller.InvalidRegistration({ plugin, detail }) })

  const handleFor = (
    id: string,
    manifest: PluginManifest.PluginManifest,
    options: RegisterOptions | undefined,
    scope: Scope.Closeable
  ) =>
    Effect.gen(function*() {
      const section = manifest.poller
      if (section === undefined) return yield* Effect.fail(invalid(id, "the manifest has no [poller] section"))
      const common = {
        plugin: id,
        kinds: section.kinds,
        lifecycle: section.lifecycle,
        maxConcurrentTicks: section.maxConcurrentTicks,
        tickTimeout: section.tickTimeout,
        brokerTopicPrefix: section.brokerTopicPrefix
      }
      const context = { plugin: id }
      const tagged = (tick: (request: Poller.TickRequest) => Effect.Effect<Poller.TickAck, Poller.PollerErrorReason>) =>
      (request: Poller.TickRequest) =>
        tick(request).pipe(Effect.mapError((reason) => Poller.PollerError.with(reason, { ...context, kind: request.kind })))
      if (section.lifecycle === "ephemeral") {
        const verify = yield* PluginClient.verifier(options?.manifestDir)
        return { ...common, tick: tagged(ephemeralTick(id, manifest, section, options, spawner, verify)) } satisfies PollerHandle
      }
      if (section.brokerTopicPrefix !== undefined && Option.isSome(broker)) {
        return { ...common, tick: tagged(brokerTick(section.brokerTopicPrefix, section, broker.value, options?.dialect ?? Poller.defaultDialect)) } satisfies PollerHandle
      }
      const client = yield* PluginClient.make(manifest, {
        policy: options?.policy ?? LifetimePolicy.defaultPolicy,
        env: options?.env,
        cwd: options?.cwd,
        hostEnv: options?.hostEnv,
        manifestDir: options?.manifestDir,
        stderrLogLevel: options?.stderrLogLevel
      }).pipe(Scope.provide(scope), Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, spawner))
      return { ...common, tick: tagged(clientTick(client, section)) } satisfies PollerHandle
    })

  const register: PollerRouter["Service"]["register"] = (plugin, options) =>
    registry.withPermits(1)(
      Effect.gen(function*() {
        const name = isHandle(plugin) ? plugin.plugin : options?.id ?? plugin.name
        const kinds = isHandle(plugin) ? plugin.kinds : plugin.poller?.kinds ?? []
        for (const kind of kinds) {
          const owner = byKind.get(kind)
          if (owner !== undefined && owner !== name) {
            return yield* new Poller.PollerRouteError({
              reason: new Poller.DuplicateKind({ kind, existingPlugin: owner, newPlugin: name })
            })
          }
        }
        const scope = yield* Scope.fork(routerScope, "sequential")
        const handle = isHandle(plugin)
          ? plugin
          : yield* handleFor(name, plugin, options, scope).pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
        const previous = byPlugin.get(name)
        if (previous !== undefined) yield* remove(name, previous)
        const permits = yield* Semaphore.make(Math.max(1, handle.maxConcurrentTicks))
        byPlugin.set(name, { handle, permits, scope })
        for (const kind of handle.kinds) byKind.set(kind, name)
      })
    )

  const remove = (name: string, entry: Entry) =>
    Effect.suspend(() => {
      byPlugin.delete(name)
      for (const kind of entry.handle.kinds) if (byKind.get(kind) === name) byKind.delete(kind)
      return Scope.close(entry.scope, Exit.void)
    })

  const unregister: PollerRouter["Service"]["unregister"] = (name) =>
    registry.withPermits(1)(
      Effect.suspend(() => {
        const entry = byPlugin.get(name)
        return entry === undefined ? Effect.void : remove(name, entry)
      })
    )

  const entryForKind = (kind: string): Entry | undefined => {
    const owner = byKind.get(kind)
    return owner === undefined ? undefined : byPlugin.get(owner)
  }

  const tick: PollerRouter["Service"]["tick"] = (kind, input) =>
    Effect.suspend(() => {
      const entry = entryForKind(kind)
      if (entry === undefined) {
        return Effect.fail(Poller.PollerError.with(new Poller.Config({ detail: `no plugin handles poller kind \`${kind}\`` }), { kind }))
      }
      const request: Poller.TickRequest = {
        kind,
        jobId: input.jobId,
        agentId: input.agentId,
        cursor: input.cursor,
        config: input.config,
        now: input.now,
        intervalHint: Duration.fromInputUnsafe(input.intervalHint)
      }
      // Validates what the wire cannot carry (an invalid date, a negative interval, a config JSON
      // cannot hold) as a typed error before any lifecycle runs.
      const checked = Poller.tickRequestLineResult(request)
      if (Result.isFailure(checked)) return Effect.fail(checked.failure.withContext({ plugin: entry.handle.plugin, kind }))
      return entry.permits.withPermits(1)(entry.handle.tick(request))
    }).pipe(Effect.withSpan("PollerRouter.tick", { attributes: { "poller.kind": kind } }))

  return PollerRouter.of({
    register,
    unregister,
    handleForKind: (kind) => Effect.sync(() => Option.fromUndefinedOr(entryForKind(kind)?.handle)),
    handlesForPlugin: (name) =>
      Effect.sync(() => {
        const entry = byPlugin.get(name)
        return entry === undefined ? [] : [entry.handle]
      }),
    size: Effect.sync(() => byKind.size),
    tick
  })
})

/**
 * The router as a layer. It has no options, so it is a value (a layer with options is a
 * function, like `PluginManager.layer(options?)`). Needs a `ChildProcessSpawner`; uses a
 * `Broker` when one is provided.
 *
 * @category layers
 */
export const layer: Layer.Layer<PollerRouter, never, ChildProcessSpawner.ChildProcessSpawner> = Layer.effect(PollerRouter, make)
