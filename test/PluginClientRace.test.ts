/**
 * The lifetime engine under races: a crash that lands while a restart replaces the process,
 * slow `onEvent` listeners, and the fibers the lifecycle starts. Real processes for the figures
 * the engine issue measured (no leaked process, no state stuck in `Recovering`), the TestClock
 * and the in-memory spawner for exact order and timing.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { eventually, fixture, live, liveChildren, node } from "./support/processes.ts"

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const stateNow = (client: PluginClient.PluginClient) => Effect.runSync(client.state)._tag

describe("PluginClient races (real processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 5_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  const rpcPlugin = { name: "rpc", executable: node, args: [fixture("rpc-plugin.mjs")] }
  const rounds = 6
  // Long enough for the crash's exit to be seen while the restart publishes `Stopping`, which is
  // where the old engine let a crash of the replaced process land on its successor.
  const slowListener = () => Effect.sleep("150 millis")
  /** One round: a call that makes the plugin exit, a restart and an ordinary call, at once. */
  const round = (client: PluginClient.PluginClient, i: number) =>
    Effect.all([
      client.request("crash", { code: 1 }).pipe(Effect.ignore),
      client.restart.pipe(Effect.ignore),
      client.request("echo", i).pipe(Effect.ignore)
    ], { concurrency: "unbounded", discard: true })

  it.live("alwaysOn: rounds of crash + restart + calls with a slow listener never leave a second process alive", () =>
    Effect.gen(function*() {
      const policy = LifetimePolicy.makeUnsafe({
        ...LifetimePolicy.alwaysOn,
        shutdownGrace: "1 second",
        backoff: { initial: "100 millis", jitter: 0, giveUpAfter: 1_000 }
      })
      const client = yield* PluginClient.make(rpcPlugin, { policy, onEvent: slowListener })
      yield* client.request("echo", 0)
      let mostAlive = 0
      for (let i = 0; i < rounds; i++) {
        yield* round(client, i)
        // Past the 100 ms backoff: the old engine's scheduled restart spawned a second process here.
        yield* Effect.sleep("500 millis")
        mostAlive = Math.max(mostAlive, liveChildren().length)
      }
      assert.isAtMost(mostAlive, 1, "more than one plugin process alive for one client")
      assert.isTrue(yield* eventually(() => stateNow(client) === "Running", 5_000), `state ${stateNow(client)}`)
      assert.deepStrictEqual(liveChildren(), [(yield* client.health).pid])
    }).pipe(Effect.provide(live)), 60_000)

  it.live("lazy: after rounds of crash + restart + calls with a slow listener the client is never Recovering with a live process", () =>
    Effect.gen(function*() {
      const policy = LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second", restartCap: 1_000 })
      const client = yield* PluginClient.make(rpcPlugin, { policy, onEvent: slowListener })
      yield* client.request("echo", 0)
      let stuck = 0
      for (let i = 0; i < rounds; i++) {
        yield* round(client, i)
        yield* Effect.sleep("300 millis")
        if (stateNow(client) === "Recovering" && liveChildren().length > 0) stuck++
      }
      assert.strictEqual(stuck, 0, "rounds that ended in Recovering with a live process")
      assert.strictEqual(yield* client.request("echo", "after"), "after")
      assert.strictEqual(stateNow(client), "Running")
      assert.deepStrictEqual(liveChildren(), [(yield* client.health).pid])
    }).pipe(Effect.provide(live)), 60_000)
})

/** A client over the in-memory spawner, whose command `plugin` runs `behaviour`. */
const fakeClient = (behaviour: InMemorySpawner.Behaviour, options?: PluginClient.Options) =>
  Effect.gen(function*() {
    const fake = yield* InMemorySpawner.make({ plugin: behaviour })
    const client = yield* PluginClient.make({ name: "fake", executable: "plugin" }, options).pipe(Effect.provide(fake.layer))
    return { fake, client }
  })

/** Moves the TestClock `seconds` one second at a time, letting fibers run after each step. */
const advance = (seconds: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < seconds; i++) {
      yield* TestClock.adjust("1 second")
      yield* settle
    }
  })

/** Runs `effect` in a fiber and reports whether it finished without the clock moving. */
const finishesAtOnce = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect)
    for (let i = 0; i < 20 && fiber.pollUnsafe() === undefined; i++) yield* settle
    const exit = fiber.pollUnsafe()
    if (exit === undefined) yield* Fiber.interrupt(fiber)
    return exit !== undefined && Exit.isSuccess(exit)
  })

/**
 * A plugin that sends `flood` notifications at start, then echoes; paced, so the client's own
 * notification queue never fills and every message reaches the events.
 */
const chattyPlugin = (flood: number): InMemorySpawner.Behaviour => (proc) =>
  Effect.forEach(
    Array.from({ length: flood }, (_, i) => i),
    (i) => proc.write(JSON.stringify({ jsonrpc: "2.0", method: "tick", params: { i } })).pipe(Effect.andThen(i % 100 === 0 ? settle : Effect.void)),
    { discard: true }
  ).pipe(Effect.andThen(InMemorySpawner.echo()(proc)))

const describeEvent = (e: PluginClient.PluginEvent) => e._tag === "StateChanged" ? `${e.from._tag}→${e.to._tag}` : e._tag

describe("PluginClient races (TestClock, in-memory spawner)", () => {
  it.effect("a crash that lands while a slow listener sees the restart never leaves two processes nor a wrong state", () =>
    Effect.gen(function*() {
      const policy = LifetimePolicy.makeUnsafe({ idleTimeout: undefined, backoff: { initial: "5 seconds", jitter: 0, giveUpAfter: 100 } })
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo(), { policy, onEvent: () => Effect.sleep("1 second") })
      const warm = yield* Effect.forkChild(client.request("echo", 0))
      yield* advance(10)
      assert.strictEqual(yield* Fiber.join(warm), 0)
      const first = (yield* client.health).pid ?? -1
      // The restart publishes `Stopping` first; the old engine called the listener right there,
      // under its lock, and the kill's crash waited for the lock and then landed on the new process.
      const restart = yield* Effect.forkChild(client.restart)
      yield* settle
      yield* fake.signal(first, "SIGKILL")
      yield* advance(60)
      yield* Fiber.join(restart).pipe(Effect.ignore)
      const running = (yield* fake.spawns).filter((spawn) => spawn.running)
      assert.lengthOf(running, 1, `running: ${running.map((spawn) => spawn.pid).join(", ")}`)
      assert.strictEqual((yield* client.state)._tag, "Running")
      assert.strictEqual((yield* client.health).pid, running[0]?.pid)
    }))

  it.effect("a listener that sleeps 1 s per event delays no call, no restart and no stop; it still sees every event, in order", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const { client } = yield* fakeClient(InMemorySpawner.echo(), {
        onEvent: (event) => Effect.sleep("1 second").pipe(Effect.andThen(Effect.sync(() => void seen.push(describeEvent(event)))))
      })
      const published = yield* Effect.forkChild(Stream.runCollect(Stream.take(client.events, 11)))
      yield* settle
      assert.isTrue(yield* finishesAtOnce(client.request("echo", 1)), "a call waited for the listener")
      assert.isTrue(yield* finishesAtOnce(client.restart), "a restart waited for the listener")
      assert.isTrue(yield* finishesAtOnce(client.request("echo", 2)), "a call waited for the listener")
      assert.isTrue(yield* finishesAtOnce(client.stop), "a stop waited for the listener")
      assert.isBelow(seen.length, 2, "the listener ran ahead of the clock")
      const expected = (yield* Fiber.join(published)).map(describeEvent)
      yield* advance(expected.length)
      assert.deepStrictEqual(seen, expected)
    }))

  it.effect("a failing listener costs only itself: later events still reach it and calls succeed", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const { client } = yield* fakeClient(InMemorySpawner.echo(), {
        onEvent: (event) =>
          Effect.sync(() => void seen.push(describeEvent(event))).pipe(
            Effect.andThen(event._tag === "Ready" ? Effect.die("listener bug") : Effect.void)
          )
      })
      let readies = 0
      const published = yield* Effect.forkChild(Stream.runCollect(Stream.takeUntil(client.events, (e) => e._tag === "Ready" && ++readies === 2)))
      yield* settle
      assert.strictEqual(yield* client.request("echo", 1), 1)
      yield* client.restart
      assert.strictEqual(yield* client.request("echo", 2), 2)
      const expected = (yield* Fiber.join(published)).map(describeEvent)
      yield* settle
      assert.strictEqual(expected.filter((e) => e === "Ready").length, 2)
      assert.deepStrictEqual(seen.slice(0, expected.length), expected)
    }))

  it.effect("a listener that keeps up sees the last events of a client whose scope closes", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const scope = yield* Scope.make()
      const { client } = yield* fakeClient(InMemorySpawner.echo(), { onEvent: (event) => Effect.sync(() => void seen.push(describeEvent(event))) }).pipe(
        Scope.provide(scope)
      )
      yield* client.request("echo", 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(seen.at(-1), "Stopping→Stopped")
    }))

  it.effect("a process's events carry its generation: a restart's Exit belongs to the old one, Ready to the new one", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      const collected = yield* Effect.forkChild(Stream.runCollect(Stream.take(
        Stream.filter(client.events, (e) => e._tag === "Ready" || e._tag === "Exit"),
        4
      )))
      yield* settle
      yield* client.request("echo", 1)
      yield* client.restart
      yield* client.request("crash", { code: 3 }).pipe(Effect.flip)
      const tagged = (yield* Fiber.join(collected)).map((e) => e._tag === "Ready" || e._tag === "Exit" ? `${e._tag}#${e.generation}` : "other")
      assert.sameMembers(tagged, ["Ready#1", "Exit#1", "Ready#2", "Exit#2"])
      assert.isBelow(tagged.indexOf("Ready#1"), tagged.indexOf("Ready#2"))
      assert.isBelow(tagged.indexOf("Ready#2"), tagged.indexOf("Exit#2"))
    }))

  it.effect("a listener that falls 10,000 events behind loses the plugin's messages beyond that, never an event of its life", () =>
    Effect.gen(function*() {
      const flood = 10_100
      const chatty = chattyPlugin(flood)
      const gate = yield* Deferred.make<void>()
      const seen: Array<PluginClient.PluginEvent> = []
      const { client } = yield* fakeClient(chatty, {
        onEvent: (event) => Deferred.await(gate).pipe(Effect.andThen(Effect.sync(() => void seen.push(event))))
      })
      let published = 0
      yield* Effect.forkChild(Stream.runForEach(client.events, (e) => Effect.sync(() => e._tag === "Notification" ? void published++ : undefined)))
      yield* settle
      assert.strictEqual(yield* client.request("echo", 1), 1, "the call waited for the listener")
      for (let i = 0; i < 200 && published < flood; i++) yield* settle
      assert.strictEqual(published, flood, "an events subscriber sees every message")
      yield* Deferred.succeed(gate, undefined)
      yield* client.stop
      for (let i = 0; i < 200 && seen.at(-1)?._tag !== "StateChanged"; i++) yield* settle
      const ticks = seen.filter((e) => e._tag === "Notification").length
      assert.isAtMost(ticks, 10_000)
      assert.isAtLeast(ticks, 9_990)
      const life = seen.filter((e) => e._tag !== "Notification").map(describeEvent)
      assert.includeMembers(life, ["Idle→Starting", "Starting→Running", "Ready", "Running→Stopping", "Stopping→Stopped"])
      assert.strictEqual((yield* client.health).eventsDropped, flood - ticks, "the drops are counted in health")
    }))

  it.effect("an events subscriber that stops reading costs bounded memory: the plugin's messages beyond 10,000 are dropped for it and counted", () =>
    Effect.gen(function*() {
      const flood = 12_000
      const chatty = chattyPlugin(flood)
      const { client } = yield* fakeClient(chatty)
      const gate = yield* Deferred.make<void>()
      // Takes one event, then never reads again.
      yield* Effect.forkChild(Stream.runForEach(client.events, () => Deferred.await(gate)))
      yield* settle
      assert.strictEqual(yield* client.request("echo", 1), 1)
      for (let i = 0; i < 200 && (yield* client.health).eventsDropped < flood - 10_001; i++) yield* settle
      const dropped = (yield* client.health).eventsDropped
      assert.isAtLeast(dropped, flood - 10_001 - 5)
      // The events of its life share the subscriber's 10,000 places with the plugin's messages.
      assert.isAtMost(dropped, flood - 10_000 + 10)
    }))
})

describe("PluginClient lifecycle (TestClock, in-memory spawner)", () => {
  it.effect("a call that arrives while the plugin is being reaped waits for the reap and starts it again, instead of failing", () =>
    Effect.gen(function*() {
      const policy = LifetimePolicy.makeUnsafe({ idleTimeout: "10 seconds", shutdownGrace: "5 seconds", drainTimeout: "1 second" })
      const { fake, client } = yield* fakeClient(InMemorySpawner.ignoreSigterm(InMemorySpawner.echo()), { policy })
      assert.strictEqual(yield* client.request("echo", 1), 1)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      assert.strictEqual((yield* client.state)._tag, "Stopping", "the reap waits out the grace of a plugin ignoring SIGTERM")
      const call = yield* Effect.forkChild(client.request("echo", 2))
      yield* settle
      assert.isUndefined(call.pollUnsafe())
      assert.lengthOf((yield* fake.spawns).filter((spawn) => spawn.running), 1, "no second process while the first is being stopped")
      yield* advance(6)
      assert.strictEqual(yield* Fiber.join(call), 2)
      const spawns = yield* fake.spawns
      assert.lengthOf(spawns, 2)
      assert.lengthOf(spawns.filter((spawn) => spawn.running), 1)
      // This plugin ignores SIGTERM too: its stop waits out the grace on the clock.
      const stop = yield* Effect.forkChild(client.stop)
      yield* advance(6)
      yield* Fiber.join(stop)
    }))

  it.effect("stop during a handshake that never answers abandons the start at once: the process is stopped, the callers get Closed", () =>
    Effect.gen(function*() {
      const policy = LifetimePolicy.makeUnsafe({ initTimeout: "30 seconds", shutdownGrace: "2 seconds" })
      const { fake, client } = yield* fakeClient(InMemorySpawner.neverReply(), { policy, handshake: Handshake.initialize() })
      const call = yield* Effect.forkChild(client.request("echo", 1).pipe(Effect.flip))
      yield* settle
      assert.strictEqual((yield* client.state)._tag, "Starting")
      const stop = yield* Effect.forkChild(client.stop)
      yield* advance(3)
      assert.isDefined(stop.pollUnsafe(), "the stop did not wait for the 30 s handshake")
      const error = yield* Fiber.join(call)
      assert.strictEqual(error.reason._tag, "Closed")
      assert.strictEqual((yield* client.state)._tag, "Stopped")
      assert.lengthOf((yield* fake.spawns).filter((spawn) => spawn.running), 0)
    }))

  it.effect("a Crash event names the generation that crashed", () =>
    Effect.gen(function*() {
      const events: Array<PluginClient.PluginEvent> = []
      const { client } = yield* fakeClient(InMemorySpawner.echo(), { onEvent: (event) => Effect.sync(() => void events.push(event)) })
      assert.strictEqual(yield* client.request("echo", 1), 1)
      yield* client.request("crash", { code: 3 }).pipe(Effect.flip)
      assert.strictEqual(yield* client.request("echo", 2), 2)
      yield* client.request("crash", { code: 4 }).pipe(Effect.flip)
      yield* settle
      const crashes = events.flatMap((event) => event._tag === "Crash" ? [event.generation] : [])
      assert.deepStrictEqual(crashes, [1, 2])
    }))
})
