/**
 * Embedding the plugin host in an application's own Layer.
 *
 * The app composes `PluginManager.layer()` (every plugin process, by id) and `PluginHealth.layer`
 * (groups, probes, the doctor) with `NodeServices.layer` (processes, files), adds a layer of its
 * own that discovers the bundled plugins and registers each with the options it needs, and
 * then: starts a group, calls plugins (including a plugin→host call), watches a crash and the
 * restart on the next call, prints the doctor table, and shuts down. Releasing the layer stops
 * every plugin; no process is left behind.
 *
 * Run with `node examples/manager-layer.ts` (Node 24).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as path from "node:path"
import * as Handshake from "../src/Handshake.ts"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginHealth from "../src/PluginHealth.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import type * as RpcPeer from "../src/RpcPeer.ts"

const pluginDir = path.resolve(import.meta.dirname, "plugins")

// Plugins only see the variables their manifest allows (here PATH). Putting the folder of the
// Node running this program first on their PATH makes `#!/usr/bin/env node` plugins run on the
// same Node (24, which runs TypeScript) whatever else is installed.
const hostEnv = { ...process.env, PATH: [path.dirname(process.execPath), process.env.PATH].join(path.delimiter) }

// Short deadlines suit a demo; the defaults are the devboy ones (reap after 60 s idle, 10 s grace).
const policy = LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds", drainTimeout: "2 seconds" })

/** What the host offers plugins to call: `echo`'s `sum` asks for `host.sum`. */
const hostHandlers: RpcPeer.HostHandlers = {
  "host.sum": (params) =>
    Array.isArray(params) && params.every((n) => typeof n === "number")
      ? Effect.succeed(params.reduce((a, b) => a + b, 0))
      : Effect.fail(JsonRpc.error(JsonRpc.ErrorCode.InvalidParams, "host.sum takes an array of numbers"))
}

/** How this app runs each plugin it knows. Pollers are left to a `PollerRouter` (see pollers.ts). */
const optionsFor = (name: string): PluginManager.RegisterOptions | undefined => {
  switch (name) {
    case "echo":
      return { policy, hostEnv, handshake: Handshake.initialize(), hostHandlers }
    case "secrets":
      // A devboy secret source: its own handshake, strictly one call at a time, `shutdown` first.
      return {
        policy: LifetimePolicy.makeUnsafe({ ...policy, maxConcurrentRequests: 1 }),
        hostEnv,
        handshake: Handshake.secretSource({ vault: "example" }),
        shutdownRequest: "shutdown"
      }
    case "flaky":
      return { policy, hostEnv, handshake: Handshake.initialize() }
    default:
      return undefined
  }
}

/** The app's own service: the plugins it found and registered. Building it spawns nothing. */
class AppPlugins extends Context.Service<AppPlugins, { readonly ids: ReadonlyArray<string> }>()("examples/AppPlugins") {}

const AppPluginsLive = Layer.effect(
  AppPlugins,
  Effect.gen(function*() {
    const manager = yield* PluginManager.PluginManager
    const ids: Array<string> = []
    for (const found of yield* PluginManifest.discover(pluginDir)) {
      // A bad manifest (or a checksum that does not match) never hides the good ones.
      if (found._tag === "Rejected") {
        yield* Console.log(`skipping ${found.path}: ${found.error.message}`)
        continue
      }
      const options = optionsFor(found.manifest.name)
      if (options === undefined) continue
      yield* manager.register(found.manifest, options)
      ids.push(found.manifest.name)
    }
    return { ids }
  })
)

/** Everything the app needs, as one Layer: the app's service, health, the manager, Node. */
const AppLayer = Layer.mergeAll(
  AppPluginsLive,
  PluginHealth.layer({ groups: { core: ["echo", "secrets", "flaky"] } })
).pipe(
  Layer.provideMerge(PluginManager.layer()),
  // Plugins started with node:child_process directly (the production launcher on Node).
  Layer.provide(Layer.merge(NodeServices.layer, PluginProcess.layerNode))
)

const show = (value: unknown) => JSON.stringify(value)

const program = Effect.gen(function*() {
  const { ids } = yield* AppPlugins
  const manager = yield* PluginManager.PluginManager
  const health = yield* PluginHealth.PluginHealth
  yield* Console.log(`registered ${ids.join(", ")}; running: ${(yield* Effect.forEach(ids, manager.isRunning)).filter(Boolean).length}`)

  // Start the whole group: each plugin is spawned, checked and handshaken in parallel.
  const startup = yield* health.startup("core")
  yield* Console.log(`startup of group core: ${startup.state} - ${startup.message}`)

  yield* Console.log(`echo → ${show(yield* manager.call("echo", "echo", { hello: "world" }))}`)
  yield* Console.log(`sum [1,2,3,4] → ${show(yield* manager.call("echo", "sum", [1, 2, 3, 4]))} (added up by the host for the plugin)`)
  yield* Console.log(`greet → ${show(yield* manager.call("echo", "greet", "Ada"))}`)
  const keys = yield* manager.call("secrets", "secret_source.list")
  yield* Console.log(`secrets lists ${show(keys)}`)

  // A crash is an error for the call in flight; the next call spawns the plugin again.
  const flaky = yield* manager.get("flaky")
  const before = (yield* flaky.health).pid
  yield* manager.call("flaky", "crash", { code: 3, why: "the demo asked" }).pipe(
    Effect.catchReason("PluginClientError", "Exited", (reason) => Console.log(`flaky crashed: exit code ${reason.code}`))
  )
  const degraded = yield* health.check("core")
  yield* Console.log(`group core after the crash: ${degraded.state} - ${degraded.message}`)
  yield* manager.call("flaky", "echo", "still there?")
  const after = (yield* flaky.health).pid
  yield* Console.log(`flaky restarted on the next call (pid ${before} → ${after}); crashes in window: ${(yield* flaky.health).crashesInWindow}`)
  yield* health.probeNow
  const healed = yield* health.check("core")
  yield* Console.log(`group core now: ${healed.state} - ${healed.message}`)

  yield* Console.log("")
  yield* Console.log(PluginHealth.DoctorReport.render(yield* health.doctor))
  yield* Console.log("")
  yield* Console.log("shutting down: releasing the layer stops every plugin")
})

NodeRuntime.runMain(
  program.pipe(
    Effect.provide(AppLayer),
    Effect.andThen(Console.log("all plugins stopped; bye"))
  )
)
