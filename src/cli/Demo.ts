/**
 * The guided tour `npm start` runs: the host's promises shown one after another on the bundled
 * example plugins — lazy spawn, a call, a plugin→host call, a crash and its restart, the
 * restart cap tripping and being cleared, an idle reap, an ephemeral poller tick, and the
 * doctor table — each narrated in a line or two, in well under 20 seconds. The tour sets its
 * own lifetime policies and ignores the `PLUGIN_HOST_*` policy variables: its narration ("3
 * crashes within 60 s", "a 1.5 s idle timeout") is only true for those values.
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as References from "effect/References"
import * as Stream from "effect/Stream"
import * as Handshake from "../Handshake.ts"
import { formatDuration } from "../internal/formatDuration.ts"
import * as JsonRpc from "../JsonRpc.ts"
import * as LifetimePolicy from "../LifetimePolicy.ts"
import * as PluginClient from "../PluginClient.ts"
import * as PluginHealth from "../PluginHealth.ts"
import * as PluginManager from "../PluginManager.ts"
import * as Poller from "../Poller.ts"
import * as PollerRouter from "../PollerRouter.ts"
import { CliFailure, ExitCode } from "./CliFailure.ts"
import * as PluginDirectory from "./PluginDirectory.ts"

const step = (n: number, title: string) => Console.log(`\n${n}. ${title}`)
const say = (text: string) => Console.log(`   ${text}`)

const sumHandler: PluginClient.Options["hostHandlers"] = {
  "host.sum": (params) =>
    Array.isArray(params) && params.every((n) => typeof n === "number")
      ? Effect.succeed(params.reduce((a, b) => a + b, 0))
      : Effect.fail(JsonRpc.error(JsonRpc.ErrorCode.InvalidParams, "host.sum takes an array of numbers"))
}

/**
 * Runs the tour.
 *
 * @category demo
 */
export const run = Effect.gen(function*() {
  const started = performance.now()
  yield* Console.log("effect-plugin-host — a guided tour on the bundled example plugins")

  yield* step(1, "Discovery: manifests are read and every checksum verified")
  const { invalid, valid } = yield* PluginDirectory.discover(PluginDirectory.bundled)
  for (const found of valid) {
    yield* say(`${found.manifest.name} ${found.manifest.version} — ${found.manifest.poller === undefined ? "plugin" : `poller (${found.manifest.poller.lifecycle})`}, checksum ${found.manifest.checksumSha256 === undefined ? "not declared" : "verified"}`)
  }
  for (const bad of invalid) yield* say(`invalid: ${bad.error.message}`)
  const echo = valid.find((d) => d.manifest.name === "echo")
  if (echo === undefined) return yield* new CliFailure({ message: "the bundled echo plugin is missing", exitCode: ExitCode.Failed })

  const client = yield* PluginClient.make(echo.manifest, {
    hostHandlers: sumHandler,
    policy: LifetimePolicy.makeUnsafe({ idleTimeout: "1500 millis", shutdownGrace: "2 seconds" })
  })
  const reaped = yield* client.events.pipe(
    Stream.filter((e) => e._tag === "Reaped"),
    Stream.runHead,
    Effect.forkScoped
  )

  yield* step(2, "Lazy spawn: the client exists, the process does not — until the first call")
  yield* say(`state before any call: ${(yield* client.state)._tag}, pid: ${(yield* client.health).pid ?? "none"}`)
  const echoed = yield* client.request("echo", { hello: "world" })
  yield* say(`echo → ${JSON.stringify(echoed)} (spawned pid ${(yield* client.health).pid})`)

  yield* step(3, "Calls both ways: the plugin asks the host to add numbers")
  yield* say(`sum [1, 2, 3, 4] → ${JSON.stringify(yield* client.request("sum", [1, 2, 3, 4]))} (computed by the host's handler)`)

  yield* step(4, "A crash: the call fails with a typed error; the next call respawns")
  const crash = yield* client.request("crash").pipe(Effect.flip)
  yield* say(`crash → ${crash.message} [${crash.reason._tag}]`)
  yield* say(`state: ${(yield* client.state)._tag}`)
  yield* client.request("echo", "again")
  yield* say(`echo again → respawned as pid ${(yield* client.health).pid}`)

  yield* step(5, "The restart cap: 3 crashes within 60 s disable the plugin, until cleared")
  yield* client.request("crash").pipe(Effect.flip)
  const tripped = yield* client.request("crash").pipe(Effect.flip)
  yield* say(`third crash → ${tripped.message}`)
  const disabled = yield* client.request("echo", 1).pipe(Effect.flip)
  yield* say(`next call fails fast → ${disabled.message}`)
  yield* client.clearDisabled
  yield* say(`clearDisabled → echo ${JSON.stringify(yield* client.request("echo", "back"))}, state ${(yield* client.state)._tag}`)

  yield* step(6, "Idle reaping: with a 1.5 s idle timeout the process is stopped when unused")
  const reapedEvent = yield* Fiber.join(reaped).pipe(Effect.timeoutOption("5 seconds"))
  yield* say(`reaped: ${reapedEvent._tag === "Some" && reapedEvent.value._tag === "Some" ? "yes" : "no"}, state ${(yield* client.state)._tag}, pid ${(yield* client.health).pid ?? "none"}`)
  yield* client.request("echo", "wake up")
  yield* say(`the next call respawns it: pid ${(yield* client.health).pid}`)

  yield* step(7, "An ephemeral poller: one process per tick, one line in, one line out")
  const router = yield* PollerRouter.make
  for (const found of valid) {
    if (found.manifest.poller !== undefined && found.manifest.poller.lifecycle === "ephemeral") {
      yield* router.register(found.manifest)
    }
  }
  const rssKind = valid.flatMap((d) => d.manifest.poller?.lifecycle === "ephemeral" ? d.manifest.poller.kinds : [])[0]
  if (rssKind === undefined) {
    yield* say("no ephemeral poller is bundled")
  } else {
    const ack = yield* router.tick(rssKind, {
      jobId: "demo",
      agentId: "tour",
      config: {},
      now: new Date(2026, 10, 23),
      intervalHint: "5 minutes"
    }).pipe(Effect.mapError((e) => new CliFailure({ message: e.message, exitCode: ExitCode.Failed })))
    yield* say(`tick ${rssKind} → cursor ${ack.nextCursor === undefined ? "none" : Poller.encodeCursor(ack.nextCursor)}, next in ${ack.nextIntervalHint === undefined ? "-" : formatDuration(ack.nextIntervalHint)}, items seen ${ack.metrics.itemsSeen}, dispatched ${ack.metrics.itemsDispatched}`)
  }

  yield* step(8, "The doctor: every plugin's state, pid, crashes, checksum and allowed variables")
  const manager = yield* PluginManager.make()
  const hosted = valid.filter((d) => d.manifest.poller?.lifecycle !== "ephemeral")
  for (const found of valid) {
    yield* manager.register(found.manifest, {
      policy: LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds" }),
      handshake: Handshake.none,
      hostHandlers: sumHandler
    }).pipe(Effect.ignore)
  }
  yield* Effect.forEach(hosted, (found) => manager.start(found.manifest.name).pipe(Effect.ignore), { concurrency: "unbounded", discard: true })
  const health = yield* PluginHealth.make({ groups: { bundled: valid.map((d) => d.manifest.name) } }).pipe(
    Effect.provideService(PluginManager.PluginManager, manager),
    Effect.orDie
  )
  yield* Console.log(PluginHealth.render(yield* health.doctor))

  yield* Console.log(`\nDone in ${formatDuration(performance.now() - started)}; closing the scope stops every plugin (SIGTERM → grace → SIGKILL).`)
}).pipe(
  Effect.scoped,
  // The tour narrates what happens; the host's own warnings would only repeat it.
  Effect.provideService(References.MinimumLogLevel, "None")
)
