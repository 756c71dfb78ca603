/**
 * Health of plugin groups: a service over the {@link PluginManager} that turns the live state of
 * plugin processes into the claw-code health model, probes running plugins, and writes a doctor
 * report.
 *
 * A *group* is a named set of plugin ids (one product feature served by several plugin
 * processes); each plugin is a *server* of its group. A server's {@link ServerHealth} is derived
 * from its live `PluginState` (plus failed periodic probes and failed `startup`s), and a group's
 * {@link PluginHealthcheck} aggregates its servers with the claw-code rules: no servers →
 * `Failed`; all healthy → `Healthy`; all failed → `Failed`; otherwise `Degraded` (a degraded
 * server counts as up). {@link DiscoveryResult} collects the tools and resources the servers
 * announce, {@link degradedMode} says what still works, and `doctor` gathers everything the
 * manager knows about every plugin into a Schema-encodable {@link DoctorReport} with a terminal
 * rendering. Lifecycle and probe transitions are published as {@link HealthEvent}s.
 *
 * This module owns only the health view: starting, stopping and restarting stay with the
 * manager, and probes never spawn a plugin that is not running.
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
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { formatDuration } from "./internal/formatDuration.ts"
import * as JsonRpc from "./JsonRpc.ts"
import type * as PluginClient from "./PluginClient.ts"
import type * as PluginClientError from "./PluginClientError.ts"
import * as PluginManager from "./PluginManager.ts"

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
 * Whether a plugin's executable is checked: `"verified"` (a checksum is declared and is checked
 * before every spawn; the plugin has spawned with it), `"pending"` (declared, not spawned yet),
 * `"mismatch"` (the last spawn was refused because the file changed), `"not declared"`.
 *
 * @category models
 */
export const ChecksumStatus = Schema.Literals(["verified", "pending", "mismatch", "not declared"])

/**
 * @category models
 */
export type ChecksumStatus = typeof ChecksumStatus.Type

/**
 * Everything the doctor knows about one plugin. Times are epoch millis, durations millis.
 * `envVars` are the NAMES of the variables the plugin may receive (allow-listed and explicit); values are never read.
 *
 * @category models
 */
export class PluginDiagnosis extends Schema.Class<PluginDiagnosis>("PluginDiagnosis")({
  id: Schema.String,
  state: Schema.String,
  stateDetail: Schema.optionalKey(Schema.String),
  status: Status,
  groups: Schema.Array(Schema.String),
  pid: Schema.optionalKey(Schema.Int),
  uptimeMillis: Schema.optionalKey(Schema.Number),
  crashesInWindow: Schema.Int,
  consecutiveCrashes: Schema.Int,
  totalCrashes: Schema.Int,
  pendingRequests: Schema.Int,
  nextRestartAt: Schema.optionalKey(Schema.Number),
  lastError: Schema.optionalKey(Schema.String),
  /** The `PluginClientError` reason tag of the plugin's last failure (see `PluginClient.HealthSnapshot`). */
  lastErrorReason: Schema.optionalKey(Schema.String),
  stderrTail: Schema.Array(Schema.String),
  checksum: ChecksumStatus,
  envVars: Schema.Array(Schema.String),
  supportedMethods: Schema.Array(Schema.String)
}) {}

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
export const StartupHealthy = Schema.TaggedStruct("StartupHealthy", { group: Schema.String, check: PluginHealthcheck })
/** @category events */
export type StartupHealthy = typeof StartupHealthy.Type

/**
 * `startup` ended with some servers failed or degraded.
 *
 * @category events
 */
export const StartupDegraded = Schema.TaggedStruct("StartupDegraded", { group: Schema.String, check: PluginHealthcheck })
/** @category events */
export type StartupDegraded = typeof StartupDegraded.Type

/**
 * `startup` ended with no server up.
 *
 * @category events
 */
export const StartupFailed = Schema.TaggedStruct("StartupFailed", { group: Schema.String, check: PluginHealthcheck })
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
  HealthDegraded,
  HealthRecovered
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

// ---------------------------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------------------------

/**
 * What to watch and how. `groups` maps a group name to its plugin ids (as registered with the
 * manager). `discovery` names the methods that list tools and resources (without `tools`, a
 * server's tools are the methods its handshake announced). `probe` turns on periodic probes of
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
}

interface Resolved {
  readonly groups: ReadonlyArray<readonly [string, ReadonlyArray<string>]>
  readonly discovery: {
    readonly tools: string | undefined
    readonly resources: string | undefined
    readonly timeout: Duration.Duration
  }
  readonly probe: { readonly method: string; readonly interval: Duration.Duration; readonly timeout: Duration.Duration }
  readonly probing: boolean
  readonly stderrTailLines: number
}

const defaultDiscoveryTimeout = Duration.seconds(10)
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
        timeout: yield* positiveDuration("discovery.timeout", config.discovery?.timeout, defaultDiscoveryTimeout)
      },
      probe: {
        method: (yield* optionalMethod("probe.method", config.probe?.method)) ?? "health",
        interval: yield* positiveDuration("probe.interval", config.probe?.interval, Duration.seconds(30)),
        timeout: yield* positiveDuration("probe.timeout", config.probe?.timeout, defaultProbeTimeout)
      },
      probing: config.probe !== undefined,
      stderrTailLines
    }
  })

// ---------------------------------------------------------------------------------------------
// pure health rules
// ---------------------------------------------------------------------------------------------

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

/** The answers a discovery method may give: a bare list, or the MCP `{tools}`/`{resources}` shape. */
const ToolEntry = Schema.Union([Schema.String, Schema.Struct({ name: Schema.String })])
const ToolList = Schema.Union([Schema.Array(ToolEntry), Schema.Struct({ tools: Schema.Array(ToolEntry) })])
const ResourceEntry = Schema.Union([Schema.String, Schema.Struct({ uri: Schema.String }), Schema.Struct({ name: Schema.String })])
const ResourceList = Schema.Union([Schema.Array(ResourceEntry), Schema.Struct({ resources: Schema.Array(ResourceEntry) })])
const decodeToolList = Schema.decodeUnknownResult(ToolList)
const decodeResourceList = Schema.decodeUnknownResult(ResourceList)

const describeShape = (u: unknown): string => (JSON.stringify(u) ?? String(u)).slice(0, 120)

/** Tool names from a discovery answer, or why the answer is not a tool list. */
const toolNames = (result: unknown): Result.Result<ReadonlyArray<string>, string> => {
  const decoded = decodeToolList(result)
  if (Result.isFailure(decoded)) return Result.fail(`expected {tools: [{name}…]} or a list of names, got ${describeShape(result)}`)
  const list = decoded.success
  const entries = "tools" in list ? list.tools : list
  return Result.succeed(entries.map((entry) => typeof entry === "string" ? entry : entry.name))
}

/** Resource identifiers (uri, else name) from a discovery answer, or why it is not a list. */
const resourceNames = (result: unknown): Result.Result<ReadonlyArray<string>, string> => {
  const decoded = decodeResourceList(result)
  if (Result.isFailure(decoded)) {
    return Result.fail(`expected {resources: [{uri|name}…]} or a list of uris, got ${describeShape(result)}`)
  }
  const list = decoded.success
  const entries = "resources" in list ? list.resources : list
  return Result.succeed(entries.map((entry) => typeof entry === "string" ? entry : "uri" in entry ? entry.uri : entry.name))
}

// ---------------------------------------------------------------------------------------------
// doctor report
// ---------------------------------------------------------------------------------------------

/** One table cell: a single line, at most `max` characters. */
const cell = (text: string | undefined, max: number): string => {
  const flat = (text ?? "").replace(/\s+/g, " ").trim()
  if (flat === "") return "-"
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/** How many of a group's plugins are healthy, degraded and failed, in words. */
const groupSummary = (plugins: ReadonlyArray<{ readonly status: Status }>): string => {
  const total = plugins.length
  const count = (status: Status) => plugins.filter((p) => p.status === status).length
  const [healthy, degraded, failed] = [count("Healthy"), count("Degraded"), count("Failed")]
  return total === 0
    ? "no plugins in this group"
    : healthy === total
    ? total === 1 ? "its plugin is healthy" : `all ${total} plugins healthy`
    : failed === total
    ? total === 1 ? "its plugin failed" : `all ${total} plugins failed`
    : [`${healthy} of ${plural(total, "plugin")} healthy`, ...(degraded > 0 ? [`${degraded} degraded`] : []), ...(failed > 0 ? [`${failed} failed`] : [])].join(", ")
}

/**
 * One group in the doctor's report, in the words of its reader (a group and its plugins; the
 * claw-code vocabulary of {@link PluginHealthcheck}, where a group is a `pluginName` and its
 * plugins are `servers`, stays in the service API it mirrors): the group's verdict, a summary
 * (`all 3 plugins healthy`, `1 of 2 plugins healthy, 1 failed`), each plugin's status and
 * when it was checked (epoch millis).
 *
 * @category doctor
 */
export class GroupReport extends Schema.Class<GroupReport>("GroupReport")({
  group: Schema.String,
  status: Status,
  summary: Schema.String,
  plugins: Schema.Array(Schema.Struct({ id: Schema.String, status: Status, lastError: Schema.optionalKey(Schema.String) })),
  checkedAt: Schema.Number
}) {
  /** The report of a group from its healthcheck. */
  static fromHealthcheck(check: PluginHealthcheck): GroupReport {
    const plugins = check.servers.map((s) => ({ id: s.serverName, status: s.status, ...(s.lastError === undefined ? {} : { lastError: s.lastError }) }))
    return new GroupReport({ group: check.pluginName, status: check.state, summary: groupSummary(plugins), plugins, checkedAt: check.lastCheck })
  }
}

/** A group's line in the table: its verdict and summary, then each plugin's status. */
const groupLine = (group: GroupReport): string => {
  const members = group.plugins.map((p) => `${p.id} ${p.status}`).join(", ")
  return `group ${group.group}: ${group.status} - ${group.summary}${members === "" ? "" : ` (${members})`}`
}

/**
 * Renders a report as a plain-text table for a terminal: a header, one row per plugin with
 * aligned columns, then one line per group with its aggregate status, then the stderr tails.
 * `STATE` is the process lifecycle (`Running`, `Recovering`…), `HEALTH` the verdict; the crash
 * counts are those in the restart window (`recent`, what the cap counts), in a row (what the
 * backoff counts) and since the host started. Durations are humanised (`1 min 5 s`).
 *
 * @category doctor
 */
export const render = (report: DoctorReport): string => {
  const header = ["PLUGIN", "STATE", "HEALTH", "PID", "UPTIME", "CRASHES recent/in a row/total", "NEXT RESTART", "CHECKSUM", "ENV VARS", "METHODS", "LAST ERROR"]
  const rows = report.plugins.map((p) => [
    cell(p.id, 32),
    p.state,
    p.status,
    p.pid === undefined ? "-" : String(p.pid),
    p.uptimeMillis === undefined ? "-" : formatDuration(p.uptimeMillis),
    `${p.crashesInWindow}/${p.consecutiveCrashes}/${p.totalCrashes}`,
    p.nextRestartAt === undefined ? "-" : `in ${formatDuration(Math.max(0, p.nextRestartAt - report.generatedAt))}`,
    p.checksum,
    cell(p.envVars.join(","), 40),
    cell(p.supportedMethods.join(","), 40),
    cell(p.lastError ?? p.stateDetail, 80)
  ])
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, column) => c.padEnd(widths[column] ?? 0)).join("  ").trimEnd()
  const out = [line(header), ...rows.map(line)]
  if (report.groups.length > 0) out.push("")
  for (const group of report.groups) out.push(groupLine(group))
  for (const p of report.plugins) {
    if (p.stderrTail.length === 0) continue
    const count = p.stderrTail.length
    out.push("", `stderr of ${p.id} (last ${count} line${count === 1 ? "" : "s"}):`, ...p.stderrTail.map((l) => `  | ${l}`))
  }
  return out.join("\n")
}

/**
 * The doctor's findings: one {@link PluginDiagnosis} per registered plugin and one
 * {@link GroupReport} per group, at `generatedAt` (epoch millis). A Schema class, so it
 * encodes to JSON (`Schema.encodeSync(DoctorReport)`); `DoctorReport.render` draws the table.
 *
 * @category doctor
 */
export class DoctorReport extends Schema.Class<DoctorReport>("DoctorReport")({
  generatedAt: Schema.Number,
  plugins: Schema.Array(PluginDiagnosis),
  groups: Schema.Array(GroupReport)
}) {
  /** The terminal table of a report (see {@link render}). */
  static render(report: DoctorReport): string {
    return render(report)
  }
}

const stateDetail = (state: PluginClient.PluginState): string | undefined => {
  switch (state._tag) {
    case "Disabled":
      return state.reason
    case "Backoff":
      return `until ${new Date(state.until).toISOString()}`
    default:
      return undefined
  }
}

const stderrTail = (excerpt: string, lines: number): Array<string> =>
  lines === 0 ? [] : excerpt.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "").slice(-lines)

const checksumStatus = (diagnostics: PluginManager.Diagnostics): ChecksumStatus => {
  const health = diagnostics.health
  if (!diagnostics.checksumDeclared) return "not declared"
  // A refused spawn leaves the `ChecksumMismatch` reason as the last failure.
  if (health.state._tag !== "Running" && health.lastErrorReason === "ChecksumMismatch") return "mismatch"
  return health.spawns > 0 ? "verified" : "pending"
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
  /** The group's health now, from the live state of its plugins. */
  readonly check: (group: string) => Effect.Effect<PluginHealthcheck, UnknownGroup>
  /** Every group's health. */
  readonly checkAll: Effect.Effect<ReadonlyArray<PluginHealthcheck>>
  /**
   * Asks every server of the group for its tools and resources, in parallel, each bounded by the
   * discovery timeout. Like any call, it spawns a lazy plugin that is not running.
   */
  readonly discover: (group: string) => Effect.Effect<DiscoveryResult, UnknownGroup>
  /** `check` and `discover`, folded with {@link degradedMode}. */
  readonly degradedMode: (group: string) => Effect.Effect<DegradedMode, UnknownGroup>
  /** Starts every plugin of the group in parallel, checks it, publishes the startup event and returns the check. */
  readonly startup: (group: string) => Effect.Effect<PluginHealthcheck, UnknownGroup>
  /** Stops every plugin of the group in parallel and publishes `Shutdown`. */
  readonly shutdown: (group: string) => Effect.Effect<void, UnknownGroup>
  /** Runs one probe round now (running plugins only), whether or not periodic probes are on. */
  readonly probeNow: Effect.Effect<void>
  /** Everything about every plugin and group. */
  readonly doctor: Effect.Effect<DoctorReport>
  /** The events published from the moment the stream is run. */
  readonly events: Stream.Stream<HealthEvent>
  /** Subscribes now (no event published after this returns is missed) and streams the events. */
  readonly subscribe: Effect.Effect<Stream.Stream<HealthEvent>, never, Scope.Scope>
}>()("effect-plugin-host/PluginHealth") {}

const errorText = (error: PluginManager.ManagerError | PluginClientError.PluginClientError): string => error.message

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
  const manager = yield* PluginManager.PluginManager
  const events = yield* PubSub.unbounded<HealthEvent>()
  const groups = new Map(resolved.groups)
  const groupNames = resolved.groups.map(([name]) => name)
  const watched = unique(resolved.groups.flatMap(([, ids]) => ids))

  // Error of the last failed probe, per plugin, until a probe passes again.
  const probeFailures = new Map<string, string>()
  // Error of a failed `startup`, per plugin, until the plugin is seen running.
  const startFailures = new Map<string, string>()
  // Tools each plugin announced in its last successful discovery.
  const discovered = new Map<string, ReadonlyArray<string>>()

  const publish = (event: HealthEvent) => PubSub.publish(events, event)
  const groupsOf = (id: string) => resolved.groups.filter(([, ids]) => ids.includes(id)).map(([name]) => name)

  const lookupGroup = (group: string) =>
    Effect.suspend(() => {
      const ids = groups.get(group)
      return ids === undefined ? Effect.fail(new UnknownGroup({ group, known: groupNames })) : Effect.succeed(ids)
    })

  // A plugin that comes up again has recovered from its failed start, even if no check saw it
  // running in between (it may have crashed again since).
  yield* manager.events.pipe(
    Stream.runForEach((event) =>
      event._tag === "Plugin" && event.event._tag === "Ready" ? Effect.sync(() => startFailures.delete(event.id)) : Effect.void
    ),
    Effect.forkScoped
  )

  const overlayOf = (id: string): ServerOverlay => ({
    probeError: probeFailures.get(id),
    startFailure: startFailures.get(id),
    capabilities: discovered.get(id)
  })

  const serverHealth = (id: string): Effect.Effect<ServerHealth> =>
    manager.get(id).pipe(
      Effect.flatMap((client) => client.health),
      Effect.map((health) => {
        if (health.state._tag === "Running") startFailures.delete(id)
        return serverHealthOf(id, health, overlayOf(id))
      }),
      Effect.catchTag("ManagerError", (error) =>
        Effect.succeed(makeServer(id, "Failed", discovered.get(id) ?? [], errorText(error))))
    )

  const checkIds = (group: string, ids: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const servers = yield* Effect.forEach(ids, serverHealth, { concurrency: "unbounded" })
      return aggregate(group, servers, yield* Clock.currentTimeMillis)
    })

  const check: PluginHealth["Service"]["check"] = (group) =>
    lookupGroup(group).pipe(
      Effect.flatMap((ids) => checkIds(group, ids)),
      Effect.withSpan("PluginHealth.check", { attributes: { group } })
    )

  const checkAll: PluginHealth["Service"]["checkAll"] = Effect.forEach(
    resolved.groups,
    ([group, ids]) => checkIds(group, ids)
  )

  // -- discovery -----------------------------------------------------------------------------
  const timeoutText = formatDuration(resolved.discovery.timeout)

  /** One discovery call, bounded (spawn included) by the discovery timeout. */
  const list = (id: string, method: string, parse: (result: unknown) => Result.Result<ReadonlyArray<string>, string>) =>
    manager.call(id, method).pipe(
      Effect.mapError(errorText),
      Effect.timeoutOrElse({
        duration: resolved.discovery.timeout,
        orElse: () => Effect.fail(`no answer to \`${method}\` within ${timeoutText}`)
      }),
      Effect.flatMap((result) => {
        const parsed = parse(result)
        return Result.isSuccess(parsed) ? Effect.succeed(parsed.success) : Effect.fail(`\`${method}\` ${parsed.failure}`)
      }),
      Effect.result
    )

  const discoverServer = (id: string): Effect.Effect<ServerDiscovery> =>
    Effect.gen(function*() {
      const { tools: toolsMethod, resources: resourcesMethod } = resolved.discovery
      const [tools, resources] = yield* Effect.all([
        toolsMethod === undefined
          ? Effect.map(serverHealth(id), (server) =>
            server.status === "Failed"
              ? Result.fail(server.lastError ?? "failed")
              : Result.succeed<ReadonlyArray<string>>(server.capabilities))
          : list(id, toolsMethod, toolNames),
        resourcesMethod === undefined
          ? Effect.succeed(Result.succeed<ReadonlyArray<string>>([]))
          : list(id, resourcesMethod, resourceNames)
      ], { concurrency: "unbounded" })
      if (toolsMethod !== undefined && Result.isSuccess(tools)) discovered.set(id, tools.success)
      const errors = [tools, resources].flatMap((r) => Result.isFailure(r) ? [r.failure] : [])
      return new ServerDiscovery({
        serverName: id,
        tools: Result.isSuccess(tools) ? [...tools.success] : [],
        resources: Result.isSuccess(resources) ? [...resources.success] : [],
        ...(errors.length === 0 ? {} : { error: errors.join("; ") })
      })
    })

  const discover: PluginHealth["Service"]["discover"] = (group) =>
    lookupGroup(group).pipe(
      Effect.flatMap((ids) => Effect.forEach(ids, discoverServer, { concurrency: "unbounded" })),
      Effect.map((servers) =>
        new DiscoveryResult({
          tools: unique(servers.flatMap((s) => s.tools)),
          resources: unique(servers.flatMap((s) => s.resources)),
          partial: servers.some((s) => s.error !== undefined),
          servers
        })
      ),
      Effect.withSpan("PluginHealth.discover", { attributes: { group } })
    )

  // -- lifecycle -----------------------------------------------------------------------------
  const startup: PluginHealth["Service"]["startup"] = (group) =>
    Effect.gen(function*() {
      const ids = yield* lookupGroup(group)
      yield* publish(ConfigValidated.make({ group, plugins: [...ids] }))
      yield* Effect.forEach(ids, (id) =>
        manager.start(id).pipe(
          Effect.matchEffect({
            onFailure: (error) => Effect.sync(() => void startFailures.set(id, errorText(error))),
            onSuccess: () => Effect.sync(() => void startFailures.delete(id))
          })
        ), { concurrency: "unbounded", discard: true })
      const result = yield* checkIds(group, ids)
      yield* publish(
        result.state === "Healthy"
          ? StartupHealthy.make({ group, check: result })
          : result.state === "Degraded"
          ? StartupDegraded.make({ group, check: result })
          : StartupFailed.make({ group, check: result })
      )
      return result
    }).pipe(Effect.withSpan("PluginHealth.startup", { attributes: { group } }))

  const shutdown: PluginHealth["Service"]["shutdown"] = (group) =>
    Effect.gen(function*() {
      const ids = yield* lookupGroup(group)
      yield* Effect.forEach(ids, (id) => manager.stop(id), { concurrency: "unbounded", discard: true })
      for (const id of ids) probeFailures.delete(id)
      yield* publish(Shutdown.make({ group }))
    })

  // -- probes --------------------------------------------------------------------------------
  const { method: probeMethod, timeout: probeTimeout } = resolved.probe

  const probeOne = (id: string): Effect.Effect<void> =>
    Effect.gen(function*() {
      const client = yield* Effect.option(manager.get(id))
      if (Option.isNone(client)) return
      // Never spawn for a probe: only a plugin that is running right now is asked.
      if ((yield* client.value.state)._tag !== "Running") return
      // `requestIfRunning` never spawns and is not activity: probes neither keep a lazy plugin
      // from being reaped nor revive one reaped between the state check and the call.
      const outcome = yield* client.value.requestIfRunning(probeMethod, undefined, { timeout: probeTimeout }).pipe(
        // A plugin without the probe method still proves it is alive by answering -32601.
        Effect.catch((error) =>
          error.reason._tag === "PluginError" && error.reason.code === JsonRpc.ErrorCode.MethodNotFound
            ? Effect.succeed(null)
            : Effect.fail(error)
        ),
        Effect.mapError(errorText),
        // An outer bound in case a call is stuck before it is sent.
        Effect.timeoutOrElse({
          duration: Duration.times(probeTimeout, 2),
          orElse: () => Effect.fail(`no answer to \`${probeMethod}\` within ${formatDuration(probeTimeout)}`)
        }),
        Effect.result
      )
      if (Result.isFailure(outcome)) {
        const wasHealthy = !probeFailures.has(id)
        probeFailures.set(id, outcome.failure)
        if (wasHealthy) {
          yield* Effect.logWarning(`health probe failed: ${outcome.failure}`).pipe(Effect.annotateLogs({ plugin: id }))
          yield* publish(HealthDegraded.make({ plugin: id, groups: groupsOf(id), error: outcome.failure }))
        }
      } else if (probeFailures.delete(id)) {
        yield* Effect.logInfo("health probe passes again").pipe(Effect.annotateLogs({ plugin: id }))
        yield* publish(HealthRecovered.make({ plugin: id, groups: groupsOf(id) }))
      }
    })

  const probeNow: PluginHealth["Service"]["probeNow"] = Effect.forEach(watched, probeOne, {
    concurrency: "unbounded",
    discard: true
  }).pipe(Effect.withSpan("PluginHealth.probe"))

  if (resolved.probing) {
    yield* Effect.sleep(resolved.probe.interval).pipe(
      Effect.andThen(probeNow),
      Effect.forever,
      Effect.forkScoped
    )
  }

  // -- doctor --------------------------------------------------------------------------------
  const diagnose = (diagnostics: PluginManager.Diagnostics): PluginDiagnosis => {
    const health = diagnostics.health
    const server = serverHealthOf(diagnostics.id, health, overlayOf(diagnostics.id))
    const detail = stateDetail(health.state)
    const lastError = health.lastError ?? server.lastError
    return new PluginDiagnosis({
      id: diagnostics.id,
      state: health.state._tag,
      ...(detail === undefined ? {} : { stateDetail: detail }),
      status: server.status,
      groups: groupsOf(diagnostics.id),
      ...(health.pid === undefined ? {} : { pid: health.pid }),
      ...(health.uptime === undefined ? {} : { uptimeMillis: Duration.toMillis(health.uptime) }),
      crashesInWindow: health.crashesInWindow,
      consecutiveCrashes: health.consecutiveCrashes,
      totalCrashes: health.totalCrashes,
      pendingRequests: health.pendingRequests,
      ...(health.nextRestartAt === undefined ? {} : { nextRestartAt: health.nextRestartAt }),
      ...(lastError === undefined ? {} : { lastError }),
      ...(health.lastErrorReason === undefined ? {} : { lastErrorReason: health.lastErrorReason }),
      stderrTail: stderrTail(health.stderrExcerpt, resolved.stderrTailLines),
      checksum: checksumStatus(diagnostics),
      envVars: [...diagnostics.envVarNames],
      supportedMethods: [...(health.supportedMethods ?? [])]
    })
  }

  const doctor: PluginHealth["Service"]["doctor"] = Effect.gen(function*() {
    const diagnostics = yield* manager.diagnostics
    const plugins = diagnostics.map(diagnose)
    const checks = yield* checkAll
    return new DoctorReport({ generatedAt: yield* Clock.currentTimeMillis, plugins, groups: checks.map(GroupReport.fromHealthcheck) })
  }).pipe(Effect.withSpan("PluginHealth.doctor"))

  return PluginHealth.of({
    groups: resolved.groups,
    check,
    checkAll,
    discover,
    degradedMode: (group) =>
      Effect.all([check(group), discover(group)]).pipe(Effect.map(([result, discovery]) => degradedMode(result, discovery))),
    startup,
    shutdown,
    probeNow,
    doctor,
    events: Stream.fromPubSub(events),
    subscribe: Effect.map(PubSub.subscribe(events), Stream.fromSubscription)
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
