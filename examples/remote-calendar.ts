/**
 * A plugin on other machines: the bundled `calendar` plugin served over NATS by two workers
 * (two machines, simulated here by two processes), hosted through a `[remote]` manifest
 * (`examples/remote-plugins/calendar.toml`) by a `PluginManager` that is given NATS brokers.
 *
 * The host registers the manifest like any other, calls the calendar through the manager (the
 * calls are shared by the instances: it prints how many answered), runs one `poll_tick` as a
 * plain call, and prints the doctor, where the health service lists both instances: discovered
 * through NATS micro (`$SRV.PING/INFO/STATS`), judged against the manifest's `min_instances`.
 *
 * Run with Node 24 and a `nats-server` (https://docs.nats.io, or `apt install nats-server`):
 *
 *   nats-server -a 127.0.0.1 -p 4222 &
 *   NATS_URL=nats://127.0.0.1:4222 node examples/plugins/calendar/calendar-nats.ts &   # machine 1
 *   NATS_URL=nats://127.0.0.1:4222 node examples/plugins/calendar/calendar-nats.ts &   # machine 2
 *   PLUGIN_HOST_NATS_SERVERS=nats://127.0.0.1:4222 node examples/remote-calendar.ts
 *
 * and, for the same view from the command line:
 *
 *   npm start -- doctor --nats nats://127.0.0.1:4222 --dir examples/remote-plugins
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as path from "node:path"
import * as PluginHealth from "../src/PluginHealth.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as Poller from "../src/Poller.ts"
import * as RemotePlugin from "../src/RemotePlugin.ts"

const remoteDir = path.resolve(import.meta.dirname, "remote-plugins")

// The manager reaches remote plugins on brokers made per server list: a manifest's own
// `servers`, else PLUGIN_HOST_NATS_SERVERS. No local plugin here, so no group for the health view.
const HostLayer = PluginHealth.layer({ groups: {} }).pipe(
  Layer.provideMerge(PluginManager.layer({ brokers: RemotePlugin.natsBrokers() })),
  Layer.provideMerge(NodeServices.layer)
)

/** What the calendar's `health` method answers: the instance's process id tells the instances apart. */
const Health = Schema.Struct({ ok: Schema.Boolean, ticks: Schema.Number, pid: Schema.Number })
/** The part of a `poll_tick` result this program prints. */
const TickResult = Schema.Struct({ next_cursor: Schema.NullOr(Schema.String), metrics: Schema.Struct({ items_seen: Schema.Number, items_dispatched: Schema.Number }) })

const program = Effect.gen(function*() {
  const manager = yield* PluginManager.PluginManager
  const health = yield* PluginHealth.PluginHealth
  for (const found of yield* manager.discover(remoteDir)) {
    if (found._tag === "Valid" && found.manifest.remote !== undefined) {
      const remote = found.manifest.remote
      yield* Console.log(`registered ${found.manifest.name} (remote: NATS service ${remote.service ?? found.manifest.name}, subject ${remote.subjectPrefix}.call)`)
    }
  }

  // Each call goes to one instance of the queue group; any instance may answer.
  const pids = new Set<number>()
  for (let i = 0; i < 20; i++) {
    const answer = yield* manager.call("calendar", "health").pipe(Effect.flatMap(Schema.decodeUnknownEffect(Health)))
    pids.add(answer.pid)
  }
  yield* Console.log(`20 calls answered by ${pids.size} instance${pids.size === 1 ? "" : "s"} (pids ${[...pids].sort().join(", ")})`)

  // A poll tick is a call like any other; this one starts from no cursor.
  const tick = yield* manager.call("calendar", "poll_tick", { cursor: null, now: "2026-11-23T08:00:00Z", config: {} }).pipe(
    Effect.flatMap(Schema.decodeUnknownEffect(TickResult))
  )
  const decoded = tick.next_cursor === null ? undefined : Poller.decodeCursor(tick.next_cursor)
  const cursor = decoded === undefined
    ? "unchanged"
    : Result.isSuccess(decoded)
    ? JSON.stringify(new TextDecoder().decode(decoded.success))
    : `unreadable (${decoded.failure})`
  yield* Console.log(`tick: saw ${tick.metrics.items_seen} events, ${tick.metrics.items_dispatched} reminders, next cursor ${cursor}`)

  yield* Console.log("")
  yield* Console.log(PluginHealth.render(yield* health.doctor))
})

const servers = process.env.PLUGIN_HOST_NATS_SERVERS
if (servers === undefined || servers.trim() === "") {
  process.stderr.write("set PLUGIN_HOST_NATS_SERVERS to the NATS servers the calendar's workers use (see the comment at the top)\n")
  process.exit(2)
}
NodeRuntime.runMain(program.pipe(Effect.provide(HostLayer)))
