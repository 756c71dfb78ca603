/**
 * The health of a plugin group, as data and pure rules (the claw-code health model).
 *
 * A *group* is a named set of plugin ids (one product feature served by several plugin
 * processes); each plugin is a *server* of its group. {@link serverHealthOf} derives a server's
 * {@link ServerHealth} from its plugin's `PluginHealth` snapshot and a {@link ServerOverlay}
 * (what the health service learned beyond it: failed probes, a failed `startup`, discovered
 * tools); {@link aggregate} folds the servers into a group's {@link PluginHealthcheck}: no
 * servers → `Failed`; all healthy → `Healthy`; all failed → `Failed`; otherwise `Degraded` (a
 * degraded server counts as up). {@link lifecycleOf} places the group in its lifecycle
 * (`Starting`, `Healthy`, `Degraded`, `Failed`, `ShuttingDown`, `Stopped`) from that verdict and
 * the plugins' process states, so a group stopped on purpose reads `Stopped`, not `Failed`.
 * {@link DiscoveryResult} holds the tools (with descriptions and input schemas) and resources
 * (with mime types) the servers announce, and {@link degradedMode} says what still works when
 * the group is degraded.
 *
 * A *remote* plugin is served over NATS by any number of instances, found by discovery
 * ({@link RemoteInstance}); {@link remoteCheck} judges it against its configured minimum:
 * `Healthy` at or above it, `Degraded` below it, `Failed` with no instance (or when discovery
 * itself failed), in a {@link RemoteHealthcheck}.
 *
 * Nothing here runs an effect or reads a clock: the `PluginHealth` service applies these rules
 * to live plugins. `PluginHealth` also re-exports the models and the three rules, where they
 * have always been reachable.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as PluginClient from "./PluginClient.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * How usable a server (or a whole group) is: `Healthy`, `Degraded` (up, but not fully — it is
 * recovering from a crash or failing its probes), or `Failed` (not serving).
 *
 * @category models
 */
export const Status = Schema.Literals(["Healthy", "Degraded", "Failed"])

/**
 * @category models
 */
export type Status = typeof Status.Type

/**
 * Where a group stands in its lifecycle: `Starting` (a `startup` is under way, or every server is
 * up but one is still on its first start), `Healthy`, `Degraded`, `Failed` (the verdict of
 * {@link aggregate}), `ShuttingDown` (a `shutdown` is under way, or every plugin is stopping or
 * stopped) and `Stopped` (every plugin was stopped on purpose). A superset of {@link Status}.
 *
 * @category models
 */
export const Lifecycle = Schema.Literals(["Starting", "Healthy", "Degraded", "Failed", "ShuttingDown", "Stopped"])

/**
 * @category models
 */
export type Lifecycle = typeof Lifecycle.Type

/**
 * What the health service is doing to a group right now, if anything: a `startup` or a
 * `shutdown`. It wins over what the plugins' states say while it lasts.
 *
 * @category models
 */
export type Phase = "Starting" | "ShuttingDown"

/**
 * A plugin's process state as a group sees it: the `PluginState` tag, or `undefined` when the id
 * is not registered with the manager.
 *
 * @category models
 */
export type MemberState = PluginClient.PluginState["_tag"] | undefined

/**
 * One server (plugin) of a group. `capabilities` are the tools it discovered last, or else the
 * methods its handshake announced; `lastError` says why it is not healthy.
 *
 * @category models
 */
export class ServerHealth extends Schema.Class<ServerHealth>("ServerHealth")({
  serverName: Schema.String,
  status: Status,
  capabilities: Schema.Array(Schema.String),
  lastError: Schema.optionalKey(Schema.String)
}) {}

/**
 * The health of a group at `lastCheck` (epoch millis from `Clock`): its servers and the group's
 * lifecycle `state` ({@link lifecycleOf}; the health verdict of {@link aggregate} when the group
 * is neither starting nor stopping), with a human `message` (`"all 3 servers failed"`,
 * `"2 servers healthy, 1 servers failed"`…). `pluginName` is the group's name, as in claw-code.
 *
 * @category models
 */
export class PluginHealthcheck extends Schema.Class<PluginHealthcheck>("PluginHealthcheck")({
  pluginName: Schema.String,
  state: Lifecycle,
  servers: Schema.Array(ServerHealth),
  lastCheck: Schema.Number,
  message: Schema.String
}) {}

/**
 * A tool as discovery announced it: its `name`, and its `description` and `inputSchema` (a JSON
 * Schema, kept as the plugin sent it) when the plugin gave them.
 *
 * @category models
 */
export const ToolInfo = Schema.Struct({
  name: Schema.String,
  description: Schema.optionalKey(Schema.String),
  inputSchema: Schema.optionalKey(Schema.Unknown)
})

/**
 * @category models
 */
export type ToolInfo = typeof ToolInfo.Type

/**
 * A resource as discovery announced it: its `uri` (the name when the plugin gave no uri), and
 * its `name`, `description` and `mimeType` when the plugin gave them.
 *
 * @category models
 */
export const ResourceInfo = Schema.Struct({
  uri: Schema.String,
  name: Schema.optionalKey(Schema.String),
  description: Schema.optionalKey(Schema.String),
  mimeType: Schema.optionalKey(Schema.String)
})

/**
 * @category models
 */
export type ResourceInfo = typeof ResourceInfo.Type

const noDetails = {
  tools: Schema.Array(ToolInfo).pipe(
    Schema.withDecodingDefaultKey(Effect.succeed([])),
    Schema.withConstructorDefault(Effect.succeed([]))
  ),
  resources: Schema.Array(ResourceInfo).pipe(
    Schema.withDecodingDefaultKey(Effect.succeed([])),
    Schema.withConstructorDefault(Effect.succeed([]))
  )
}

/**
 * What one server announced during discovery: the names of its `tools` and `resources`, and the
 * same entries with everything the plugin said about them (`toolDetails`, `resourceDetails`).
 * `error` is set when it could not answer (failed, timed out, or answered something that is not
 * a list).
 *
 * @category models
 */
export class ServerDiscovery extends Schema.Class<ServerDiscovery>("ServerDiscovery")({
  serverName: Schema.String,
  tools: Schema.Array(Schema.String),
  resources: Schema.Array(Schema.String),
  toolDetails: noDetails.tools,
  resourceDetails: noDetails.resources,
  error: Schema.optionalKey(Schema.String)
}) {}

/**
 * The tools and resources of a group (deduplicated, in server order), by name and in detail
 * (`toolDetails`, `resourceDetails`: the first server announcing a name wins). `partial` is true when at
 * least one server could not answer. `servers` keeps the per-server answers, so
 * {@link degradedMode} can tell which tools come from servers that are still up.
 *
 * @category models
 */
export class DiscoveryResult extends Schema.Class<DiscoveryResult>("DiscoveryResult")({
  tools: Schema.Array(Schema.String),
  resources: Schema.Array(Schema.String),
  toolDetails: noDetails.tools,
  resourceDetails: noDetails.resources,
  partial: Schema.Boolean,
  servers: Schema.optionalKey(Schema.Array(ServerDiscovery))
}) {}

/**
 * What a group can still do: the tools of servers that are up, the capabilities lost with the
 * failed servers, and why (`"2 servers healthy, 1 servers failed"`).
 *
 * @category models
 */
export class DegradedMode extends Schema.Class<DegradedMode>("DegradedMode")({
  available: Schema.Array(Schema.String),
  unavailable: Schema.Array(Schema.String),
  reason: Schema.String
}) {}

/**
 * What the service knows about a server beyond its `PluginHealth` snapshot: the error of its
 * last failed probe (while it has not answered one since), the error of a failed `startup`
 * (while it has not come up since), the tools it discovered last, and, for a remote plugin, the
 * verdict of the last discovery of its instances.
 *
 * @category models
 */
export interface ServerOverlay {
  readonly probeError?: string | undefined
  readonly startFailure?: string | undefined
  readonly capabilities?: ReadonlyArray<string> | undefined
  readonly instances?: { readonly state: Status; readonly message: string } | undefined
}

/**
 * One instance of a remote plugin as discovery found it: its instance `id` and `version`, how
 * long its ping took (`latencyMillis`), when it `started` (RFC 3339, when it said), and its
 * endpoints' counters summed: `requests`, `errors`, and the `lastError` an endpoint reported.
 *
 * @category models
 */
export class RemoteInstance extends Schema.Class<RemoteInstance>("RemoteInstance")({
  id: Schema.String,
  version: Schema.String,
  latencyMillis: Schema.Number,
  requests: Schema.Number,
  errors: Schema.Number,
  lastError: Schema.optionalKey(Schema.String),
  started: Schema.optionalKey(Schema.String)
}) {}

/**
 * The health of a remote plugin at `lastCheck` (epoch millis): the NATS `service` its
 * instances serve, the `minInstances` it needs, the instances found, the verdict `state`
 * ({@link remoteStatusOf}) and a human `message` (`"1 of 2 required instances"`). `discovered`
 * marks a service watched only because it answered discovery (no manifest or registration
 * names it, as `plugin-host doctor --nats` lists the others): what it says is for information.
 *
 * @category models
 */
export class RemoteHealthcheck extends Schema.Class<RemoteHealthcheck>("RemoteHealthcheck")({
  plugin: Schema.String,
  service: Schema.String,
  minInstances: Schema.Int,
  state: Status,
  instances: Schema.Array(RemoteInstance),
  lastCheck: Schema.Number,
  message: Schema.String,
  discovered: Schema.optionalKey(Schema.Boolean)
}) {}

// ---------------------------------------------------------------------------------------------
// rules
// ---------------------------------------------------------------------------------------------

const makeServer = (
  serverName: string,
  status: Status,
  capabilities: ReadonlyArray<string>,
  lastError: string | undefined
): ServerHealth =>
  new ServerHealth({
    serverName,
    status,
    capabilities: [...capabilities],
    ...(lastError === undefined ? {} : { lastError })
  })

/**
 * A server's health from its plugin's live state: `Running` is `Healthy` (or `Degraded` while
 * its probes fail; a remote plugin is as its instances were last found: `Degraded` below its
 * minimum, `Failed` with none); `Idle` is `Healthy` (it spawns on demand); `Starting` is `Healthy` on a
 * first start and `Degraded` when it follows an error; `Recovering`, `Backoff` and `Stopping`
 * are `Degraded`; `Disabled` and `Stopped` are `Failed`. A plugin whose `startup` failed stays
 * `Failed` until it runs again, whatever its restart policy is doing meanwhile.
 *
 * @category constructors
 */
export const serverHealthOf = (
  serverName: string,
  health: PluginClient.HealthSnapshot,
  overlay: ServerOverlay = {}
): ServerHealth => {
  const capabilities = overlay.capabilities ?? health.supportedMethods ?? []
  const server = (status: Status, lastError: string | undefined) => makeServer(serverName, status, capabilities, lastError)
  const failedStart = overlay.startFailure === undefined
    ? undefined
    : server("Failed", health.lastError ?? overlay.startFailure)
  const state = health.state
  switch (state._tag) {
    case "Running":
      if (overlay.instances !== undefined && overlay.instances.state !== "Healthy") return server(overlay.instances.state, overlay.instances.message)
      return overlay.probeError === undefined ? server("Healthy", undefined) : server("Degraded", overlay.probeError)
    case "Idle":
      return failedStart ?? server("Healthy", undefined)
    case "Starting":
      return failedStart ?? (health.lastError === undefined ? server("Healthy", undefined) : server("Degraded", health.lastError))
    case "Recovering":
    case "Backoff":
      return failedStart ?? server("Degraded", health.lastError ?? state._tag.toLowerCase())
    case "Stopping":
      return server("Degraded", health.lastError ?? "stopping")
    case "Disabled":
      return server("Failed", health.lastError ?? state.reason)
    case "Stopped":
      // An old crash is not why a deliberately stopped plugin is down.
      return failedStart ?? server("Failed", "stopped")
  }
}

/**
 * A server that cannot be asked at all (its id is not registered with the manager): `Failed`,
 * with the tools it discovered before, if any, and why.
 *
 * @category constructors
 */
export const unreachableServer = (serverName: string, error: string, overlay: ServerOverlay = {}): ServerHealth =>
  makeServer(serverName, "Failed", overlay.capabilities ?? [], error)

/**
 * Where a group stands in its lifecycle, from the health verdict of its servers (`status`), the
 * process states of its plugins (`states`, in any order) and what the service is doing to it
 * (`phase`). In order: a `phase` wins (`Starting` during a `startup`, `ShuttingDown` during a
 * `shutdown`); every plugin `Stopped` → `Stopped`; some `Stopping` and the rest stopped →
 * `ShuttingDown`; every server healthy but some plugin still `Starting` → `Starting`; otherwise
 * the verdict. A group with no plugins is `Failed`, as in claw-code.
 *
 * @category constructors
 */
export const lifecycleOf = (status: Status, states: ReadonlyArray<MemberState>, phase?: Phase | undefined): Lifecycle => {
  if (phase !== undefined) return phase
  if (states.length === 0) return status
  if (states.every((s) => s === "Stopped")) return "Stopped"
  if (states.some((s) => s === "Stopping") && states.every((s) => s === "Stopping" || s === "Stopped")) return "ShuttingDown"
  if (status === "Healthy" && states.some((s) => s === "Starting")) return "Starting"
  return status
}

/**
 * The health verdict of a set of servers with the claw-code rules, and its message: no servers →
 * `Failed` "no servers available"; every server healthy → `Healthy` "all N servers healthy";
 * every server failed → `Failed` "all N servers failed"; otherwise `Degraded` "H servers healthy,
 * F servers failed" where a degraded server counts as up (and is mentioned: ", D degraded").
 *
 * @category constructors
 */
export const statusOf = (servers: ReadonlyArray<ServerHealth>): readonly [Status, string] => {
  const failed = servers.filter((s) => s.status === "Failed").length
  const degraded = servers.filter((s) => s.status === "Degraded").length
  const up = servers.length - failed
  return servers.length === 0
    ? ["Failed", "no servers available"]
    : failed === 0 && degraded === 0
    ? ["Healthy", `all ${servers.length} servers healthy`]
    : up === 0
    ? ["Failed", `all ${failed} servers failed`]
    : ["Degraded", `${up} servers healthy, ${failed} servers failed${degraded === 0 ? "" : `, ${degraded} degraded`}`]
}

/**
 * Aggregates servers into a group check: the verdict and message of {@link statusOf}, placed in
 * the group's lifecycle by {@link lifecycleOf} when the plugins' `states` (and the service's
 * `phase`) are given; without them the state is the verdict.
 *
 * @category constructors
 */
export const aggregate = (
  pluginName: string,
  servers: ReadonlyArray<ServerHealth>,
  lastCheck: number,
  lifecycle: { readonly states?: ReadonlyArray<MemberState> | undefined; readonly phase?: Phase | undefined } = {}
): PluginHealthcheck => {
  const [status, message] = statusOf(servers)
  const state = lifecycleOf(status, lifecycle.states ?? [], lifecycle.phase)
  return new PluginHealthcheck({ pluginName, state, servers: [...servers], lastCheck, message })
}

const unique = (values: Iterable<string>): Array<string> => [...new Set(values)]

/** The first entry of each key, in order. */
const uniqueBy = <A>(values: ReadonlyArray<A>, key: (a: A) => string): Array<A> => {
  const seen = new Set<string>()
  return values.filter((value) => {
    const k = key(value)
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

/**
 * The discovery of a group from its servers' answers, in server order: tools and resources
 * deduplicated, `partial` when any server could not answer.
 *
 * @category constructors
 */
export const discoveryOf = (servers: ReadonlyArray<ServerDiscovery>): DiscoveryResult =>
  new DiscoveryResult({
    tools: unique(servers.flatMap((s) => s.tools)),
    resources: unique(servers.flatMap((s) => s.resources)),
    toolDetails: uniqueBy(servers.flatMap((s) => s.toolDetails), (t) => t.name),
    resourceDetails: uniqueBy(servers.flatMap((s) => s.resourceDetails), (r) => r.uri),
    partial: servers.some((s) => s.error !== undefined),
    servers: [...servers]
  })

/**
 * What still works in a degraded group, as claw-code has it: `None` unless the group's state is
 * `Degraded` (a healthy group loses nothing; a failed or stopped one has nothing left). Then
 * `available` = tools discovered from servers that are up
 * (healthy or degraded; all discovered tools when the discovery carries no per-server detail),
 * `unavailable` = capabilities of the failed servers that no server that is up provides,
 * `reason` = "H servers healthy, F servers failed" (degraded servers count as healthy).
 *
 * @category combinators
 */
export const degradedMode = (check: PluginHealthcheck, discovery: DiscoveryResult): Option.Option<DegradedMode> =>
  check.state === "Degraded" ? Option.some(whatStillWorks(check, discovery)) : Option.none()

const whatStillWorks = (check: PluginHealthcheck, discovery: DiscoveryResult): DegradedMode => {
  const failed = check.servers.filter((s) => s.status === "Failed")
  const up = new Set(check.servers.filter((s) => s.status !== "Failed").map((s) => s.serverName))
  const available = discovery.servers === undefined
    ? unique(discovery.tools)
    : unique(discovery.servers.filter((s) => up.has(s.serverName)).flatMap((s) => s.tools))
  const reachable = new Set(available)
  const unavailable = unique(failed.flatMap((s) => s.capabilities)).filter((tool) => !reachable.has(tool))
  return new DegradedMode({
    available,
    unavailable,
    reason: `${up.size} servers healthy, ${failed.length} servers failed`
  })
}

// ---------------------------------------------------------------------------------------------
// remote plugins
// ---------------------------------------------------------------------------------------------

const instances = (n: number): string => `${n} instance${n === 1 ? "" : "s"}`

/**
 * The verdict on a remote plugin from how many instances answered and how many it needs:
 * discovery failed (`problem`) → `Failed` with the problem; none → `Failed` "no instance
 * answers"; fewer than `minInstances` → `Degraded` "1 of 2 required instances"; otherwise
 * `Healthy` "2 instances (2 required)".
 *
 * @category constructors
 */
export const remoteStatusOf = (count: number, minInstances: number, problem?: string | undefined): readonly [Status, string] =>
  problem !== undefined
    ? ["Failed", `discovery failed: ${problem}`]
    : count === 0
    ? ["Failed", "no instance answers"]
    : count < minInstances
    ? ["Degraded", `${count} of ${minInstances} required instances`]
    : ["Healthy", `${instances(count)} (${minInstances} required)`]

/**
 * The check of a remote plugin from the instances discovery found (or the `problem` that kept
 * it from finding any), judged by {@link remoteStatusOf}.
 *
 * @category constructors
 */
export const remoteCheck = (
  remote: { readonly plugin: string; readonly service: string; readonly minInstances: number; readonly discovered?: boolean },
  found: ReadonlyArray<RemoteInstance>,
  lastCheck: number,
  problem?: string | undefined
): RemoteHealthcheck => {
  const [state, message] = remoteStatusOf(found.length, remote.minInstances, problem)
  return new RemoteHealthcheck({ ...remote, state, instances: [...found], lastCheck, message })
}

/**
 * Which instances came and went between two checks of a remote plugin, by instance id.
 *
 * @category combinators
 */
export const instanceChanges = (
  before: ReadonlyArray<RemoteInstance>,
  after: ReadonlyArray<RemoteInstance>
): { readonly joined: ReadonlyArray<string>; readonly left: ReadonlyArray<string> } => {
  const was = new Set(before.map((i) => i.id))
  const is = new Set(after.map((i) => i.id))
  return { joined: after.map((i) => i.id).filter((id) => !was.has(id)), left: before.map((i) => i.id).filter((id) => !is.has(id)) }
}
