/**
 * Shutdown: a `PluginManager` layer with 50 running plugins, 10 of which ignore SIGTERM (and
 * `shutdown`, and the end of stdin), `shutdownGrace` 2 s. Releasing the layer: its wall time
 * (the issue: 22–31 s; target ≤ grace + 1 s) and the plugin processes still alive in `/proc`
 * right after (must be 0).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { Handshake, LifetimePolicy, PluginManager } from "../../src/index.ts"
import { now, round } from "../lib/common.ts"
import { run as runScoped } from "../variants/effect.ts"
import { livePlugins, plugin, pluginEnv } from "./probes.ts"

const plugins = 50
const stubborn = 10
const graceSeconds = 2

const release = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const manager = Context.get(yield* Layer.buildWithScope(PluginManager.layer(), scope), PluginManager.PluginManager)
  const policy = LifetimePolicy.makeUnsafe({ shutdownGrace: `${graceSeconds} seconds` })
  for (let i = 0; i < plugins; i++) {
    const flags = i < stubborn ? ["--ignore-shutdown", "--ignore-eof", "--trap-term"] : []
    yield* manager.register(plugin(`p${i}`, flags), { policy, handshake: Handshake.none, env: pluginEnv() })
  }
  yield* Effect.forEach(yield* manager.ids, manager.start, { concurrency: "unbounded", discard: true })
  const aliveBefore = livePlugins().length
  const started = now()
  yield* Scope.close(scope, Exit.void)
  const releaseSeconds = (now() - started) / 1000
  const left = livePlugins()
  return { plugins, stubborn, graceSeconds, aliveBefore, releaseSeconds: round(releaseSeconds, 2), processesLeft: left.length }
})

export const run = (_name: string, _quick: boolean) => runScoped("effect-host")(release)
