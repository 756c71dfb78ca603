/**
 * The `plugin-host` commands: `doctor`, `call`, `tick`, `run`, `init`, `checksum`, `schema`,
 * `examples` and `demo`.
 *
 * Each command is a thin layer over the library (`PluginManifest` discovery, `PluginClient`,
 * `PluginManager` + `PluginHealth`, `PollerRouter`), so what the command line shows is what an
 * embedding host gets. The lifetime policy of the plugins a command hosts is read like an
 * embedding host reads it, through `LifetimePolicy.configWithDefaults` (every `PLUGIN_HOST_*`
 * variable), over the command's own defaults (shorter shutdown deadlines, so a command ends
 * promptly); a flag (`call --timeout`) overrides both. Failures end as a {@link CliFailure}: a
 * message for stderr and an exit code; results go to stdout.
 *
 * Remote plugins (manifests with a `[remote]` table) are hosted beside local ones: on the `--nats`
 * connection when given (for manifests naming no servers of their own), else on the servers the
 * manifest or `PLUGIN_HOST_NATS_SERVERS[_<SET>]` names. `doctor` reports each with the instances
 * discovery finds, judged by its manifest's `min_instances` (degraded below, failed at zero, which
 * fails the command), and with `--nats` also lists every other service answering `$SRV.PING`
 * there, marked "answering but in no manifest" and never failing the command.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Argument, Command, Flag } from "effect/cli"
import * as Broker from "../Broker.ts"
import * as Handshake from "../Handshake.ts"
import * as NatsMicro from "../internal/natsMicro.ts"
import * as Leftovers from "../Leftovers.ts"
import * as LifetimePolicy from "../LifetimePolicy.ts"
import * as PluginClient from "../PluginClient.ts"
import * as PluginClientError from "../PluginClientError.ts"
import * as PluginHealth from "../PluginHealth.ts"
import * as PluginManager from "../PluginManager.ts"
import * as PluginManifest from "../PluginManifest.ts"
import * as Poller from "../Poller.ts"
import * as PollerRouter from "../PollerRouter.ts"
import * as RemotePlugin from "../RemotePlugin.ts"
import { CliFailure, ExitCode, fromConfigError } from "./CliFailure.ts"
import * as ChecksumCommand from "./ChecksumCommand.ts"
import * as Demo from "./Demo.ts"
import * as Init from "./Init.ts"
import * as PluginDirectory from "./PluginDirectory.ts"
import * as SchemaCommand from "./SchemaCommand.ts"
import * as StatusView from "./StatusView.ts"

// ---------------------------------------------------------------------------------------------
// shared
// ---------------------------------------------------------------------------------------------

const dirFlag = Flag.String("dir").pipe(
  Flag.withDescription("Plugin directory (default: ./plugins if it exists, else the bundled examples)"),
  Flag.optional
)

const natsFlag = Flag.String("nats").pipe(
  Flag.withDescription("NATS server URL(s), comma-separated, for plugins that run elsewhere (e.g. nats://127.0.0.1:4222)"),
  Flag.optional
)

/** Defaults of `doctor`, `call` and `tick` where no variable is set: short grace so the command ends promptly. */
const commandDefaults = LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds", drainTimeout: "2 seconds", idleTimeout: "10 minutes" })

/** Defaults of `run` where no variable is set: always on, restarted with backoff. */
const runDefaults = LifetimePolicy.makeUnsafe({ ...LifetimePolicy.alwaysOn, shutdownGrace: "5 seconds", drainTimeout: "2 seconds" })

/** The `PLUGIN_HOST_*` policy over a command's defaults; an invalid variable is a usage failure. */
const policyOver = (defaults: LifetimePolicy.LifetimePolicy) =>
  LifetimePolicy.configWithDefaults(defaults).pipe(Effect.mapError(fromConfigError))

const isEphemeral = (manifest: PluginManifest.PluginManifest) => manifest.poller?.lifecycle === "ephemeral"

/** A plugin's typed error as a command failure: message and reason tag. */
const pluginFailure = (error: PluginClientError.PluginClientError) =>
  new CliFailure({ message: `${error.message} [${error.reason._tag}]`, exitCode: ExitCode.Failed })

const parseJson = (what: string, text: string) =>
  Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (cause) =>
      new CliFailure({
        message: `${what} is not valid JSON: ${cause instanceof Error ? cause.message : String(cause)}`,
        exitCode: ExitCode.Usage
      })
  })

const durationFrom = (what: string, text: string) => {
  const parsed = LifetimePolicy.parseDuration(text)
  return parsed !== undefined && Duration.toMillis(parsed) > 0
    ? Effect.succeed(parsed)
    : Effect.fail(new CliFailure({ message: `${what} must be a duration like 5s, 500ms or 2m (got "${text}")`, exitCode: ExitCode.Usage }))
}

/**
 * How the manager reaches remote plugins: under `--nats`, that connection for manifests naming no
 * servers and no server set; otherwise (and for the others) a connection of their own to the
 * servers their manifest or the `PLUGIN_HOST_NATS_SERVERS[_<SET>]` variables name.
 */
const remoteBrokers = (broker: Option.Option<Broker.Broker["Service"]>): PluginManager.BrokerFactory => (target) =>
  Option.isSome(broker) && target.servers === undefined && target.serverSet === undefined
    ? Effect.succeed(broker.value)
    : RemotePlugin.natsBrokers({ name: "plugin-host" })(target)

/** The discovery methods the manifests declare, by plugin name. */
const declaredDiscovery = (valid: ReadonlyArray<PluginManifest.DiscoveredValid>) =>
  Object.fromEntries(valid.flatMap((d) => d.manifest.discovery === undefined ? [] : [[d.manifest.name, d.manifest.discovery] as const]))

/** The manager hosting every discovered plugin (remote ones too, under `--nats`), with a health view over them. */
const hostAll = (
  valid: ReadonlyArray<PluginManifest.DiscoveredValid>,
  policy: LifetimePolicy.LifetimePolicy,
  handshake: Handshake.Handshake = Handshake.none
) =>
  Effect.gen(function*() {
    const manager = yield* PluginManager.make({ brokers: remoteBrokers(yield* Effect.serviceOption(Broker.Broker)) })
    // A plugin the manager refuses (a remote one whose servers cannot be reached…) is warned of
    // here, and failed by the doctor.
    const refused: Array<string> = []
    for (const found of valid) {
      yield* manager.register(found.manifest, {
        policy,
        handshake: isEphemeral(found.manifest) ? Handshake.none : handshake
      }).pipe(Effect.catch((error) => {
        refused.push(`${found.manifest.name} could not be hosted: ${error.message}`)
        return Console.error(`warning: ${error.message}`)
      }))
    }
    const health = yield* PluginHealth.make({
      groups: Object.fromEntries([
        ["plugins", valid.filter((d) => !isEphemeral(d.manifest)).map((d) => d.manifest.name)] as const,
        ["pollers", valid.filter((d) => isEphemeral(d.manifest)).map((d) => d.manifest.name)] as const
      ].filter(([, ids]) => ids.length > 0)),
      discovery: { plugins: declaredDiscovery(valid) },
      probe: { interval: "1 hour", timeout: "2 seconds" }
    }).pipe(
      Effect.provideService(PluginManager.PluginManager, manager),
      Effect.mapError((error) => new CliFailure({ message: error.message, exitCode: ExitCode.Failed }))
    )
    return { manager, health, refused }
  })

// ---------------------------------------------------------------------------------------------
// commands
// ---------------------------------------------------------------------------------------------

const call = Command.make("call", {
  plugin: Argument.String("plugin").pipe(Argument.withDescription("Plugin name (from its manifest)")),
  method: Argument.String("method").pipe(Argument.withDescription("Method to call")),
  params: Argument.String("params").pipe(Argument.withDescription("Params as JSON"), Argument.optional),
  timeout: Flag.String("timeout").pipe(
    Flag.withDescription("Call timeout (default: PLUGIN_HOST_REQUEST_TIMEOUT, else 30s)"),
    Flag.optional
  ),
  dir: dirFlag
}, (input) =>
  Effect.gen(function*() {
    const configured = yield* policyOver(commandDefaults)
    const flagged = Option.isSome(input.timeout) ? yield* durationFrom("--timeout", input.timeout.value) : undefined
    const timeout = flagged ?? configured.requestTimeout
    // The flag wins over the configured ceiling too, or a long --timeout would be cut silently.
    const policy = flagged === undefined || Duration.isLessThanOrEqualTo(flagged, configured.maxRequestTimeout)
      ? configured
      : { ...configured, maxRequestTimeout: flagged }
    const params = Option.isSome(input.params) ? yield* parseJson("PARAMS_JSON", input.params.value) : undefined
    const dir = yield* PluginDirectory.resolve(input.dir)
    const found = yield* PluginDirectory.find(dir, input.plugin)
    if (isEphemeral(found.manifest)) {
      return yield* new CliFailure({ message: `plugin \`${input.plugin}\` is an ephemeral poller; use \`plugin-host tick\``, exitCode: ExitCode.Failed })
    }
    const client = yield* PluginClient.make(found.manifest, { policy })
    const result = yield* client.request(input.method, params, { timeout }).pipe(Effect.mapError(pluginFailure))
    yield* Console.log(JSON.stringify(result, null, 2))
  }).pipe(Effect.scoped)).pipe(
    Command.withDescription("Call one method of a plugin and print the result"),
    Command.withExamples([{ command: "plugin-host call echo echo '{\"hello\":1}'", description: "Echo a value" }])
  )

const tick = Command.make("tick", {
  kind: Argument.String("kind").pipe(Argument.withDescription("Poller kind, e.g. rss")),
  cursor: Flag.String("cursor").pipe(Flag.withDescription("Cursor (URL-safe base64)"), Flag.optional),
  config: Flag.String("config").pipe(Flag.withDescription("Job config as JSON"), Flag.withDefault("{}")),
  dir: dirFlag,
  nats: natsFlag
}, (input) =>
  Effect.gen(function*() {
    const config = yield* parseJson("--config", input.config)
    const cursor = Option.isNone(input.cursor) ? undefined : Poller.decodeCursor(input.cursor.value)
    if (cursor !== undefined && Result.isFailure(cursor)) {
      return yield* new CliFailure({ message: `--cursor: ${cursor.failure}`, exitCode: ExitCode.Usage })
    }
    const policy = yield* policyOver(commandDefaults)
    const dir = yield* PluginDirectory.resolve(input.dir)
    const { valid } = yield* PluginDirectory.discover(dir)
    const router = yield* PollerRouter.make
    for (const found of valid) {
      if (found.manifest.poller === undefined) continue
      yield* router.register(found.manifest, { policy }).pipe(
        Effect.catch((error) => Console.error(`warning: ${error.message}`))
      )
    }
    const now = yield* Clock.currentTimeMillis
    const ack = yield* router.tick(input.kind, {
      jobId: "cli",
      agentId: "plugin-host",
      config,
      cursor: cursor === undefined ? undefined : cursor.success,
      now: new Date(now),
      intervalHint: "60 seconds"
    }).pipe(Effect.mapError((error) => new CliFailure({ message: `${error.message} [${error.reason._tag}]`, exitCode: ExitCode.Failed })))
    yield* Console.log(JSON.stringify({
      nextCursor: ack.nextCursor === undefined ? null : Poller.encodeCursor(ack.nextCursor),
      nextIntervalSecs: ack.nextIntervalHint === undefined ? null : Duration.toSeconds(ack.nextIntervalHint),
      metrics: ack.metrics
    }, null, 2))
  }).pipe(Effect.scoped, (effect) => withBroker(effect, input.nats))).pipe(
    Command.withDescription("Run one poller tick through the router and print the TickAck")
  )

/** `--nats a:4222,b:4222`: one or several servers, comma-separated. */
const serversOf = (flag: string): Array<string> => flag.split(",").map((s) => s.trim()).filter((s) => s !== "")

/** Provides a NATS broker when `--nats` is given (loaded only then). */
const withBroker = <A, E, R>(effect: Effect.Effect<A, E, R>, nats: Option.Option<string>) =>
  Option.isNone(nats)
    ? effect
    : Effect.flatMap(
      Effect.promise(() => import("../NatsBroker.ts")),
      (NatsBroker) =>
        effect.pipe(
          Effect.provide(NatsBroker.layer({ servers: serversOf(nats.value), name: "plugin-host" })),
          Effect.catchIf(
            (error): error is Broker.BrokerError => error instanceof Broker.BrokerError,
            (error) => Effect.fail(new CliFailure({ message: error.message, exitCode: ExitCode.Failed }))
          )
        )
    )

/** Why doctor fails on a plugin (a disabled plugin counts, whatever its group status), if it does. */
const problemOf = (plugin: PluginHealth.PluginDiagnosis): ReadonlyArray<string> => {
  const why = plugin.lastError ?? plugin.stateDetail
  const detail = why === undefined ? "" : `: ${why.split("\n")[0]}`
  if (plugin.state === "Disabled") return [`plugin \`${plugin.id}\` is disabled${detail}`]
  if (plugin.status === "Failed") return [`plugin \`${plugin.id}\` failed${detail}`]
  return []
}

/** How long `doctor --nats` listens for the services' answers. */
const remoteWait = "1 second"

/**
 * Watches, for the command's Scope, every NATS service answering `$SRV.PING` that no remote
 * manifest names, as a remote plugin of the health view marked `discovered` (named after its
 * service, one instance needed); a name taken already (a group, a plugin) is reported and
 * skipped. The manifests' remote plugins are the health service's already. Without a broker
 * (no `--nats`), nothing.
 */
const watchAnsweringServices = (health: PluginHealth.PluginHealth["Service"], manager: PluginManager.PluginManager["Service"]) =>
  Effect.gen(function*() {
    const found = yield* Effect.serviceOption(Broker.Broker)
    if (Option.isNone(found)) return
    const broker = found.value
    const declared = new Set((yield* manager.remotes).map((remote) => remote.service))
    const instances = yield* NatsMicro.discover(broker, undefined, { wait: remoteWait })
    for (const service of new Set(instances.map((i) => i.name))) {
      if (declared.has(service)) continue
      yield* health.watchRemote({ name: service, service, discovered: true }, { broker, wait: remoteWait }).pipe(
        Effect.catch((error) => Console.error(`warning: ${error.message}`))
      )
    }
  })

/** Why doctor fails on a remote plugin a manifest names: none of its instances answers. */
const remoteProblemOf = (remote: PluginHealth.RemoteHealthcheck): ReadonlyArray<string> =>
  remote.state === "Failed" && remote.discovered !== true ? [`remote plugin \`${remote.plugin}\` failed: ${remote.message}`] : []

const doctor = Command.make("doctor", {
  dir: dirFlag,
  nats: natsFlag,
  json: Flag.Boolean("json").pipe(Flag.withDescription("Print the report as JSON"), Flag.withDefault(false))
}, (input) =>
  Effect.gen(function*() {
    const policy = yield* policyOver(commandDefaults)
    const dir = yield* PluginDirectory.resolve(input.dir)
    const { invalid, valid } = yield* PluginDirectory.discover(dir)
    // A liveness handshake (any answer to `health`, even "method not found") proves each plugin
    // starts and speaks the protocol; ephemeral pollers run per tick, so they are verified
    // (above) but not started.
    const { health, manager, refused } = yield* hostAll(valid, policy, Handshake.liveness())
    if (valid.some((d) => !isEphemeral(d.manifest))) yield* health.startup("plugins")
    yield* health.probeNow
    // Discovery asks each server of a group for its tools and resources: run for the groups in
    // which a manifest declares how (the others have nothing to ask).
    for (const [group, ids] of health.groups) {
      const declared = valid.some((d) => d.manifest.discovery !== undefined && !isEphemeral(d.manifest) && ids.includes(d.manifest.name))
      // The group is one of the service's own: it cannot be unknown.
      if (declared) yield* Effect.orDie(health.discover(group))
    }
    yield* watchAnsweringServices(health, manager)
    // The manager started reaping what killed hosts left; the report lists it once that is over.
    yield* Leftovers.reapAtStart
    const report = yield* health.doctor
    if (input.json) {
      yield* Console.log(JSON.stringify(Schema.encodeSync(PluginHealth.DoctorReport)(report), null, 2))
    } else {
      yield* Console.log(`plugins in ${dir}\n`)
      yield* Console.log(PluginHealth.render(report))
      for (const bad of invalid) yield* Console.log(`invalid manifest: ${bad.error.message}`)
      if (Option.isSome(input.nats) && (report.remotes ?? []).every((remote) => remote.instances.length === 0)) {
        yield* Console.log(`\nno NATS service answers $SRV.PING at ${input.nats.value}`)
      }
    }
    // A remote plugin's row says what its `remote` line says: that line names the problem once.
    const remote = new Set((report.remotes ?? []).map((r) => r.plugin))
    const problems = [
      ...report.plugins.filter((p) => !remote.has(p.id)).flatMap(problemOf),
      ...(report.remotes ?? []).flatMap(remoteProblemOf),
      ...refused,
      ...invalid.map((i) => `${i.path} is invalid`)
    ]
    if (problems.length > 0) {
      return yield* new CliFailure({ message: `doctor: ${problems.join("; ")}`, exitCode: ExitCode.Failed })
    }
  }).pipe(Effect.scoped, (effect) => withBroker(effect, input.nats))).pipe(
    Command.withDescription(
      "Check every plugin: manifest, checksum, start, handshake, probe, and discovery where a manifest declares it; with --nats, every NATS service and its instances too; exit 1 if any failed or is disabled"
    )
  )

const run = Command.make("run", {
  dir: dirFlag,
  nats: natsFlag
}, (input) =>
  Effect.gen(function*() {
    const policy = yield* policyOver(runDefaults)
    const dir = yield* PluginDirectory.resolve(input.dir)
    const { valid } = yield* PluginDirectory.discover(dir)
    const hosted = valid.filter((d) => !isEphemeral(d.manifest))
    const { manager } = yield* hostAll(hosted, policy)
    const events = yield* manager.subscribe
    const view = yield* StatusView.make(manager)
    yield* events.pipe(Stream.runForEach(view.onEvent), Effect.forkScoped)
    yield* view.say(`hosting ${hosted.length} plugin(s) from ${dir}; Ctrl-C to stop`)
    yield* manager.startAll
    yield* view.refresh.pipe(Effect.andThen(Effect.sleep("1 second")), Effect.forever, Effect.forkScoped)
    yield* Deferred.await(yield* StatusView.shutdownSignal)
    yield* view.say("stopping all plugins…")
    yield* manager.stopAll
    yield* view.refresh
    yield* view.say("stopped")
  }).pipe(Effect.scoped, (effect) => withBroker(effect, input.nats))).pipe(
    Command.withDescription("Host every discovered plugin until SIGINT/SIGTERM, then stop them all gracefully")
  )

const examples = Command.make("examples", {}, () => Console.log(PluginDirectory.bundled)).pipe(
  Command.withDescription("Print the folder of the bundled example plugins (e.g. plugin-host doctor --dir \"$(plugin-host examples)\")")
)

const demo = Command.make("demo", {}, () => Demo.run).pipe(
  Command.withDescription("A guided tour of the host on the bundled example plugins (what `npm start` runs)")
)

/**
 * The root command.
 *
 * @category commands
 */
export const root = Command.make("plugin-host", {}, () => Demo.run).pipe(
  Command.withDescription("Host out-of-process plugins: check, call, tick and run them (no subcommand: the guided demo)"),
  Command.withSubcommands([doctor, call, tick, run, Init.command, ChecksumCommand.command, SchemaCommand.command, examples, demo])
)

/** Keeps handler defects readable. */
export const describeCause = (cause: Cause.Cause<unknown>): string => Cause.pretty(cause).split("\n")[0] ?? "failed"
