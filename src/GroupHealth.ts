/**
 * The health of a plugin group, as data and pure rules (the claw-code health model).
 *
 * A *group* is a named set of plugin ids (one product feature served by several plugin
 * processes); each plugin is a *server* of its group. {@link serverHealthOf} derives a server's
 * {@link ServerHealth} from its plugin's `PluginHealth` snapshot and a {@link ServerOverlay}
 * (what the health service learned beyond it: failed probes, a failed `startup`, discovered
 * tools); {@link aggregate} folds the servers into a group's {@link PluginHealthcheck}: no
 * servers → `Failed`; all healthy → `Healthy`; all failed → `Failed`; otherwise `Degraded` (a
 * degraded server counts as up). {@link DiscoveryResult} holds the tools and resources the
 * servers announce, and {@link degradedMode} says what still works.
 *
 * Nothing here runs an effect or reads a clock: the `PluginHealth` service applies these rules
 * to live plugins. `PluginHealth` also re-exports the models and the three rules, where they
 * have always been reachable.
 *
 * @since 0.1.0
 */
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
 * The health of a group at `lastCheck` (epoch millis from `Clock`): its servers and their
 * aggregate `state`, with a human `message` (`"all 3 servers failed"`,
 * `"2 servers healthy, 1 servers failed"`…). `pluginName` is the group's name, as in claw-code.
 *
 * @category models
 */
export class PluginHealthcheck extends Schema.Class<PluginHealthcheck>("PluginHealthcheck")({
  pluginName: Schema.String,
  state: Status,
  servers: Schema.Array(ServerHealth),
  lastCheck: Schema.Number,
  message: Schema.String
}) {}

/**
 * What one server announced during discovery; `error` is set when it could not answer (failed,
 * timed out, or answered something that is not a list).
 *
 * @category models
 */
export class ServerDiscovery extends Schema.Class<ServerDiscovery>("ServerDiscovery")({
  serverName: Schema.String,
  tools: Schema.Array(Schema.String),
  resources: Schema.Array(Schema.String),
  error: Schema.optionalKey(Schema.String)
}) {}

/**
 * The tools and resources of a group (deduplicated, in server order). `partial` is true when at
 * least one server could not answer. `servers` keeps the per-server answers, so
 * {@link degradedMode} can tell which tools come from servers that are still up.
 *
 * @category models
 */
export class DiscoveryResult extends Schema.Class<DiscoveryResult>("DiscoveryResult")({
  tools: Schema.Array(Schema.String),
  resources: Schema.Array(Schema.String),
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
 * (while it has not come up since), and the tools it discovered last.
 *
 * @category models
 */
export interface ServerOverlay {
  readonly probeError?: string | undefined
  readonly startFailure?: string | undefined
  readonly capabilities?: ReadonlyArray<string> | undefined
}

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
 * its probes fail); `Idle` is `Healthy` (it spawns on demand); `Starting` is `Healthy` on a
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
 * Aggregates servers into a group check with the claw-code rules: no servers → `Failed`
 * "no servers available"; every server healthy → `Healthy` "all N servers healthy"; every server
 * failed → `Failed` "all N servers failed"; otherwise `Degraded` "H servers healthy, F servers
 * failed" where a degraded server counts as up (and is mentioned: ", D degraded").
 *
 * @category constructors
 */
export const aggregate = (pluginName: string, servers: ReadonlyArray<ServerHealth>, lastCheck: number): PluginHealthcheck => {
  const failed = servers.filter((s) => s.status === "Failed").length
  const degraded = servers.filter((s) => s.status === "Degraded").length
  const up = servers.length - failed
  const [state, message]: readonly [Status, string] = servers.length === 0
    ? ["Failed", "no servers available"]
    : failed === 0 && degraded === 0
    ? ["Healthy", `all ${servers.length} servers healthy`]
    : up === 0
    ? ["Failed", `all ${failed} servers failed`]
    : ["Degraded", `${up} servers healthy, ${failed} servers failed${degraded === 0 ? "" : `, ${degraded} degraded`}`]
  return new PluginHealthcheck({ pluginName, state, servers: [...servers], lastCheck, message })
}

const unique = (values: Iterable<string>): Array<string> => [...new Set(values)]

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
    partial: servers.some((s) => s.error !== undefined),
    servers: [...servers]
  })

/**
 * What still works in a group: `available` = tools discovered from servers that are up
 * (healthy or degraded; all discovered tools when the discovery carries no per-server detail),
 * `unavailable` = capabilities of the failed servers that no server that is up provides,
 * `reason` = "H servers healthy, F servers failed" (degraded servers count as healthy).
 *
 * @category combinators
 */
export const degradedMode = (check: PluginHealthcheck, discovery: DiscoveryResult): DegradedMode => {
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
