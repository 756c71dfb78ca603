import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { TestClock } from "effect/testing"
import * as Broker from "../src/Broker.ts"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginWorker from "../src/PluginWorker.ts"
import * as Poller from "../src/Poller.ts"
import * as PollerRouter from "../src/PollerRouter.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { ephemeralPoller, inWorkingDirectory, tempFolder } from "./support/pluginFolder.ts"
import { eventually, fixture, isAlive, launchers, live, liveWith, liveChildren, node } from "./support/processes.ts"
import { bytes, text, tickInput as input } from "./support/ticks.ts"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** A prebuilt handle whose ticks are recorded and take `delay` (TestClock). */
const recordingHandle = (plugin: string, kinds: ReadonlyArray<string>, maxConcurrentTicks = 1, delay: Duration.Input = "1 second") => {
  const state = { running: 0, maxRunning: 0, ticks: 0 }
  const handle: PollerRouter.PollerHandle = {
    plugin,
    kinds,
    lifecycle: "long_lived",
    maxConcurrentTicks,
    tickTimeout: Duration.seconds(60),
    brokerTopicPrefix: undefined,
    tick: () =>
      Effect.gen(function*() {
        state.running++
        state.ticks++
        state.maxRunning = Math.max(state.maxRunning, state.running)
        yield* Effect.sleep(delay)
        state.running--
        return { nextCursor: undefined, nextIntervalHint: undefined, metrics: { itemsSeen: 0, itemsDispatched: 0 } }
      })
  }
  return { handle, state }
}

const routerWith = (behaviours: InMemorySpawner.Behaviours = {}) =>
  Effect.gen(function*() {
    const fake = yield* InMemorySpawner.make(behaviours)
    return yield* PollerRouter.make.pipe(Effect.provide(fake.layer))
  })

describe("PollerRouter registration", () => {
  it.effect("a kind owned by another plugin is refused; the same plugin replaces its entry", () =>
    Effect.gen(function*() {
      const router = yield* routerWith()
      yield* router.register(recordingHandle("a", ["rss", "atom"]).handle)
      const error = yield* router.register(recordingHandle("b", ["mail", "rss"]).handle).pipe(Effect.flip)
      assert.instanceOf(error.reason, Poller.DuplicateKind)
      assert.deepInclude(error.reason, { kind: "rss", existingPlugin: "a", newPlugin: "b" })
      assert.include(error.message, "rss")
      assert.isTrue(Option.isNone(yield* router.handleForKind("mail")), "a refused registration must not claim anything")
      yield* router.register(recordingHandle("a", ["atom", "json"]).handle)
      assert.isTrue(Option.isNone(yield* router.handleForKind("rss")), "the replaced entry's kinds are released")
      assert.strictEqual(Option.getOrThrow(yield* router.handleForKind("json")).plugin, "a")
      assert.strictEqual(yield* router.size, 2)
      assert.deepStrictEqual((yield* router.handlesForPlugin("a")).map((h) => h.kinds), [["atom", "json"]])
      yield* router.register(recordingHandle("b", ["rss"]).handle)
      yield* router.unregister("a")
      assert.strictEqual(yield* router.size, 1)
      assert.deepStrictEqual(yield* router.handlesForPlugin("a"), [])
    }))

  it.effect("a manifest registers under options.id (default its name): the owner in DuplicateKind and the key of unregister", () =>
    Effect.gen(function*() {
      const router = yield* routerWith()
      const manifest = PluginManifest.make({
        name: "rss-poller",
        version: "1",
        executable: "/not/spawned",
        poller: { kinds: ["rss"], lifecycle: "ephemeral" }
      })
      yield* router.register(manifest, { id: "feeds" })
      assert.strictEqual(Option.getOrThrow(yield* router.handleForKind("rss")).plugin, "feeds")
      const error = yield* router.register(manifest).pipe(Effect.flip)
      assert.deepInclude(error.reason, { kind: "rss", existingPlugin: "feeds", newPlugin: "rss-poller" })
      yield* router.unregister("feeds")
      yield* router.register(manifest)
      assert.strictEqual(Option.getOrThrow(yield* router.handleForKind("rss")).plugin, "rss-poller")
    }))

  it.effect("a manifest without a poller section is refused", () =>
    Effect.gen(function*() {
      const router = yield* routerWith()
      const error = yield* router.register(PluginManifest.make({ name: "plain", version: "1", executable: "/bin/true" })).pipe(Effect.flip)
      assert.instanceOf(error.reason, Poller.InvalidRegistration)
    }))

  it.effect("an unknown kind is a Config error", () =>
    Effect.gen(function*() {
      const router = yield* routerWith()
      const error = yield* router.tick("nope", input()).pipe(Effect.flip)
      assert.instanceOf(error.reason, Poller.Config)
      assert.include(error.message, "nope")
    }))

  it.effect("at most maxConcurrentTicks ticks of one plugin run at once", () =>
    Effect.gen(function*() {
      const router = yield* routerWith()
      const { handle, state } = recordingHandle("p", ["k"], 2)
      yield* router.register(handle)
      const all = yield* Effect.all([1, 2, 3, 4, 5].map(() => router.tick("k", input())), { concurrency: "unbounded" }).pipe(Effect.forkChild)
      yield* settle
      assert.strictEqual(state.running, 2)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(state.running, 2)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(all)
      assert.strictEqual(state.maxRunning, 2)
      assert.strictEqual(state.ticks, 5)
    }))

  it.effect("an invalid tick input is a typed error, not a defect", () =>
    Effect.gen(function*() {
      const router = yield* routerWith()
      yield* router.register(recordingHandle("p", ["k"]).handle)
      const error = yield* router.tick("k", { ...input(), now: new Date(Number.NaN) }).pipe(Effect.flip)
      assert.instanceOf(error.reason, Poller.Config)
    }))
})

describe("PollerRouter where the executable is found (real processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  it.live("a loaded poller manifest runs its relative executable from another working directory, with no manifestDir", () =>
    Effect.gen(function*() {
      const poller = yield* ephemeralPoller
      const elsewhere = yield* tempFolder("plugin-host-cwd-")
      yield* inWorkingDirectory(elsewhere)
      const router = yield* PollerRouter.make
      yield* router.register(yield* PluginManifest.load(poller.file), { hostEnv: {} })
      const ack = yield* router.tick("rss", input({}, bytes("page-2")))
      assert.strictEqual(text(ack.nextCursor), "page-2+")
    }).pipe(Effect.provide(live)))
})

for (const launcher of launchers) {
  describe(`PollerRouter ephemeral lifecycle (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    const manifest = (options: { tickTimeout?: Duration.Input; maxConcurrentTicks?: number; executable?: string; allowedEnvVars?: ReadonlyArray<string> } = {}) =>
      PluginManifest.make({
        name: "rss-poller",
        version: "1.0.0",
        executable: options.executable ?? node,
        args: [fixture("ephemeral-poller.mjs")],
        allowedEnvVars: options.allowedEnvVars ?? [],
        poller: {
          kinds: ["rss"],
          lifecycle: "ephemeral",
          maxConcurrentTicks: options.maxConcurrentTicks ?? 1,
          tickTimeout: Duration.fromInputUnsafe(options.tickTimeout ?? "5 seconds")
        }
      })

    const router = (m: PluginManifest.PluginManifest, hostEnv?: Record<string, string>) =>
      Effect.gen(function*() {
        const r = yield* PollerRouter.make
        yield* r.register(m, { hostEnv: hostEnv ?? {} })
        return r
      })

    it.live("round-trips the cursor and metrics; the first run has no cursor", () =>
      Effect.gen(function*() {
        const r = yield* router(manifest())
        const first = yield* r.tick("rss", input({ mode: "echo" }))
        assert.strictEqual(first.nextCursor, undefined, "first run sends cursor: null")
        const ack = yield* r.tick("rss", input({}, bytes("page-2")))
        assert.strictEqual(text(ack.nextCursor), "page-2+")
        assert.strictEqual(Duration.toSeconds(ack.nextIntervalHint ?? Duration.zero), 30)
        assert.deepStrictEqual(ack.metrics, { itemsSeen: 3, itemsDispatched: 2 })
        const echoed = yield* r.tick("rss", input({ mode: "echo" }, bytes("abc")))
        assert.strictEqual(text(echoed.nextCursor), "abc")
        const full = yield* r.tick("rss", input({ mode: "jsonrpc" }))
        assert.strictEqual(Duration.toSeconds(full.nextIntervalHint ?? Duration.zero), 5)
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("classifies plugin errors and bad replies", () =>
      Effect.gen(function*() {
        const r = yield* router(manifest())
        const reasonFor = (mode: string) => Effect.map(r.tick("rss", input({ mode })).pipe(Effect.flip), (e) => e.reason)
        const permanent = yield* reasonFor("permanent")
        assert.instanceOf(permanent, Poller.Permanent)
        assert.include(permanent.detail, "feed is gone")
        assert.instanceOf(yield* reasonFor("config"), Poller.Config)
        assert.instanceOf(yield* reasonFor("transient"), Poller.Transient)
        const malformed = yield* reasonFor("malformed")
        assert.instanceOf(malformed, Poller.Transient)
        assert.include(malformed.detail, "not JSON")
        const silent = yield* reasonFor("silent")
        assert.instanceOf(silent, Poller.Transient)
        assert.include(silent.detail, "empty reply")
        const crash = yield* reasonFor("crash")
        assert.instanceOf(crash, Poller.Transient)
        assert.include(crash.detail, "exited with code 4")
        assert.include(crash.detail, "feed parser exploded")
        const error = yield* r.tick("rss", input({ mode: "permanent" })).pipe(Effect.flip)
        assert.strictEqual(error.plugin, "rss-poller")
        assert.strictEqual(error.kind, "rss")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a slow plugin is killed at the tick timeout, well under a second later", () =>
      Effect.gen(function*() {
        const r = yield* router(manifest({ tickTimeout: "1 second" }))
        const [took, error] = yield* r.tick("rss", input({ mode: "sleep", ms: 30_000 })).pipe(Effect.flip, Effect.timed)
        assert.instanceOf(error.reason, Poller.Transient)
        assert.include(error.message, "timed out after 1 s")
        assert.isAtLeast(Duration.toMillis(took), 990)
        assert.isBelow(Duration.toMillis(took), 1_000 + 700)
        assert.isTrue(yield* eventually(() => liveChildren().length === 0, 1_000))
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("interrupting a tick kills its process", () =>
      Effect.gen(function*() {
        const r = yield* router(manifest())
        const fiber = yield* r.tick("rss", input({ mode: "sleep", ms: 30_000 })).pipe(Effect.forkChild)
        assert.isTrue(yield* eventually(() => liveChildren().length === 1, 2_000))
        const [pid] = liveChildren()
        const [took] = yield* Effect.timed(Fiber.interrupt(fiber))
        assert.isBelow(Duration.toMillis(took), 700)
        assert.isFalse(pid !== undefined && isAlive(pid))
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a missing executable is Transient", () =>
      Effect.gen(function*() {
        const r = yield* router(manifest({ executable: "/nonexistent/poller" }))
        const error = yield* r.tick("rss", input()).pipe(Effect.flip)
        assert.instanceOf(error.reason, Poller.Transient)
        assert.include(error.message, "/nonexistent/poller")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("the plugin sees only its allowed variables plus nexo's NEXO_POLLER_EPHEMERAL and NEXO_POLLER_PLUGIN_ID", () =>
      Effect.gen(function*() {
        const r = yield* router(manifest({ allowedEnvVars: ["FEED_TOKEN"] }), { FEED_TOKEN: "t", DATABASE_PASSWORD: "secret", HOME: "/root" })
        const error = yield* r.tick("rss", input({ mode: "envjson" })).pipe(Effect.flip)
        assert.deepStrictEqual(JSON.parse((error.reason as Poller.Transient).detail), {
          FEED_TOKEN: "t",
          NEXO_POLLER_EPHEMERAL: "1",
          NEXO_POLLER_PLUGIN_ID: "rss-poller"
        })
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("in the jsonrpc dialect the variables are POLLER_EPHEMERAL and POLLER_PLUGIN_ID", () =>
      Effect.gen(function*() {
        const r = yield* PollerRouter.make
        yield* r.register(manifest(), { hostEnv: { HOME: "/root" }, dialect: "jsonrpc" })
        const error = yield* r.tick("rss", input({ mode: "envjson" })).pipe(Effect.flip)
        assert.deepStrictEqual(JSON.parse((error.reason as Poller.Transient).detail), { POLLER_EPHEMERAL: "1", POLLER_PLUGIN_ID: "rss-poller" })
        const full = yield* r.tick("rss", input({ mode: "jsonrpc" }))
        assert.strictEqual(Duration.toSeconds(full.nextIntervalHint ?? Duration.zero), 5, "the jsonrpc dialect's request has an id to echo")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("maxConcurrentTicks = 2 really caps concurrent processes at 2", () =>
      Effect.gen(function*() {
        const r = yield* router(manifest({ maxConcurrentTicks: 2 }))
        let peak = 0
        const sampler = yield* Effect.sync(() => void (peak = Math.max(peak, liveChildren().length))).pipe(
          Effect.andThen(Effect.sleep("10 millis")),
          Effect.forever,
          Effect.forkChild
        )
        const acks = yield* Effect.all(
          [1, 2, 3, 4, 5].map(() => r.tick("rss", input({ mode: "sleep", ms: 300 }))),
          { concurrency: "unbounded" }
        )
        yield* Fiber.interrupt(sampler)
        assert.strictEqual(acks.length, 5)
        assert.strictEqual(peak, 2)
      }).pipe(Effect.provide(liveWith(launcher))))
  })
}

describe("PollerRouter long-lived lifecycle over stdio (real process)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  it.live("ticks go to one long-lived process as poll_tick requests; plugin errors are classified", () =>
    Effect.gen(function*() {
      const r = yield* PollerRouter.make
      yield* r.register(PluginManifest.make({
        name: "calendar",
        version: "1.0.0",
        executable: node,
        args: [fixture("stdio-poller.ts")],
        poller: { kinds: ["calendar"], lifecycle: "long_lived", maxConcurrentTicks: 1, tickTimeout: Duration.seconds(10) }
      }))
      const first = yield* r.tick("calendar", input())
      const second = yield* r.tick("calendar", input({}, first.nextCursor))
      assert.strictEqual(text(first.nextCursor), "tick-1")
      assert.strictEqual(text(second.nextCursor), "tick-2", "the same process served both ticks")
      assert.strictEqual(liveChildren().length, 1)
      const permanent = yield* r.tick("calendar", input({ mode: "permanent" })).pipe(Effect.flip)
      assert.instanceOf(permanent.reason, Poller.Permanent)
      assert.include(permanent.message, "calendar deleted")
      const config = yield* r.tick("calendar", input({ mode: "config" })).pipe(Effect.flip)
      assert.instanceOf(config.reason, Poller.Config)
    }).pipe(Effect.provide(live)))
})

describe("PollerRouter long-lived lifecycle over a broker (in-memory broker, TestClock)", () => {
  const calendar = PluginManifest.make({
    name: "calendar",
    version: "1.0.0",
    executable: "/not/spawned/over/a/broker",
    poller: {
      kinds: ["calendar"],
      lifecycle: "long_lived",
      brokerTopicPrefix: "plugins.calendar",
      maxConcurrentTicks: 1,
      tickTimeout: Duration.seconds(5)
    }
  })

  const setup = Effect.gen(function*() {
    const broker = yield* Broker.makeMemory
    const fake = yield* InMemorySpawner.make({})
    const router = yield* PollerRouter.make.pipe(
      Effect.provide(fake.layer),
      Effect.provideService(Broker.Broker, broker)
    )
    yield* router.register(calendar)
    return { broker, router }
  })

  it.effect("sends <prefix>.tick and unwraps the result of a PluginWorker served over the broker", () =>
    Effect.gen(function*() {
      const { broker, router } = yield* setup
      const seen: Array<unknown> = []
      yield* PluginWorker.serveBroker({
        prefix: "plugins.calendar",
        queue: "calendar",
        handlers: {
          poll_tick: (params) =>
            Effect.sync(() => {
              seen.push(params)
              return { next_cursor: Poller.encodeCursor(bytes("evt-9")), metrics: { items_seen: 4, items_dispatched: 1 } }
            })
        }
      }).pipe(Effect.provideService(Broker.Broker, broker))
      const ack = yield* router.tick("calendar", input({ calendarId: "team" }, bytes("evt-8")))
      assert.strictEqual(text(ack.nextCursor), "evt-9")
      assert.deepStrictEqual(ack.metrics, { itemsSeen: 4, itemsDispatched: 1 })
      assert.deepInclude(seen[0], { kind: "calendar", job_id: "job-1", agent_id: "agent-7", config: { calendarId: "team" } })
      assert.strictEqual((seen[0] as { cursor: string }).cursor, Poller.encodeCursor(bytes("evt-8")))
    }))

  const routerOn = (broker: Broker.Broker["Service"], dialect?: Poller.Dialect) =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({})
      const router = yield* PollerRouter.make.pipe(Effect.provide(fake.layer), Effect.provideService(Broker.Broker, broker))
      yield* router.register(calendar, { dialect })
      return router
    })

  it.effect("the payload is nexo's {method, params} envelope by default, the bare params in the jsonrpc dialect", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.makeMemory
      const payloads: Array<unknown> = []
      yield* broker.serve("plugins.calendar.tick", (data) =>
        Effect.sync(() => {
          payloads.push(JSON.parse(new TextDecoder().decode(data)))
          return new TextEncoder().encode(JSON.stringify({ result: null }))
        }))
      yield* (yield* routerOn(broker)).tick("calendar", input())
      yield* (yield* routerOn(broker, "jsonrpc")).tick("calendar", input())
      assert.strictEqual(payloads.length, 2)
      const [nexo, bare] = payloads as [{ method: string; params: unknown }, unknown]
      assert.deepStrictEqual(Object.keys(nexo), ["method", "params"])
      assert.strictEqual(nexo.method, "poll_tick")
      assert.deepStrictEqual(nexo.params, bare)
      assert.deepInclude(bare, { kind: "calendar", job_id: "job-1", agent_id: "agent-7", cursor: null })
    }).pipe(Effect.scoped))

  it.effect("the worker SDK serves the jsonrpc dialect's bare params too", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.makeMemory
      yield* PluginWorker.serveBroker({
        prefix: "plugins.calendar",
        handlers: { poll_tick: (params) => Effect.succeed({ next_cursor: Poller.encodeCursor(bytes(String((params as { job_id: string }).job_id))) }) }
      }).pipe(Effect.provideService(Broker.Broker, broker))
      const ack = yield* (yield* routerOn(broker, "jsonrpc")).tick("calendar", input())
      assert.strictEqual(text(ack.nextCursor), "job-1")
    }).pipe(Effect.scoped))

  it.effect("an error reply is classified, not taken for success (the source system's bug)", () =>
    Effect.gen(function*() {
      const { broker, router } = yield* setup
      yield* PluginWorker.serveBroker({
        prefix: "plugins.calendar",
        handlers: { poll_tick: () => Effect.fail(JsonRpc.error(-32002, "calendar deleted")) }
      }).pipe(Effect.provideService(Broker.Broker, broker))
      const error = yield* router.tick("calendar", input()).pipe(Effect.flip)
      assert.instanceOf(error.reason, Poller.Permanent)
      assert.include(error.message, "calendar deleted")
    }))

  it.effect("no responder is Transient at once; a silent worker is Transient at the tick timeout", () =>
    Effect.gen(function*() {
      const { broker, router } = yield* setup
      const nobody = yield* router.tick("calendar", input()).pipe(Effect.flip)
      assert.instanceOf(nobody.reason, Poller.Transient)
      yield* broker.serve("plugins.calendar.tick", () => Effect.never)
      const silent = yield* router.tick("calendar", input()).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("4999 millis")
      yield* settle
      assert.isUndefined(silent.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(silent)
      assert.instanceOf(error.reason, Poller.Transient)
    }))
})
