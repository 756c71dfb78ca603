/**
 * Health of plugin groups: a service over the {@link PluginManager} that applies the group health
 * rules of `GroupHealth` to the live state of plugin processes, probes running plugins, discovers
 * their tools, and writes the doctor's `DoctorReport`.
 *
 * A *group* is a named set of plugin ids (one product feature served by several plugin
 * processes); each plugin is a *server* of its group. A check reads every server's live
 * `PluginState` and folds them with the claw-code rules (`GroupHealth.aggregate`). What the
 * service learns beyond the live state (a failed periodic probe, a failed `startup`, the tools
 * discovery read) is one state map keyed by plugin id, changed only by atomic updates.
 * A check also places the group in its lifecycle (`GroupHealth.lifecycleOf`: `Starting`,
 * `Healthy`, `Degraded`, `Failed`, `ShuttingDown`, `Stopped`), with `startup` and `shutdown`
 * holding the group in `Starting` / `ShuttingDown` while they run. Lifecycle and probe
 * transitions are published as {@link HealthEvent}s, among them {@link GroupStateChanged}
 * whenever the service sees a group in a state other than the one it saw last.
 *
 * Remote plugins (served over NATS by any number of instances, on any machines) are watched
 * beside the groups: {@link PluginHealth} `watchRemote` registers one (`{ name, service,
 * minInstances }` and the `Broker` to ask) for as long as a Scope lasts, optionally polled on a
 * `Schedule`; each check discovers its instances (`$SRV.PING`/`INFO`/`STATS`) and judges them
 * with `GroupHealth.remoteCheck` (degraded below `minInstances`, failed at zero). The
 * manager's own remote plugins (manifests with a `[remote]` table) are watched this way without
 * being asked, for as long as they are registered: under their id, with their manifest's
 * `service` and `min_instances`, on the broker their client calls on, discovered every
 * `remote.poll` (default 10 s). A remote plugin's state changes are published as
 * `GroupStateChanged` (its name is the group's), its instances coming and going as
 * {@link InstancesChanged}; the doctor lists it with its instances. As a server of a group (and
 * in the doctor's plugin rows) a running remote plugin is as its instances were last found:
 * `Degraded` below its minimum, `Failed` with none.
 *
 * This module owns only the health view: starting, stopping and restarting stay with the
 * manager, and probes never spawn a plugin that is not running. The health models and rules
 * (`GroupHealth`) and the doctor's report (`DoctorReport`) live in their own modules; this one
 * re-exports the names it has always exported, so `PluginHealth.aggregate` or
 * `PluginHealth.render` keep working.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Broker from "./Broker.ts"
import { DoctorReport, GroupReport, PluginDiagnosis } from "./DoctorReport.ts"
import * as GroupHealth from "./GroupHealth.ts"
import * as DiscoveryAnswer from "./internal/discoveryAnswer.ts"
import { formatDuration } from "./internal/formatDuration.ts"
import * as Cgroup from "./internal/cgroup.ts"
import * as HealthState from "./internal/healthState.ts"
import * as ProcessTree from "./internal/processTree.ts"
import * as RemoteCheck from "./internal/remoteCheck.ts"
import * as RemoteFollower from "./internal/remoteFollower.ts"
import * as JsonRpc from "./JsonRpc.ts"
import * as Leftovers from "./Leftovers.ts"
import type * as PluginClient from "./PluginClient.ts"
import type * as PluginClientError from "./PluginClientError.ts"
import * as PluginManager from "./PluginManager.ts"

// ---------------------------------------------------------------------------------------------
// models and the doctor's report, re-exported from their modules
// ---------------------------------------------------------------------------------------------

export { ChecksumStatus, DoctorReport, GroupReport, PluginDiagnosis, render } from "./DoctorReport.ts"
export {
  aggregate,
  DegradedMode,
  degradedMode,
  DiscoveryResult,
  Lifecycle,
  lifecycleOf,
  PluginHealthcheck,
  RemoteHealthcheck,
  RemoteInstance,
  ResourceInfo,
  ServerDiscovery,
  ServerHealth,
  serverHealthOf,
  Status,
  ToolInfo
} from "./GroupHealth.ts"
export type { MemberState, Phase, ServerOverlay } from "./GroupHealth.ts"

// ---------------------------------------------------------------------------------------------
// events
// ---------------------------------------------------------------------------------------------

/**
 * `startup` read the group's configuration and is about to start its plugins.
 *
 * @category events
 */
export const ConfigValidated = Schema.TaggedStruct("ConfigValidated", {
  group: Schema.String,
  plugins: Schema.Array(Schema.String)
})
/** @category events */
export type ConfigValidated = typeof ConfigValidated.Type

/**
 * `startup` ended with every server healthy.
 *
 * @category events
 */
export const StartupHealthy = Schema.TaggedStruct("StartupHealthy", { group: Schema.String, check: GroupHealth.PluginHealthcheck })
/** @category events */
export type StartupHealthy = typeof StartupHealthy.Type

/**
 * `startup` ended with some servers failed or degraded.
 *
 * @category events
 */
export const StartupDegraded = Schema.TaggedStruct("StartupDegraded", { group: Schema.String, check: GroupHealth.PluginHealthcheck })
/** @category events */
export type StartupDegraded = typeof StartupDegraded.Type

/**
 * `startup` ended with no server up.
 *
 * @category events
 */
export const StartupFailed = Schema.TaggedStruct("StartupFailed", { group: Schema.String, check: GroupHealth.PluginHealthcheck })
/** @category events */
export type StartupFailed = typeof StartupFailed.Type

/**
 * `shutdown` stopped every plugin of the group.
 *
 * @category events
 */
export const Shutdown = Schema.TaggedStruct("Shutdown", { group: Schema.String })
/** @category events */
export type Shutdown = typeof Shutdown.Type

/**
 * The service saw a group in another lifecycle state than the one it saw last (`from` is absent
 * the first time it looks): at the start and end of a `startup` or `shutdown`, and at any check
 * (`check`, `checkAll`, `degradedMode`, `doctor`) that finds the group changed; a change no one
 * checks is published at the next check. `message` is the check's.
 *
 * @category events
 */
export const GroupStateChanged = Schema.TaggedStruct("GroupStateChanged", {
  group: Schema.String,
  from: Schema.optionalKey(GroupHealth.Lifecycle),
  to: GroupHealth.Lifecycle,
  message: Schema.String
})
/** @category events */
export type GroupStateChanged = typeof GroupStateChanged.Type

/**
 * A running plugin failed its probe (error or no answer in time) after passing it before.
 *
 * @category events
 */
export const HealthDegraded = Schema.TaggedStruct("HealthDegraded", {
  plugin: Schema.String,
  groups: Schema.Array(Schema.String),
  error: Schema.String
})
/** @category events */
export type HealthDegraded = typeof HealthDegraded.Type

/**
 * A plugin marked degraded by a probe answered its probe again.
 *
 * @category events
 */
export const HealthRecovered = Schema.TaggedStruct("HealthRecovered", {
  plugin: Schema.String,
  groups: Schema.Array(Schema.String)
})
/** @category events */
export type HealthRecovered = typeof HealthRecovered.Type

/**
 * A check of a remote plugin found other instances than the check before it: the ids that
 * `joined` and `left`, and how many answer now (the first check reports every instance found
 * as joined).
 *
 * @category events
 */
export const InstancesChanged = Schema.TaggedStruct("InstancesChanged", {
  plugin: Schema.String,
  service: Schema.String,
  joined: Schema.Array(Schema.String),
  left: Schema.Array(Schema.String),
  instances: Schema.Int
})
/** @category events */
export type InstancesChanged = typeof InstancesChanged.Type

/**
 * Everything the health service publishes.
 *
 * @category events
 */
export const HealthEvent = Schema.Union([
  ConfigValidated,
  StartupHealthy,
  StartupDegraded,
  StartupFailed,
  Shutdown,
  GroupStateChanged,
  HealthDegraded,
  HealthRecovered,
  InstancesChanged
])
/** @category events */
export type HealthEvent = typeof HealthEvent.Type

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

/**
 * The health configuration is invalid (the layer fails to build).
 *
 * @category errors
 */
export class HealthConfigError extends Schema.TaggedError<HealthConfigError>()("HealthConfigError", {
  field: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `invalid health config: \`${this.field}\` ${this.detail}`
  }
}

/**
 * No group has this name.
 *
 * @category errors
 */
export class UnknownGroup extends Schema.TaggedError<UnknownGroup>()("UnknownGroup", {
  group: Schema.String,
  known: Schema.Array(Schema.String)
}) {
  override get message() {
    return `unknown plugin group \`${this.group}\` (known: ${this.known.length === 0 ? "none" : this.known.join(", ")})`
  }
}

/**
 * No remote plugin of this name is watched.
 *
 * @category errors
 */
export class UnknownRemote extends Schema.TaggedError<UnknownRemote>()("UnknownRemote", {
  name: Schema.String,
  watched: Schema.Array(Schema.String)
}) {
  override get message() {
    return `no remote plugin \`${this.name}\` is watched (watched: ${this.watched.length === 0 ? "none" : this.watched.join(", ")})`
  }
}

// ---------------------------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------------------------

/**
 * What to watch and how. `groups` maps a group name to its plugin ids (as registered with the
 * manager). `discovery` names the methods that list tools and resources (without `tools`, a
 * server's tools are the methods its handshake announced), for every server or, in `plugins`,
 * for one (a plugin's manifest may declare its own: `PluginManifest.DiscoverySection`). `probe` turns on periodic probes of
 * running plugins.
 *
 * @category models
 */
export interface HealthConfig {
  readonly groups: Readonly<Record<string, ReadonlyArray<string>>>
  readonly discovery?: {
    /** Method answering `{tools: [{name}…]}` or `[name…]`, e.g. `"tools/list"`. */
    readonly tools?: string | undefined
    /** Method answering `{resources: [{uri|name}…]}` or `[uri…]`, e.g. `"resources/list"`. */
    readonly resources?: string | undefined
    /** The methods of some plugins, by id, instead of `tools` and `resources`. */
    readonly plugins?: Readonly<Record<string, DiscoveryMethods>> | undefined
    /** Time each server gets to answer (spawn included). Default 10 s. */
    readonly timeout?: Duration.Input | undefined
  } | undefined
  readonly probe?: {
    /** Request sent to each running plugin. Default `"health"`. */
    readonly method?: string | undefined
    readonly interval: Duration.Input
    /** Time a probe may take before it counts as failed. Default 5 s. */
    readonly timeout?: Duration.Input | undefined
  } | undefined
  /** Stderr lines kept per plugin in the doctor report. Default 5. */
  readonly stderrTailLines?: number | undefined
  /**
   * How the manager's remote plugins are watched (each from its registration on): discovery of
   * their instances at once, then every `poll` (default 10 s: an instance lost is seen within
   * about 10 s, for three small requests per instance each time), each listening `wait` for
   * answers (default 1 s).
   */
  readonly remote?: {
    readonly poll?: Duration.Input | undefined
    readonly wait?: Duration.Input | undefined
  } | undefined
}

/**
 * The methods listing one server's tools and resources (see {@link HealthConfig}).
 *
 * @category models
 */
export interface DiscoveryMethods {
  readonly tools?: string | undefined
  readonly resources?: string | undefined
}

interface Resolved {
  readonly groups: ReadonlyArray<readonly [string, ReadonlyArray<string>]>
  readonly discovery: {
    readonly tools: string | undefined
    readonly resources: string | undefined
    readonly plugins: ReadonlyMap<string, DiscoveryMethods>
    readonly timeout: Duration.Duration
  }
  readonly probe: { readonly method: string; readonly interval: Duration.Duration; readonly timeout: Duration.Duration }
  readonly probing: boolean
  readonly stderrTailLines: number
  readonly remote: { readonly poll: Duration.Duration; readonly wait: Duration.Duration }
}

const defaultDiscoveryTimeout = Duration.seconds(10)
const defaultRemotePoll = Duration.seconds(10)
const defaultRemoteWait = Duration.seconds(1)
const defaultProbeTimeout = Duration.seconds(5)

const positiveDuration = (field: string, input: Duration.Input | undefined, fallback: Duration.Duration) =>
  Effect.suspend(() => {
    if (input === undefined) return Effect.succeed(fallback)
    const decoded = Duration.fromInput(input)
    if (Option.isSome(decoded) && Duration.isFinite(decoded.value) && Duration.isPositive(decoded.value)) {
      return Effect.succeed(decoded.value)
    }
    return Effect.fail(new HealthConfigError({ field, detail: `must be a positive, finite duration (got ${String(input)})` }))
  })

const optionalMethod = (field: string, method: string | undefined) =>
  method === undefined || method.trim() !== ""
    ? Effect.succeed(method)
    : Effect.fail(new HealthConfigError({ field, detail: "must not be empty" }))

/** The per-plugin discovery methods, each checked like the service-wide ones. */
const pluginDiscovery = (plugins: Readonly<Record<string, DiscoveryMethods>> | undefined) =>
  Effect.forEach(Object.entries(plugins ?? {}), ([id, methods]) =>
    Effect.all({
      tools: optionalMethod(`discovery.plugins.${id}.tools`, methods.tools),
      resources: optionalMethod(`discovery.plugins.${id}.resources`, methods.resources)
    }).pipe(Effect.map((checked) => [id, checked] as const))).pipe(Effect.map((entries) => new Map(entries)))

/** Checks the configuration once, up front, so a typo fails the layer instead of every check. */
const resolveConfig = (config: HealthConfig): Effect.Effect<Resolved, HealthConfigError> =>
  Effect.gen(function*() {
    const groups: Array<readonly [string, ReadonlyArray<string>]> = []
    for (const [name, ids] of Object.entries(config.groups)) {
      if (name.trim() === "") return yield* new HealthConfigError({ field: "groups", detail: "has a group with an empty name" })
      const seen = new Set<string>()
      for (const id of ids) {
        if (id.trim() === "") return yield* new HealthConfigError({ field: `groups.${name}`, detail: "lists an empty plugin id" })
        if (seen.has(id)) return yield* new HealthConfigError({ field: `groups.${name}`, detail: `lists \`${id}\` twice` })
        seen.add(id)
      }
      groups.push([name, [...ids]])
    }
    const stderrTailLines = config.stderrTailLines ?? 5
    if (!Number.isSafeInteger(stderrTailLines) || stderrTailLines < 0) {
      return yield* new HealthConfigError({ field: "stderrTailLines", detail: `must be an integer >= 0 (got ${stderrTailLines})` })
    }
    return {
      groups,
      discovery: {
        tools: yield* optionalMethod("discovery.tools", config.discovery?.tools),
        resources: yield* optionalMethod("discovery.resources", config.discovery?.resources),
        plugins: yield* pluginDiscovery(config.discovery?.plugins),
        timeout: yield* positiveDuration("discovery.timeout", config.discovery?.timeout, defaultDiscoveryTimeout)
      },
      probe: {
        method: (yield* optionalMethod("probe.method", config.probe?.method)) ?? "health",
        interval: yield* positiveDuration("probe.interval", config.probe?.interval, Duration.seconds(30)),
        timeout: yield* positiveDuration("probe.timeout", config.probe?.timeout, defaultProbeTimeout)
      },
      probing: config.probe !== undefined,
      stderrTailLines,
      remote: {
        poll: yield* positiveDuration("remote.poll", config.remote?.poll, defaultRemotePoll),
        wait: yield* positiveDuration("remote.wait", config.remote?.wait, defaultRemoteWait)
      }
    }
  })

/**
 * A plugin served over NATS: its `name` (as the health view and the doctor show it; not the
 * name of a configured group), the NATS `service` its instances serve (ADR-32 name), and the
 * `minInstances` it needs to be healthy (default 1).
 *
 * @category models
 */
export interface RemotePlugin {
  readonly name: string
  readonly service: string
  readonly minInstances?: number | undefined
  /**
   * Watched only because it answered discovery (no manifest or registration names it): its
   * checks say so (`RemoteHealthcheck.discovered`), and the doctor marks it. Default false.
   */
  readonly discovered?: boolean | undefined
}

/**
 * How a remote plugin is watched: the `broker` discovery asks, how long each discovery listens
 * (`wait`, default 1 s), and `poll`, the `Schedule` of background checks (the first runs at
 * once); without `poll` it is checked only when asked (`checkRemote`, `doctor`).
 *
 * @category models
 */
export interface WatchOptions {
  readonly broker: Broker.Broker["Service"]
  readonly wait?: Duration.Input | undefined
  readonly poll?: Schedule.Schedule<unknown, GroupHealth.RemoteHealthcheck> | undefined
}

// ---------------------------------------------------------------------------------------------
// service
// ---------------------------------------------------------------------------------------------

/**
 * The health service.
 *
 * @category models
 */
export class PluginHealth extends Context.Service<PluginHealth, {
  /** The configured groups and their plugin ids, in configuration order. */
  readonly groups: ReadonlyArray<readonly [string, ReadonlyArray<string>]>
  /** The group's health and lifecycle state now, from the live state of its plugins (publishes `GroupStateChanged` when it changed). */
  readonly check: (group: string) => Effect.Effect<GroupHealth.PluginHealthcheck, UnknownGroup>
  /** Every group's health. */
  readonly checkAll: Effect.Effect<ReadonlyArray<GroupHealth.PluginHealthcheck>>
  /**
   * Asks every server of the group for its tools (with descriptions and input schemas) and
   * resources (with mime types), in parallel, each bounded by the discovery timeout; the doctor
   * shows the last result. Like any call, it spawns a lazy plugin that is not running.
   */
  readonly discover: (group: string) => Effect.Effect<GroupHealth.DiscoveryResult, UnknownGroup>
  /**
   * `check` and `discover`, folded with `GroupHealth.degradedMode`: what still works, only when
   * the group is `Degraded` (`None` otherwise, without asking the servers anything).
   */
  readonly degradedMode: (group: string) => Effect.Effect<Option.Option<GroupHealth.DegradedMode>, UnknownGroup>
  /**
   * Starts every plugin of the group in parallel (the group reads `Starting` meanwhile), checks
   * it, publishes the startup event and returns the check.
   */
  readonly startup: (group: string) => Effect.Effect<GroupHealth.PluginHealthcheck, UnknownGroup>
  /**
   * Stops every plugin of the group in parallel (the group reads `ShuttingDown` meanwhile, then
   * `Stopped`) and publishes `Shutdown`.
   */
  readonly shutdown: (group: string) => Effect.Effect<void, UnknownGroup>
  /** Runs one probe round now (running plugins only), whether or not periodic probes are on. */
  readonly probeNow: Effect.Effect<void>
  /**
   * Watches a remote plugin until the current Scope closes (see {@link WatchOptions}). Fails
   * when its name is empty, already watched or a configured group's, or its minimum or wait
   * is not valid.
   */
  readonly watchRemote: (remote: RemotePlugin, options: WatchOptions) => Effect.Effect<void, HealthConfigError, Scope.Scope>
  /** Discovers a watched remote plugin's instances now and judges them (publishes what changed). */
  readonly checkRemote: (name: string) => Effect.Effect<GroupHealth.RemoteHealthcheck, UnknownRemote>
  /** The last check of every watched remote plugin (none for one never checked yet). */
  readonly remotes: Effect.Effect<ReadonlyArray<GroupHealth.RemoteHealthcheck>>
  /** Everything about every plugin and group, and every watched remote plugin (checked now). */
  readonly doctor: Effect.Effect<DoctorReport>
  /** The events published from the moment the stream is run. */
  readonly events: Stream.Stream<HealthEvent>
  /** Subscribes now (no event published after this returns is missed) and streams the events. */
  readonly subscribe: Effect.Effect<Stream.Stream<HealthEvent>, never, Scope.Scope>
}>()("effect-plugin-host/PluginHealth") {}

// ---------------------------------------------------------------------------------------------
// implementation: each operation is a function of the one `Health` record a service holds
// ---------------------------------------------------------------------------------------------

/**
 * What every operation of one service reads: its configuration, the manager, its state map, the
 * groups it is starting or stopping, the lifecycle state it saw last and the discovery it read
 * last for each group, its event hub.
 */
interface Health {
  readonly config: Resolved
  readonly manager: PluginManager.PluginManager["Service"]
  readonly state: Ref.Ref<HealthState.HealthState>
  readonly phases: Ref.Ref<ReadonlyMap<string, GroupHealth.Phase>>
  readonly seen: Ref.Ref<ReadonlyMap<string, GroupHealth.Lifecycle>>
  readonly discovered: Ref.Ref<ReadonlyMap<string, GroupHealth.DiscoveryResult>>
  readonly remotes: Ref.Ref<ReadonlyMap<string, Watched>>
  /** Keeps a watch on each of the manager's remote plugins. */
  readonly follower: RemoteFollower.RemoteFollower<PluginManager.RemoteRegistration>
  readonly events: PubSub.PubSub<HealthEvent>
}

/** A watched remote plugin: what to ask, where, for how long, and its last check. */
interface Watched {
  readonly remote: RemoteCheck.Remote
  readonly broker: Broker.Broker["Service"]
  readonly wait: Duration.Duration
  readonly last: GroupHealth.RemoteHealthcheck | undefined
}

const withEntry = <A>(map: ReadonlyMap<string, A>, key: string, value: A | undefined): ReadonlyMap<string, A> => {
  const next = new Map(map)
  if (value === undefined) next.delete(key)
  else next.set(key, value)
  return next
}

const errorText = (error: PluginManager.ManagerError | PluginClientError.PluginClientError): string => error.message

const publish = (health: Health, event: HealthEvent) => PubSub.publish(health.events, event)

/** The groups a plugin belongs to, in configuration order. */
const groupsOf = (config: Resolved, id: string): Array<string> =>
  config.groups.filter(([, ids]) => ids.includes(id)).map(([name]) => name)

/** Every plugin of every group, once. */
const watchedIds = (config: Resolved): Array<string> => [...new Set(config.groups.flatMap(([, ids]) => ids))]

const lookupGroup = (config: Resolved, group: string): Effect.Effect<ReadonlyArray<string>, UnknownGroup> =>
  Effect.suspend(() => {
    const found = config.groups.find(([name]) => name === group)
    return found === undefined
      ? Effect.fail(new UnknownGroup({ group, known: config.groups.map(([name]) => name) }))
      : Effect.succeed(found[1])
  })

// -- checks -----------------------------------------------------------------------------------

/** A server's overlay, with the verdict of its instances' last discovery when it is a watched remote plugin. */
const overlayWithInstances = (
  state: HealthState.HealthState,
  remotes: ReadonlyMap<string, Watched>,
  id: string
): GroupHealth.ServerOverlay => {
  const last = remotes.get(id)?.last
  const overlay = HealthState.overlayOf(state, id)
  return last === undefined ? overlay : { ...overlay, instances: { state: last.state, message: last.message } }
}

/** A server's health now, with its plugin's process state. A plugin seen running has recovered from its failed start. */
const memberHealth = (health: Health, id: string): Effect.Effect<readonly [GroupHealth.ServerHealth, GroupHealth.MemberState]> =>
  health.manager.get(id).pipe(
    Effect.flatMap((client) => client.health),
    Effect.flatMap((snapshot) =>
      Effect.flatMap(Ref.get(health.remotes), (remotes) =>
        Ref.modify(health.state, (state) => {
          const next = snapshot.state._tag === "Running" ? HealthState.cameUp(state, id) : state
          const server = GroupHealth.serverHealthOf(id, snapshot, overlayWithInstances(next, remotes, id))
          return [[server, snapshot.state._tag] as const, next]
        }))
    ),
    Effect.catchTag("ManagerError", (error) =>
      Effect.map(Ref.get(health.state), (state) =>
        [GroupHealth.unreachableServer(id, errorText(error), HealthState.overlayOf(state, id)), undefined] as const))
  )

const serverHealth = (health: Health, id: string): Effect.Effect<GroupHealth.ServerHealth> =>
  Effect.map(memberHealth(health, id), ([server]) => server)

/** Remembers the group's lifecycle state and publishes `GroupStateChanged` when it differs from the one seen last. */
const observe = (health: Health, check: GroupHealth.PluginHealthcheck): Effect.Effect<void> =>
  observeState(health, check.pluginName, check.state, check.message)

const observeState = (health: Health, group: string, to: GroupHealth.Lifecycle, message: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    const from = yield* Ref.modify(health.seen, (seen) => [seen.get(group), withEntry(seen, group, to)])
    if (from === to) return
    yield* publish(health, GroupStateChanged.make({ group, ...(from === undefined ? {} : { from }), to, message }))
  })

const checkIds = (health: Health, group: string, ids: ReadonlyArray<string>): Effect.Effect<GroupHealth.PluginHealthcheck> =>
  Effect.gen(function*() {
    const members = yield* Effect.forEach(ids, (id) => memberHealth(health, id), { concurrency: "unbounded" })
    const phase = (yield* Ref.get(health.phases)).get(group)
    const result = GroupHealth.aggregate(group, members.map(([server]) => server), yield* Clock.currentTimeMillis, {
      states: members.map(([, state]) => state),
      phase
    })
    yield* observe(health, result)
    return result
  })

/** Runs `effect` with the group held in `phase` (checked at the start, so the change is published), and always releases it. */
const inPhase = <A, E>(health: Health, group: string, ids: ReadonlyArray<string>, phase: GroupHealth.Phase, effect: Effect.Effect<A, E>) =>
  Ref.update(health.phases, (phases) => withEntry(phases, group, phase)).pipe(
    Effect.andThen(checkIds(health, group, ids)),
    Effect.andThen(effect),
    Effect.ensuring(Ref.update(health.phases, (phases) => withEntry(phases, group, undefined)))
  )

const check = (health: Health, group: string) =>
  lookupGroup(health.config, group).pipe(
    Effect.flatMap((ids) => checkIds(health, group, ids)),
    Effect.withSpan("PluginHealth.check", { attributes: { group } })
  )

const checkAll = (health: Health) => Effect.forEach(health.config.groups, ([group, ids]) => checkIds(health, group, ids))

// -- discovery --------------------------------------------------------------------------------

/** One discovery call, bounded (spawn included) by the discovery timeout, read by `read`. */
const list = <A>(
  health: Health,
  id: string,
  method: string,
  read: (result: unknown) => DiscoveryAnswer.Entries<A>
): Effect.Effect<DiscoveryAnswer.Entries<A>> => {
  const { timeout } = health.config.discovery
  return health.manager.call(id, method).pipe(
    Effect.mapError(errorText),
    Effect.timeoutOrElse({
      duration: timeout,
      orElse: () => Effect.fail(`no answer to \`${method}\` within ${formatDuration(timeout)}`)
    }),
    Effect.flatMap((result) => {
      const names = read(result)
      return Result.isSuccess(names) ? Effect.succeed(names.success) : Effect.fail(`\`${method}\` ${names.failure}`)
    }),
    Effect.result
  )
}

/** Without a tools method, a server's tools are its capabilities, unless it failed. */
const capabilityTools = (health: Health, id: string): Effect.Effect<DiscoveryAnswer.Tools> =>
  Effect.map(serverHealth(health, id), (server) =>
    server.status === "Failed" ? Result.fail(server.lastError ?? "failed") : DiscoveryAnswer.namedTools(server.capabilities))

const noResources: Effect.Effect<DiscoveryAnswer.Resources> = Effect.succeed(Result.succeed([]))

/** One server's tools and resources, asked in parallel; tools read from it become its capabilities. */
const discoverServer = (health: Health, id: string): Effect.Effect<GroupHealth.ServerDiscovery> =>
  Effect.gen(function*() {
    const discovery = health.config.discovery
    const { tools: toolsMethod, resources: resourcesMethod } = discovery.plugins.get(id) ?? discovery
    const [tools, resources] = yield* Effect.all([
      toolsMethod === undefined ? capabilityTools(health, id) : list(health, id, toolsMethod, DiscoveryAnswer.tools),
      resourcesMethod === undefined ? noResources : list(health, id, resourcesMethod, DiscoveryAnswer.resources)
    ], { concurrency: "unbounded" })
    if (toolsMethod !== undefined && Result.isSuccess(tools)) {
      const names = tools.success.map((tool) => tool.name)
      yield* Ref.update(health.state, (state) => HealthState.toolsDiscovered(state, id, names))
    }
    return DiscoveryAnswer.serverDiscovery(id, tools, resources)
  })

const discover = (health: Health, group: string) =>
  lookupGroup(health.config, group).pipe(
    Effect.flatMap((ids) => Effect.forEach(ids, (id) => discoverServer(health, id), { concurrency: "unbounded" })),
    Effect.map(GroupHealth.discoveryOf),
    Effect.tap((result) => Ref.update(health.discovered, (found) => withEntry(found, group, result))),
    Effect.withSpan("PluginHealth.discover", { attributes: { group } })
  )

// -- lifecycle --------------------------------------------------------------------------------

/** Starts one plugin; a failure is remembered until the plugin comes up. */
const startOne = (health: Health, id: string): Effect.Effect<void> =>
  health.manager.start(id).pipe(
    Effect.matchEffect({
      onFailure: (error) => Ref.update(health.state, (state) => HealthState.startFailed(state, id, errorText(error))),
      onSuccess: () => Ref.update(health.state, (state) => HealthState.cameUp(state, id))
    })
  )

/** The event a `startup` ends with, after the group's state. */
const startupEvent = (group: string, check: GroupHealth.PluginHealthcheck): HealthEvent => {
  switch (check.state) {
    case "Healthy":
      return StartupHealthy.make({ group, check })
    case "Starting":
    case "Degraded":
      return StartupDegraded.make({ group, check })
    case "Failed":
    case "ShuttingDown":
    case "Stopped":
      // Not up: stopped, or being stopped, by someone else while it started.
      return StartupFailed.make({ group, check })
  }
}

const startup = (health: Health, group: string) =>
  Effect.gen(function*() {
    const ids = yield* lookupGroup(health.config, group)
    yield* publish(health, ConfigValidated.make({ group, plugins: [...ids] }))
    yield* inPhase(health, group, ids, "Starting", Effect.forEach(ids, (id) => startOne(health, id), { concurrency: "unbounded", discard: true }))
    const result = yield* checkIds(health, group, ids)
    yield* publish(health, startupEvent(group, result))
    return result
  }).pipe(Effect.withSpan("PluginHealth.startup", { attributes: { group } }))

const shutdown = (health: Health, group: string) =>
  Effect.gen(function*() {
    const ids = yield* lookupGroup(health.config, group)
    yield* inPhase(health, group, ids, "ShuttingDown", Effect.forEach(ids, (id) => health.manager.stop(id), { concurrency: "unbounded", discard: true }))
    yield* Ref.update(health.state, (state) => HealthState.stopped(state, ids))
    yield* checkIds(health, group, ids)
    yield* publish(health, Shutdown.make({ group }))
  }).pipe(Effect.withSpan("PluginHealth.shutdown", { attributes: { group } }))

/**
 * A plugin that comes up again has recovered from its failed start, even if no check saw it
 * running in between (it may have crashed again since).
 */
const forgetFailedStartsOnReady = (health: Health): Effect.Effect<void> =>
  health.manager.events.pipe(
    Stream.runForEach((event) =>
      event._tag === "Plugin" && event.event._tag === "Ready"
        ? Ref.update(health.state, (state) => HealthState.cameUp(state, event.id))
        : Effect.void
    )
  )

// -- probes -----------------------------------------------------------------------------------

/**
 * Asks a running plugin its probe: `undefined` when it answered, else why not. A plugin without
 * the probe method still proves it is alive by answering -32601. `requestIfRunning` never
 * spawns and is not activity: probes neither keep a lazy plugin from being reaped nor revive one
 * reaped between the state check and the call.
 */
const probeFailure = (client: PluginClient.PluginClient, probe: Resolved["probe"]): Effect.Effect<string | undefined> =>
  client.requestIfRunning(probe.method, undefined, { timeout: probe.timeout }).pipe(
    Effect.catch((error) =>
      error.reason._tag === "PluginError" && error.reason.code === JsonRpc.ErrorCode.MethodNotFound
        ? Effect.succeed(null)
        : Effect.fail(error)
    ),
    Effect.mapError(errorText),
    // An outer bound in case a call is stuck before it is sent.
    Effect.timeoutOrElse({
      duration: Duration.times(probe.timeout, 2),
      orElse: () => Effect.fail(`no answer to \`${probe.method}\` within ${formatDuration(probe.timeout)}`)
    }),
    Effect.match({ onFailure: (failure): string | undefined => failure, onSuccess: () => undefined })
  )

/** Logs and publishes what a probe changed: the first failure after a pass, the first pass after a failure. */
const announceProbe = (health: Health, id: string, transition: HealthState.ProbeTransition): Effect.Effect<void> => {
  const groups = groupsOf(health.config, id)
  switch (transition._tag) {
    case "Degraded":
      return Effect.logWarning(`health probe failed: ${transition.error}`).pipe(
        Effect.annotateLogs({ plugin: id }),
        Effect.andThen(publish(health, HealthDegraded.make({ plugin: id, groups, error: transition.error }))),
        Effect.asVoid
      )
    case "Recovered":
      return Effect.logInfo("health probe passes again").pipe(
        Effect.annotateLogs({ plugin: id }),
        Effect.andThen(publish(health, HealthRecovered.make({ plugin: id, groups }))),
        Effect.asVoid
      )
    case "Unchanged":
      return Effect.void
  }
}

const probeOne = (health: Health, id: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    const client = yield* Effect.option(health.manager.get(id))
    // Never spawn for a probe: only a plugin that is running right now is asked. A remote plugin
    // is judged by the discovery of its instances instead: a probe would reach one instance,
    // and count as an error on every instance without the probe method.
    if (Option.isNone(client) || (yield* client.value.state)._tag !== "Running") return
    if ((yield* health.manager.remotes).some((remote) => remote.id === id)) return
    const failure = yield* probeFailure(client.value, health.config.probe)
    const transition = yield* Ref.modify(health.state, (state) => HealthState.probed(state, id, failure))
    yield* announceProbe(health, id, transition)
  })

const probeRound = (health: Health): Effect.Effect<void> =>
  Effect.forEach(watchedIds(health.config), (id) => probeOne(health, id), {
    concurrency: "unbounded",
    discard: true
  }).pipe(Effect.withSpan("PluginHealth.probe"))

// -- degraded mode ------------------------------------------------------------------------------

/** What still works in the group, asking the servers for their tools only when it is degraded. */
const degradedModeOf = (health: Health, group: string): Effect.Effect<Option.Option<GroupHealth.DegradedMode>, UnknownGroup> =>
  Effect.gen(function*() {
    const result = yield* check(health, group)
    if (result.state !== "Degraded") return Option.none()
    return GroupHealth.degradedMode(result, yield* discover(health, group))
  })

// -- remote plugins -----------------------------------------------------------------------------

/** Checks a remote plugin's registration against the configuration and what is watched already. */
const resolveRemote = (health: Health, remote: RemotePlugin, wait: Duration.Input | undefined) =>
  Effect.gen(function*() {
    const minInstances = remote.minInstances ?? 1
    const field = `remote.${remote.name}`
    if (remote.name.trim() === "") return yield* new HealthConfigError({ field: "remote", detail: "has an empty name" })
    if (remote.service.trim() === "") return yield* new HealthConfigError({ field, detail: "has an empty service name" })
    if (!Number.isSafeInteger(minInstances) || minInstances < 1) {
      return yield* new HealthConfigError({ field: `${field}.minInstances`, detail: `must be an integer >= 1 (got ${minInstances})` })
    }
    if (health.config.groups.some(([group]) => group === remote.name)) {
      return yield* new HealthConfigError({ field, detail: "is the name of a configured group" })
    }
    if ((yield* Ref.get(health.remotes)).has(remote.name)) return yield* new HealthConfigError({ field, detail: "is watched already" })
    return {
      remote: { plugin: remote.name, service: remote.service, minInstances, ...(remote.discovered === true ? { discovered: true } : {}) },
      wait: yield* positiveDuration(`${field}.wait`, wait, defaultRemoteWait)
    }
  })

/** Checks one watched remote plugin now, remembers the check and publishes what changed. */
const checkWatched = (health: Health, watched: Watched): Effect.Effect<GroupHealth.RemoteHealthcheck> =>
  Effect.gen(function*() {
    const result = yield* RemoteCheck.check(watched.broker, watched.remote, watched.wait)
    const before = yield* Ref.modify(health.remotes, (remotes) => {
      const current = remotes.get(watched.remote.plugin)
      // Unwatched meanwhile: nothing to remember.
      return current === undefined ? [undefined, remotes] : [current.last?.instances ?? [], withEntry(remotes, watched.remote.plugin, { ...current, last: result })]
    })
    if (before === undefined) return result
    const { joined, left } = GroupHealth.instanceChanges(before, result.instances)
    if (joined.length > 0 || left.length > 0) {
      yield* publish(health, InstancesChanged.make({ plugin: result.plugin, service: result.service, joined, left, instances: result.instances.length }))
    }
    yield* observeState(health, result.plugin, result.state, result.message)
    return result
  })

const watchRemote = (health: Health, remote: RemotePlugin, options: WatchOptions) =>
  Effect.gen(function*() {
    const { remote: resolved, wait } = yield* resolveRemote(health, remote, options.wait)
    const watched: Watched = { remote: resolved, broker: options.broker, wait, last: undefined }
    yield* Effect.acquireRelease(
      Ref.update(health.remotes, (remotes) => withEntry(remotes, resolved.plugin, watched)),
      // Forgotten with its state, so a later watch under the same name starts afresh.
      () =>
        Ref.update(health.remotes, (remotes) => withEntry(remotes, resolved.plugin, undefined)).pipe(
          Effect.andThen(Ref.update(health.seen, (seen) => withEntry(seen, resolved.plugin, undefined)))
        )
    )
    if (options.poll !== undefined) {
      yield* checkWatched(health, watched).pipe(Effect.repeat(options.poll), Effect.forkScoped)
    }
  })

/**
 * Watches one of the manager's remote plugins under its id. A manifest's `min_instances = 0`
 * judges like 1: a plugin with no instance is failed either way.
 */
const watchRegistered = (health: Health, registration: PluginManager.RemoteRegistration) =>
  watchRemote(health, { name: registration.id, service: registration.service, minInstances: registration.minInstances }, {
    broker: registration.broker,
    wait: health.config.remote.wait,
    poll: Schedule.fixed(health.config.remote.poll)
  })

/** Brings the watches of the manager's remote plugins in line with its registrations now. */
const followManager = (health: Health): Effect.Effect<void> => Effect.flatMap(health.manager.remotes, health.follower.sync)

const checkRemote = (health: Health, name: string) =>
  Effect.gen(function*() {
    yield* followManager(health)
    const remotes = yield* Ref.get(health.remotes)
    const watched = remotes.get(name)
    if (watched === undefined) return yield* new UnknownRemote({ name, watched: [...remotes.keys()] })
    return yield* checkWatched(health, watched)
  })

const checkAllRemotes = (health: Health): Effect.Effect<ReadonlyArray<GroupHealth.RemoteHealthcheck>> =>
  Effect.flatMap(Ref.get(health.remotes), (remotes) =>
    Effect.forEach(remotes.values(), (watched) => checkWatched(health, watched), { concurrency: "unbounded" }))

const lastRemoteChecks = (health: Health): Effect.Effect<ReadonlyArray<GroupHealth.RemoteHealthcheck>> =>
  Effect.map(Ref.get(health.remotes), (remotes) => [...remotes.values()].flatMap((w) => w.last === undefined ? [] : [w.last]))

// -- doctor -----------------------------------------------------------------------------------

const doctor = (health: Health): Effect.Effect<DoctorReport> =>
  Effect.gen(function*() {
    // Remote plugins first: their plugin rows and groups read what their instances are now.
    yield* followManager(health)
    const remotes = yield* checkAllRemotes(health)
    const watched = yield* Ref.get(health.remotes)
    const diagnostics = yield* health.manager.diagnostics
    const state = yield* Ref.get(health.state)
    const plugins = yield* Effect.forEach(diagnostics, (d) =>
      Effect.map(d.verification ?? Effect.undefined, (verification) =>
        PluginDiagnosis.fromDiagnostics(d, {
          server: GroupHealth.serverHealthOf(d.id, d.health, overlayWithInstances(state, watched, d.id)),
          groups: groupsOf(health.config, d.id),
          stderrTailLines: health.config.stderrTailLines,
          verification
        })))
    const checks = yield* checkAll(health)
    const discovered = yield* Ref.get(health.discovered)
    const leftovers = yield* Leftovers.reapedSoFar
    return new DoctorReport({
      generatedAt: yield* Clock.currentTimeMillis,
      plugins,
      groups: checks.map((check) => GroupReport.fromHealthcheck(check, discovered.get(check.pluginName))),
      ...(remotes.length === 0 ? {} : { remotes }),
      ...(leftovers.length === 0 ? {} : { leftovers }),
      containment: containmentNow()
    })
  }).pipe(Effect.withSpan("PluginHealth.doctor"))

/** How this host contains plugin trees now, for the report. */
const containmentNow = (): NonNullable<DoctorReport["containment"]> => {
  const mount = Cgroup.favorDynmods()
  return {
    mode: ProcessTree.mode(),
    escaped: ProcessTree.escapedCount(),
    ...(mount === undefined ? {} : { cgroupMount: { path: mount.mount, favordynmods: mount.enabled } })
  }
}

// -- constructors -----------------------------------------------------------------------------

/**
 * Makes the service in the current Scope over the `PluginManager` in context. With `probe`
 * configured, a scoped fiber probes every running plugin of every group at each `interval`.
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(config: HealthConfig): Effect.fn.Return<
  PluginHealth["Service"],
  HealthConfigError,
  PluginManager.PluginManager | Scope.Scope
> {
  const resolved = yield* resolveConfig(config)
  const health: Health = {
    config: resolved,
    manager: yield* PluginManager.PluginManager,
    // Its watches run only when it syncs, after `health` is made.
    follower: yield* RemoteFollower.make<PluginManager.RemoteRegistration, HealthConfigError>(yield* Effect.scope, {
      watch: (registration) => watchRegistered(health, registration),
      refused: (registration, error) => Effect.logWarning(`remote plugin ${registration.id} is not watched: ${error.message}`)
    }),
    state: yield* Ref.make(HealthState.empty),
    phases: yield* Ref.make<ReadonlyMap<string, GroupHealth.Phase>>(new Map()),
    seen: yield* Ref.make<ReadonlyMap<string, GroupHealth.Lifecycle>>(new Map()),
    discovered: yield* Ref.make<ReadonlyMap<string, GroupHealth.DiscoveryResult>>(new Map()),
    remotes: yield* Ref.make<ReadonlyMap<string, Watched>>(new Map()),
    events: yield* PubSub.unbounded<HealthEvent>()
  }
  yield* Effect.forkScoped(forgetFailedStartsOnReady(health))
  yield* followManager(health)
  yield* health.manager.remoteChanges.pipe(Stream.runForEach(health.follower.sync), Effect.forkScoped)
  const probeNow = probeRound(health)
  if (resolved.probing) {
    yield* Effect.sleep(resolved.probe.interval).pipe(Effect.andThen(probeNow), Effect.forever, Effect.forkScoped)
  }
  return PluginHealth.of({
    groups: resolved.groups,
    check: (group) => check(health, group),
    checkAll: checkAll(health),
    discover: (group) => discover(health, group),
    degradedMode: (group) => degradedModeOf(health, group),
    startup: (group) => startup(health, group),
    shutdown: (group) => shutdown(health, group),
    probeNow,
    watchRemote: (remote, options) => watchRemote(health, remote, options),
    checkRemote: (name) => checkRemote(health, name),
    remotes: Effect.andThen(followManager(health), lastRemoteChecks(health)),
    doctor: doctor(health),
    events: Stream.fromPubSub(health.events),
    subscribe: Effect.map(PubSub.subscribe(health.events), Stream.fromSubscription)
  })
})

/**
 * The health service as a layer over the `PluginManager` (fails if the configuration is
 * invalid). Releasing it stops the probes; the plugins belong to the manager.
 *
 * @category layers
 */
export const layer = (config: HealthConfig): Layer.Layer<PluginHealth, HealthConfigError, PluginManager.PluginManager> =>
  Layer.effect(PluginHealth, make(config))
