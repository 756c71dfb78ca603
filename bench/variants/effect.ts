/**
 * Our variants, used the way an Effect user would: `PluginClient.make(…)` in a Scope, a policy
 * from `LifetimePolicy.makeUnsafe`, the `initialize` handshake, `NodeServices.layer` for the
 * spawner, `PluginManager.layer()` and `PollerRouter.layer` for the scale and ephemeral scenarios.
 *
 * - `effect`: our host with a `PluginWorker` worker (both sides ours).
 * - `effect-host`: our host with the raw Node worker (host cost alone).
 * - `effect-spawner`: the same as `effect-host` with the default launcher (`effect/process`'s
 *   `ChildProcessSpawner`) instead of `PluginProcess.layerNode`.
 *
 * `effect` and `effect-host` run with `PluginProcess.layerNode`, the launcher recommended for
 * hosts on Node (see the README).
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { Handshake, LifetimePolicy, PluginClient, PluginProcess } from "../../src/index.ts"
import { node, workerEnv, workers } from "../lib/common.ts"

export type EffectVariant = "effect" | "effect-host" | "effect-spawner"

export const isEffectVariant = (variant: string): variant is EffectVariant =>
  variant === "effect" || variant === "effect-host" || variant === "effect-spawner"

/** The process launcher of a variant. */
export const launcherLayer = (variant: EffectVariant) => variant === "effect-spawner" ? Layer.empty : PluginProcess.layerNode

/** The default policy, with 64 calls in flight (the throughput scenario's concurrency). */
export const policy = LifetimePolicy.makeUnsafe({ maxConcurrentRequests: 64 })

export const handshake = Handshake.initialize()

/** The plugin to run: the raw Node worker for `effect-host`, the PluginWorker one for `effect`. */
export const source = (variant: EffectVariant, name = "bench"): PluginClient.PluginSource => ({
  name,
  executable: node,
  args: [variant === "effect" ? workers.pluginWorker : workers.raw]
})

/**
 * The options of every client: the worker's environment (with `NODE_OPTIONS` from
 * `BENCH_WORKER_NODE_OPTIONS`, e.g. to profile the worker, allowed deliberately).
 */
export const clientOptions: PluginClient.Options = {
  policy,
  handshake,
  env: workerEnv(),
  unsafeEnvVars: process.env.BENCH_WORKER_NODE_OPTIONS === undefined ? undefined : ["NODE_OPTIONS"]
}

/** Makes a client in the current Scope (nothing spawned until the first call). */
export const makeClient = (variant: EffectVariant) => PluginClient.make(source(variant), clientOptions)

/**
 * Runs a scoped program with `NodeServices.layer`, the variant's launcher and `layer` (e.g.
 * `PluginManager.layer()`) as a Promise. SIGTERM or SIGINT interrupt it, so every Scope closes and
 * every plugin is stopped.
 */
export const runWith = <ROut>(layer: Layer.Layer<ROut, never, NodeServices.NodeServices>, variant: EffectVariant) =>
<A, E>(program: Effect.Effect<A, E, Scope.Scope | ROut | NodeServices.NodeServices>): Promise<A> => {
  const services = Layer.merge(NodeServices.layer, launcherLayer(variant))
  const fiber = Effect.runFork(Effect.scoped(program).pipe(Effect.provide(Layer.provideMerge(layer, services))))
  const onSignal = () => fiber.interruptUnsafe()
  process.once("SIGTERM", onSignal)
  process.once("SIGINT", onSignal)
  return new Promise((resolve, reject) => {
    fiber.addObserver((exit) => {
      process.off("SIGTERM", onSignal)
      process.off("SIGINT", onSignal)
      if (Exit.isSuccess(exit)) resolve(exit.value)
      else reject(new Error(Cause.pretty(exit.cause)))
    })
  })
}

/** {@link runWith} with no extra layer. */
export const run = (variant: EffectVariant) => runWith(Layer.empty, variant)
