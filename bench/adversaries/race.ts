/**
 * Slow listener race: a client whose `onEvent` takes 20 ms per event goes through 25 rounds of
 * a call that makes its plugin exit, a `restart` and an ordinary call, all at once.
 *
 * - `race-always-on` (eager, restarted after 100 ms): how many plugin processes of the client
 *   are alive after the rounds (one is right; the issue counted 23), and the most seen alive at
 *   the end of a round.
 * - `race-lazy` (respawned by the next call): how many rounds end with the client `Recovering`
 *   while a plugin process is alive (the issue: every round).
 */
import * as Effect from "effect/Effect"
import { LifetimePolicy, PluginClient } from "../../src/index.ts"
import { run as runScoped } from "../variants/effect.ts"
import { eventually, livePlugins, plugin, pluginEnv } from "./probes.ts"

const rounds = 25
const slowListener = () => Effect.sleep("20 millis")

/** One round: a call that makes the plugin exit, a restart and an ordinary call, at once. */
const round = (client: PluginClient.PluginClient, i: number) =>
  Effect.all([
    client.request("crash", { code: 1 }).pipe(Effect.ignore),
    client.restart.pipe(Effect.ignore),
    client.request("echo", i).pipe(Effect.ignore)
  ], { concurrency: "unbounded", discard: true })

const stateOf = (client: PluginClient.PluginClient) => Effect.runSync(client.state)._tag

const alwaysOn = Effect.gen(function*() {
  const policy = LifetimePolicy.makeUnsafe({
    ...LifetimePolicy.alwaysOn,
    shutdownGrace: "1 second",
    backoff: { initial: "100 millis", jitter: 0, giveUpAfter: 1_000 }
  })
  const client = yield* PluginClient.make(plugin("race"), { policy, onEvent: slowListener, env: pluginEnv() })
  yield* client.request("echo", 0)
  let mostAlive = 0
  for (let i = 0; i < rounds; i++) {
    yield* round(client, i)
    // Past the 100 ms backoff, so a restart scheduled by a crash has happened.
    yield* Effect.sleep("500 millis")
    mostAlive = Math.max(mostAlive, livePlugins().length)
  }
  const running = yield* eventually(() => stateOf(client) === "Running", 5_000)
  return { rounds, aliveAfter: livePlugins().length, mostAliveAtRoundEnd: mostAlive, running }
})

const lazy = Effect.gen(function*() {
  const policy = LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second", restartCap: 1_000 })
  const client = yield* PluginClient.make(plugin("race"), { policy, onEvent: slowListener, env: pluginEnv() })
  yield* client.request("echo", 0)
  let stuck = 0
  for (let i = 0; i < rounds; i++) {
    yield* round(client, i)
    yield* Effect.sleep("300 millis")
    if (stateOf(client) === "Recovering" && livePlugins().length > 0) stuck++
  }
  const answers = (yield* client.request("echo", "after").pipe(Effect.result))._tag === "Success"
  return { rounds, stuckRecovering: stuck, answersAfter: answers, aliveAfter: livePlugins().length }
})

export const run = (name: string, _quick: boolean): Promise<object> =>
  name === "race-lazy" ? runScoped("effect-host")(lazy) : runScoped("effect-host")(alwaysOn)
