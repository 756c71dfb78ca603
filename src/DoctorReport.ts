/**
 * The doctor's report: everything the host knows about every plugin and every group, as a
 * Schema-encodable {@link DoctorReport} (`plugin-host doctor --json` prints it) with a terminal
 * table ({@link render}).
 *
 * A {@link PluginDiagnosis} is built from the manager's `Diagnostics` of one plugin and its
 * server health ({@link PluginDiagnosis.fromDiagnostics}); a {@link GroupReport} from a group's
 * `PluginHealthcheck`, in the words of its reader (groups and plugins, not claw-code's
 * `pluginName` and `servers`); remote plugins (served over NATS) are their
 * `GroupHealth.RemoteHealthcheck`s, each with the instances discovery found. `PluginHealth.doctor` gathers both; this module only shapes and
 * draws them, so a report decoded from JSON renders the same table.
 *
 * A public module of its own, because a report is read far from the service that wrote it (a CLI,
 * a CI job reading `doctor.json`). `PluginHealth` re-exports the report's models and `render`,
 * where they have always been reachable.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as GroupHealth from "./GroupHealth.ts"
import { formatDuration } from "./internal/formatDuration.ts"
import type * as PluginClient from "./PluginClient.ts"
import * as Leftovers from "./Leftovers.ts"
import type * as PluginManager from "./PluginManager.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * Whether a plugin's executable is checked: `"verified"` (a checksum is declared and is checked
 * before every spawn; the plugin has spawned with it), `"pending"` (declared, not spawned yet),
 * `"mismatch"` (the last spawn was refused because the file changed), `"not declared"`, or
 * `"remote"` (the plugin runs on other machines: this host runs nothing of it to verify).
 *
 * @category models
 */
export const ChecksumStatus = Schema.Literals(["verified", "pending", "mismatch", "not declared", "remote"])

/**
 * @category models
 */
export type ChecksumStatus = typeof ChecksumStatus.Type

/**
 * How this host ends a plugin's whole tree at stop: `mode` is `"cgroup"` (a cgroup v2 group per
 * plugin, `cgroup.kill`: everything the plugin started) or `"process tree"` (no cgroup the host
 * may create: the processes `/proc` walks find, from the plugin's pid, session and group; one
 * that left the session after its parent exited can escape). `escaped` counts processes found in
 * a stopped plugin's tree that were still there after its sweep, in this host process. With
 * cgroups, `cgroupMount` is the cgroup2 mount the groups are under and whether it has
 * `favordynmods`: without it, each plugin's move into its group waits for a kernel RCU grace
 * period (5–16 ms measured on Linux 6.18) before the plugin starts.
 *
 * @category models
 */
export const Containment = Schema.Struct({
  mode: Schema.Literals(["cgroup", "process tree"]),
  escaped: Schema.Int,
  cgroupMount: Schema.optionalKey(Schema.Struct({ path: Schema.String, favordynmods: Schema.Boolean }))
})

/**
 * @category models
 */
export type Containment = typeof Containment.Type

/**
 * Exactly what is verified before each spawn of a plugin, as read when the report was made: the
 * executable (`verified`: `checksum_sha256`, run from a private copy of the hashed bytes;
 * `verified in place`: named in `checksums`; `mismatch`; `missing`; `not declared`), each file
 * declared in `checksums` (`verified`, `mismatch`, `missing`), and a flag
 * `interpreter script not verified` for every file an interpreter runs that no checksum covers.
 *
 * @category models
 */
export const Verification = Schema.Struct({
  executable: Schema.Struct({
    path: Schema.String,
    status: Schema.Literals(["verified", "verified in place", "mismatch", "missing", "not declared"])
  }),
  files: Schema.Array(Schema.Struct({ path: Schema.String, status: Schema.Literals(["verified", "mismatch", "missing"]) })),
  flags: Schema.Array(Schema.Struct({ flag: Schema.Literal("interpreter script not verified"), file: Schema.String }))
})

/**
 * @category models
 */
export type Verification = typeof Verification.Type

/**
 * What the doctor says about a plugin's environment: `unsafeEnvVars`, the loader/interpreter
 * injection variables (`NODE_OPTIONS`, `LD_PRELOAD`…) it is passed because its manifest marks
 * them (`unsafe_env_vars`); `interpreter`, when the plugin gets no `PATH` and its executable is a
 * `#!/usr/bin/env` script, the shebang and the interpreter the host resolved on its own `PATH`;
 * `problem`, why a start would fail (an unmarked injection variable, an interpreter not found).
 *
 * @category models
 */
export const EnvironmentDiagnosis = Schema.Struct({
  unsafeEnvVars: Schema.Array(Schema.String),
  interpreter: Schema.optionalKey(Schema.Struct({ shebang: Schema.String, resolved: Schema.String })),
  problem: Schema.optionalKey(Schema.String)
})

/**
 * @category models
 */
export type EnvironmentDiagnosis = typeof EnvironmentDiagnosis.Type

const noEnvironment: EnvironmentDiagnosis = { unsafeEnvVars: [] }

/**
 * What {@link PluginDiagnosis.fromDiagnostics} needs beside the manager's diagnostics: the
 * plugin's server health (as a check sees it), the groups it belongs to, and how many stderr
 * lines to keep.
 *
 * @category models
 */
export interface DiagnosisContext {
  readonly server: GroupHealth.ServerHealth
  readonly groups: ReadonlyArray<string>
  readonly stderrTailLines: number
  /** What each spawn verifies, when it was read (the manager's `diagnostics.verification`). */
  readonly verification?: Verification | undefined
}

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
  status: GroupHealth.Status,
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
  supportedMethods: Schema.Array(Schema.String),
  /** The marked injection variables it is passed and the interpreter the host resolved (see {@link EnvironmentDiagnosis}). */
  environment: EnvironmentDiagnosis.pipe(
    Schema.withDecodingDefaultKey(Effect.succeed(noEnvironment)),
    Schema.withConstructorDefault(Effect.succeed(noEnvironment))
  ),
  /** What each spawn verifies (absent when the diagnostics did not inspect the files). */
  verification: Schema.optionalKey(Verification)
}) {
  /**
   * The diagnosis of one plugin from the manager's diagnostics: its live health, its verdict
   * (`context.server`), the last `stderrTailLines` non-blank stderr lines, and its checksum
   * status. The plugin's own last error wins over the verdict's.
   */
  static fromDiagnostics(diagnostics: PluginManager.Diagnostics, context: DiagnosisContext): PluginDiagnosis {
    const health = diagnostics.health
    const detail = stateDetail(health.state)
    const lastError = health.lastError ?? context.server.lastError
    return new PluginDiagnosis({
      id: diagnostics.id,
      state: health.state._tag,
      ...(detail === undefined ? {} : { stateDetail: detail }),
      status: context.server.status,
      groups: [...context.groups],
      ...(health.pid === undefined ? {} : { pid: health.pid }),
      ...(health.uptime === undefined ? {} : { uptimeMillis: Duration.toMillis(health.uptime) }),
      crashesInWindow: health.crashesInWindow,
      consecutiveCrashes: health.consecutiveCrashes,
      totalCrashes: health.totalCrashes,
      pendingRequests: health.pendingRequests,
      ...(health.nextRestartAt === undefined ? {} : { nextRestartAt: health.nextRestartAt }),
      ...(lastError === undefined ? {} : { lastError }),
      ...(health.lastErrorReason === undefined ? {} : { lastErrorReason: health.lastErrorReason }),
      stderrTail: stderrTail(health.stderrExcerpt, context.stderrTailLines),
      checksum: checksumStatus(diagnostics),
      envVars: [...diagnostics.envVarNames],
      supportedMethods: [...(health.supportedMethods ?? [])],
      environment: environmentOf(diagnostics),
      ...(context.verification === undefined ? {} : { verification: context.verification })
    })
  }
}

/**
 * One group in the doctor's report, in the words of its reader (a group and its plugins; the
 * claw-code vocabulary of `PluginHealthcheck`, where a group is a `pluginName` and its
 * plugins are `servers`, stays in the service API it mirrors): the group's lifecycle state
 * (`status`: `Starting`, `Healthy`, `Degraded`, `Failed`, `ShuttingDown`, `Stopped`; reports
 * written before lifecycles hold only the three verdicts), a summary (`all 3 plugins healthy`,
 * `1 of 2 plugins healthy, 1 failed`, `all 2 plugins stopped`), each plugin's status and when it
 * was checked (epoch millis). `degradedMode` is there only when the group is `Degraded`;
 * `discovery` is the group's last discovery (tools with their descriptions and input schemas,
 * resources with their mime types), when the service ran one.
 *
 * @category doctor
 */
export class GroupReport extends Schema.Class<GroupReport>("GroupReport")({
  group: Schema.String,
  status: GroupHealth.Lifecycle,
  summary: Schema.String,
  plugins: Schema.Array(Schema.Struct({ id: Schema.String, status: GroupHealth.Status, lastError: Schema.optionalKey(Schema.String) })),
  checkedAt: Schema.Number,
  degradedMode: Schema.optionalKey(GroupHealth.DegradedMode),
  discovery: Schema.optionalKey(GroupHealth.DiscoveryResult)
}) {
  /**
   * The report of a group from its healthcheck and its last discovery, if any. Without a
   * discovery, the degraded mode reads the tools of the servers that are up from their
   * capabilities.
   */
  static fromHealthcheck(check: GroupHealth.PluginHealthcheck, discovery?: GroupHealth.DiscoveryResult | undefined): GroupReport {
    const plugins = check.servers.map((s) => ({ id: s.serverName, status: s.status, ...(s.lastError === undefined ? {} : { lastError: s.lastError }) }))
    const degraded = GroupHealth.degradedMode(check, discovery ?? capabilitiesAsDiscovery(check))
    return new GroupReport({
      group: check.pluginName,
      status: check.state,
      summary: check.state === "Stopped" ? stoppedSummary(plugins.length) : groupSummary(plugins),
      plugins,
      checkedAt: check.lastCheck,
      ...(Option.isSome(degraded) ? { degradedMode: degraded.value } : {}),
      ...(discovery === undefined ? {} : { discovery })
    })
  }
}

/** What the servers of a check offer, as a discovery, for a group never discovered. */
const capabilitiesAsDiscovery = (check: GroupHealth.PluginHealthcheck): GroupHealth.DiscoveryResult =>
  GroupHealth.discoveryOf(check.servers.map((s) => new GroupHealth.ServerDiscovery({ serverName: s.serverName, tools: [...s.capabilities], resources: [] })))

const stoppedSummary = (total: number): string => total === 1 ? "its plugin is stopped" : `all ${total} plugins stopped`

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
  groups: Schema.Array(GroupReport),
  /** Plugins served over NATS, with the instances discovery found (absent when none is watched). */
  remotes: Schema.optionalKey(Schema.Array(GroupHealth.RemoteHealthcheck)),
  /** Processes that hosts killed before this one left running, and whether this host reaped them (see `Leftovers`). */
  leftovers: Schema.optionalKey(Schema.Array(Leftovers.Leftover)),
  /** How the host contains plugin trees (absent in reports from hosts that did not say). */
  containment: Schema.optionalKey(Containment)
}) {
  /** The terminal table of a report (see {@link render}). */
  static render(report: DoctorReport): string {
    return render(report)
  }
}

// ---------------------------------------------------------------------------------------------
// diagnosis
// ---------------------------------------------------------------------------------------------

/** What the `STATE` column cannot say: why a plugin is disabled, until when it backs off. */
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
  if (diagnostics.remote !== undefined) return "remote"
  if (!diagnostics.checksumDeclared) return "not declared"
  // A refused spawn leaves the `ChecksumMismatch` reason as the last failure.
  if (health.state._tag !== "Running" && health.lastErrorReason === "ChecksumMismatch") return "mismatch"
  return health.spawns > 0 ? "verified" : "pending"
}

const environmentOf = (diagnostics: PluginManager.Diagnostics): EnvironmentDiagnosis => {
  const environment = diagnostics.environment
  if (environment === undefined) return noEnvironment
  return {
    unsafeEnvVars: [...environment.unsafeEnvVars],
    ...(environment.interpreter === undefined ? {} : { interpreter: { ...environment.interpreter } }),
    ...(environment.problem === undefined ? {} : { problem: environment.problem })
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/** How many of a group's plugins are healthy, degraded and failed, in words. */
const groupSummary = (plugins: ReadonlyArray<{ readonly status: GroupHealth.Status }>): string => {
  const total = plugins.length
  const count = (status: GroupHealth.Status) => plugins.filter((p) => p.status === status).length
  const [healthy, degraded, failed] = [count("Healthy"), count("Degraded"), count("Failed")]
  return total === 0
    ? "no plugins in this group"
    : healthy === total
    ? total === 1 ? "its plugin is healthy" : `all ${total} plugins healthy`
    : failed === total
    ? total === 1 ? "its plugin failed" : `all ${total} plugins failed`
    : [`${healthy} of ${plural(total, "plugin")} healthy`, ...(degraded > 0 ? [`${degraded} degraded`] : []), ...(failed > 0 ? [`${failed} failed`] : [])].join(", ")
}

// ---------------------------------------------------------------------------------------------
// rendering
// ---------------------------------------------------------------------------------------------

/** One table cell: a single line, at most `max` characters. */
const cell = (text: string | undefined, max: number): string => {
  const flat = (text ?? "").replace(/\s+/g, " ").trim()
  if (flat === "") return "-"
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`
}

/**
 * A group's lines in the table: its state and summary, then each plugin's status; indented under
 * it, what still works when it is degraded, and the tools and resources it announced last.
 */
const groupLines = (group: GroupReport): Array<string> => {
  const members = group.plugins.map((p) => `${p.id} ${p.status}`).join(", ")
  return [
    `group ${group.group}: ${group.status} - ${group.summary}${members === "" ? "" : ` (${members})`}`,
    ...(group.degradedMode === undefined ? [] : [degradedLine(group.degradedMode)]),
    ...(group.discovery === undefined ? [] : discoveryLines(group.discovery))
  ]
}

const listOrNone = (items: ReadonlyArray<string>): string => items.length === 0 ? "none" : items.join(", ")

/** What still works, in the reader's words (the claw-code `reason` counts "servers"; `--json` keeps it). */
const degradedLine = (mode: GroupHealth.DegradedMode): string =>
  `  degraded mode: still available ${listOrNone(mode.available)}; unavailable ${listOrNone(mode.unavailable)}`

/** The tools (with their descriptions; `--json` has the input schemas) and resources (with their mime types) of a discovery. */
const discoveryLines = (discovery: GroupHealth.DiscoveryResult): Array<string> => {
  const tools = discovery.toolDetails.length > 0
    ? discovery.toolDetails.map((t) => t.description === undefined ? t.name : `${t.name} (${cell(t.description, 60)})`)
    : discovery.tools
  const resources = discovery.resourceDetails.length > 0
    ? discovery.resourceDetails.map((r) => r.mimeType === undefined ? r.uri : `${r.uri} [${r.mimeType}]`)
    : discovery.resources
  return [
    `  tools: ${listOrNone(tools)}`,
    `  resources: ${listOrNone(resources)}${discovery.partial ? " (partial: some plugins did not answer)" : ""}`
  ]
}

const header = ["PLUGIN", "STATE", "HEALTH", "PID", "UPTIME", "CRASHES recent/in a row/total", "NEXT RESTART", "CHECKSUM", "ENV VARS", "METHODS", "LAST ERROR"]

/** One plugin's cells, in {@link header} order. */
const pluginRow = (p: PluginDiagnosis, generatedAt: number): Array<string> => [
  cell(p.id, 32),
  p.state,
  p.status,
  p.pid === undefined ? "-" : String(p.pid),
  p.uptimeMillis === undefined ? "-" : formatDuration(p.uptimeMillis),
  `${p.crashesInWindow}/${p.consecutiveCrashes}/${p.totalCrashes}`,
  p.nextRestartAt === undefined ? "-" : `in ${formatDuration(Math.max(0, p.nextRestartAt - generatedAt))}`,
  p.checksum,
  cell(p.envVars.join(","), 40),
  cell(p.supportedMethods.join(","), 40),
  cell(p.lastError ?? p.stateDetail, 80)
]

/** The stderr tail of a plugin as an indented block under its title (nothing when it is empty). */
/** The environment lines of every plugin that has one, after a blank line. */
const environmentBlock = (plugins: ReadonlyArray<PluginDiagnosis>): Array<string> => {
  const lines = plugins.flatMap(environmentLine)
  return lines.length === 0 ? [] : ["", ...lines]
}

const stderrBlock = (p: PluginDiagnosis): Array<string> => {
  const count = p.stderrTail.length
  return count === 0 ? [] : ["", `stderr of ${p.id} (last ${count} line${count === 1 ? "" : "s"}):`, ...p.stderrTail.map((l) => `  | ${l}`)]
}

/**
 * A remote plugin's lines: its state, service (marked when it is watched only because it
 * answered discovery) and verdict, then one indented line per instance
 * (version, ping latency, requests and errors since it started, the last error an endpoint
 * reported).
 */
const remoteLines = (remote: GroupHealth.RemoteHealthcheck): Array<string> => [
  `remote ${remote.plugin} (NATS service ${remote.service}${remote.discovered === true ? ", answering but in no manifest" : ""}): ` +
  `${remote.state} - ${remote.message}`,
  ...remote.instances.map((i) =>
    `  instance ${i.id} v${i.version}: ping ${formatLatency(i.latencyMillis)}, ${i.requests} requests, ${i.errors} errors` +
    (i.lastError === undefined ? "" : `, last error: ${cell(i.lastError, 80)}`)
  )
]

/** A ping time: sub-millisecond ones to a tenth of a millisecond. */
const formatLatency = (millis: number): string => millis < 10 ? `${(Math.round(millis * 10) / 10).toFixed(1)} ms` : formatDuration(Math.round(millis))

/** The containment line: how this host ends plugin trees, and what can escape. */
const containmentLine = (containment: Containment): string =>
  (containment.mode === "cgroup"
    ? "containment: cgroup (a plugin's whole tree ends with it)"
    : "containment: process tree (no cgroup: processes found by /proc walks end with their plugin; one that leaves the plugin's session after its parent exited can escape)") +
  (containment.escaped > 0 ? `; ${containment.escaped} process${containment.escaped === 1 ? "" : "es"} outlived a stop` : "")

/** The fix for slow moves into cgroups, when the mount lacks `favordynmods` (nothing otherwise). */
const favordynmodsLine = (containment: Containment): Array<string> =>
  containment.mode === "cgroup" && containment.cgroupMount?.favordynmods === false
    ? [
      `cgroup moves: ${containment.cgroupMount.path} is mounted without favordynmods, so every plugin start waits for a kernel RCU grace period (5–16 ms) to enter its group; ` +
      `fix: \`mount -o remount,favordynmods none ${containment.cgroupMount.path}\` (Linux 6.0+; or boot with \`cgroup_favordynmods=true\`, 6.7+), at some cost to every fork and exit`
    ]
    : []

/** What hosts that died left running, one line each (nothing when there was none). */
const leftoversBlock = (leftovers: ReadonlyArray<Leftovers.Leftover> | undefined): Array<string> =>
  leftovers === undefined || leftovers.length === 0 ? [] : [
    "",
    `left running by hosts that died (${leftovers.filter((l) => l.reaped).length} of ${leftovers.length} reaped):`,
    ...leftovers.map((l) => `  ${l.plugin} pid ${l.pid}: ${l.reaped ? "reaped" : "still running after SIGKILL"}`)
  ]

/**
 * One line for a plugin whose spawns leave something unverified or find something changed: an
 * interpreter script no checksum covers, a declared file that differs or is gone. An executable
 * without a checksum is the `CHECKSUM` column's to say.
 */
const verificationLine = (p: PluginDiagnosis): Array<string> => {
  const v = p.verification
  if (v === undefined) return []
  const problems = [
    ...(v.executable.status === "mismatch" || v.executable.status === "missing" ? [`executable ${v.executable.status}`] : []),
    ...v.files.filter((f) => f.status !== "verified").map((f) => `${f.path} ${f.status}`),
    ...v.flags.map((f) => `${f.flag}: ${f.file}`)
  ]
  return problems.length === 0 ? [] : [`verification of ${p.id}: ${problems.join("; ")}`]
}

/**
 * What a plugin's environment needs a reader to know, as one line under the table (nothing when
 * it passes no marked injection variable and no interpreter was resolved).
 */
const environmentLine = (p: PluginDiagnosis): Array<string> => {
  const { unsafeEnvVars, interpreter, problem } = p.environment
  const parts = [
    ...(unsafeEnvVars.length === 0 ? [] : [`passes injection variables marked unsafe: ${unsafeEnvVars.join(", ")}`]),
    ...(interpreter === undefined ? [] : [`runs \`${interpreter.shebang}\` as ${interpreter.resolved} (resolved on the host's PATH; the plugin gets no PATH)`]),
    ...(problem === undefined ? [] : [`will not start: ${problem}`])
  ]
  return parts.length === 0 ? [] : [`environment of ${p.id}: ${parts.join("; ")}`]
}

/**
 * Renders a report as a plain-text table for a terminal: a header, one row per plugin with
 * aligned columns, then one line per group with its lifecycle state (and, indented under it, its
 * degraded mode when degraded and its last discovery), then each remote plugin with its state and
 * one line per instance (`instance X v1.0.0: ping 0.4 ms, 12 requests, 0 errors`), then what a plugin's
 * environment needs a reader to know (marked injection variables, a resolved interpreter, why it
 * would not start), then one line per plugin whose spawns leave something unverified
 * (`verification of x: interpreter script not verified: /plugins/x/main.py`), then the stderr
 * tails and the processes hosts that died left running.
 * `STATE` is the process lifecycle (`Running`, `Recovering`…), `HEALTH` the verdict; the crash
 * counts are those in the restart window (`recent`, what the cap counts), in a row (what the
 * backoff counts) and since the host started; then how the host contains plugin trees. Durations are humanised (`1 min 5 s`).
 *
 * @category doctor
 */
export const render = (report: DoctorReport): string => {
  const rows = report.plugins.map((p) => pluginRow(p, report.generatedAt))
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, column) => c.padEnd(widths[column] ?? 0)).join("  ").trimEnd()
  return [
    line(header),
    ...rows.map(line),
    ...(report.groups.length > 0 ? [""] : []),
    ...report.groups.flatMap(groupLines),
    ...(report.remotes === undefined || report.remotes.length === 0 ? [] : ["", ...report.remotes.flatMap(remoteLines)]),
    ...environmentBlock(report.plugins),
    ...(report.plugins.some((p) => verificationLine(p).length > 0) ? [""] : []),
    ...report.plugins.flatMap(verificationLine),
    ...report.plugins.flatMap(stderrBlock),
    ...leftoversBlock(report.leftovers),
    ...(report.containment === undefined ? [] : ["", containmentLine(report.containment), ...favordynmodsLine(report.containment)])
  ].join("\n")
}
