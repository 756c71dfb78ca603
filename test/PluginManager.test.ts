import * as NodeServices from "@effect/platform-node/NodeServices"
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as path from "node:path"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import type * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import * as fs from "node:fs"
import * as os from "node:os"
import { inWorkingDirectory, namesPlugin, tempFolder } from "./support/pluginFolder.ts"
import { eventually, fixture, isAlive, launchers, live, liveWith, liveChildren, node } from "./support/processes.ts"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const reasonOf = (error: PluginClientError.PluginClientError | PluginManager.ManagerError) => error.reason

/** A manager over the in-memory spawner, in the test's scope. */
const fakeManager = (behaviours: InMemorySpawner.Behaviours, options?: PluginManager.ManagerOptions) =>
  Effect.gen(function*() {
    const fake = yield* InMemorySpawner.make(behaviours)
    const manager = yield* PluginManager.make(options).pipe(Effect.provide(fake.layer))
    return { fake, manager }
  })

/**
 * Stops every plugin while virtual time passes: a release sends each always-on plugin the
 * `shutdown` request, which a slow fake answers only on the clock.
 */
const stopOnTheClock = (manager: PluginManager.PluginManager["Service"]) =>
  Effect.gen(function*() {
    const stopping = yield* manager.stopAll.pipe(Effect.forkChild)
    yield* TestClock.adjust("30 seconds")
    yield* Fiber.join(stopping)
  })

/** Collects every manager event from now on. */
const recordEvents = (manager: PluginManager.PluginManager["Service"]) =>
  Effect.gen(function*() {
    const seen: Array<PluginManager.ManagerEvent> = []
    yield* manager.events.pipe(Stream.runForEach((e) => Effect.sync(() => void seen.push(e))), Effect.forkScoped)
    yield* settle
    return seen
  })

const untilOf = (state: PluginClient.PluginState) => state._tag === "Backoff" ? state.until : Number.NaN

describe("always-on plugins (TestClock, in-memory spawner)", () => {
  const alwaysOn = (input: LifetimePolicy.Input = {}) => LifetimePolicy.makeUnsafe({ ...LifetimePolicy.alwaysOn, ...input })

  it.effect("backoff delays stay within 1 s ×2 ±25 % and never exceed 5 min (cap applied after jitter), crash 1..12", () =>
    Effect.gen(function*() {
      const { manager } = yield* fakeManager({ plugin: InMemorySpawner.crashOnStart({ code: 1, stderr: "no\n" }) })
      const client = yield* manager.register({ name: "w", executable: "plugin" }, {
        policy: alwaysOn({ backoff: { ...LifetimePolicy.defaultBackoff, giveUpAfter: 20 } })
      })
      const error = yield* manager.start("w").pipe(Effect.flip)
      assert.instanceOf(reasonOf(error), PluginClientError.InitFailed)
      for (let n = 1; n <= 12; n++) {
        const state = yield* client.state
        assert.strictEqual(state._tag, "Backoff", `after crash ${n}`)
        const now = yield* Clock.currentTimeMillis
        const delay = untilOf(state) - now
        const base = 1_000 * Math.pow(2, n - 1)
        // `until` is a float instant (now + delay), so the difference carries rounding noise.
        const epsilon = 1e-6
        assert.isAtLeast(delay, Math.min(base * 0.75, 300_000) - epsilon, `crash ${n}`)
        assert.isAtMost(delay, Math.min(base * 1.25, 300_000) + epsilon, `crash ${n}`)
        assert.strictEqual((yield* client.health).nextRestartAt, untilOf(state))
        yield* TestClock.adjust(Duration.millis(delay))
        yield* settle
      }
      assert.strictEqual((yield* client.health).consecutiveCrashes, 13)
    }))

  /** Advances the clock to the pending restart of a plugin in `Backoff`, and lets it run. */
  const untilRestart = (client: PluginClient.PluginClient) =>
    Effect.gen(function*() {
      const state = yield* client.state
      assert.strictEqual(state._tag, "Backoff")
      yield* TestClock.adjust(Duration.millis(untilOf(state) - (yield* Clock.currentTimeMillis)))
      yield* settle
    })

  it.effect("gives up after exactly 10 restarts (11th crash): Disabled, with a crash event that will not restart", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({ plugin: InMemorySpawner.crashOnStart({ code: 3 }) })
      const events = yield* recordEvents(manager)
      const client = yield* manager.register({ name: "w", executable: "plugin" }, { policy: alwaysOn() })
      yield* manager.start("w").pipe(Effect.flip)
      for (let restart = 1; restart <= 10; restart++) {
        assert.strictEqual((yield* client.health).consecutiveCrashes, restart)
        yield* untilRestart(client)
      }
      const state = yield* client.state
      assert.strictEqual(state._tag, "Disabled")
      assert.include(state._tag === "Disabled" ? state.reason : "", "crashed 11 times in a row (gave up after 10 restarts)")
      assert.strictEqual((yield* fake.spawns).length, 11, "the first start and 10 restarts")
      const crashes = events.filter((e) => e._tag === "WorkerCrashed")
      assert.strictEqual(crashes.length, 11)
      assert.deepStrictEqual(crashes.map((e) => e._tag === "WorkerCrashed" && e.willRestart), [...Array(10).fill(true), false])
      yield* TestClock.adjust("1 hour")
      yield* settle
      assert.strictEqual((yield* client.state)._tag, "Disabled")
      assert.strictEqual((yield* fake.spawns).length, 11)
    }))

  it.effect("a successful initialize resets the consecutive count: crashes after each good restart never give up", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({ plugin: InMemorySpawner.echo() })
      const client = yield* manager.register({ name: "w", executable: "plugin" }, { policy: alwaysOn() })
      yield* manager.start("w")
      // 15 crashes, each of a plugin that had initialized: more than giveUpAfter, all within
      // resetAfter of each other, so only the successful initialize can end each run.
      for (let n = 1; n <= 15; n++) {
        yield* manager.call("w", "crash", { code: 1 }).pipe(Effect.flip)
        assert.strictEqual((yield* client.health).consecutiveCrashes, 1, `crash ${n}`)
        const state = yield* client.state
        const delay = untilOf(state) - (yield* Clock.currentTimeMillis)
        assert.isAtMost(delay, 1_250 + 1e-6, `crash ${n} is the first of its run`)
        yield* untilRestart(client)
        assert.strictEqual((yield* client.state)._tag, "Running", `restart ${n}`)
        assert.strictEqual((yield* client.health).consecutiveCrashes, 0, `after restart ${n}`)
      }
      assert.strictEqual((yield* fake.spawns).length, 16)
      assert.strictEqual(yield* manager.call("w", "echo", "alive"), "alive")
    }))

  it.effect("the consecutive-crash count resets when the last crash is 10 min old", () =>
    Effect.gen(function*() {
      // Every start fails, so no successful initialize ends the run: only time does.
      const { manager } = yield* fakeManager({ plugin: InMemorySpawner.crashOnStart({ code: 1 }) })
      const client = yield* manager.register({ name: "w", executable: "plugin" }, { policy: alwaysOn() })
      // Stopping between starts keeps the instants whole milliseconds (a backoff delay is not),
      // so the 1 ms edge below is exact.
      yield* manager.start("w").pipe(Effect.flip)
      assert.strictEqual((yield* client.health).consecutiveCrashes, 1)
      yield* manager.stop("w")
      yield* TestClock.adjust(Duration.minutes(10).pipe(Duration.subtract(Duration.millis(1))))
      yield* manager.start("w").pipe(Effect.flip)
      assert.strictEqual((yield* client.health).consecutiveCrashes, 2, "a crash 1 ms short of 10 min continues the run")
      yield* manager.stop("w")
      yield* TestClock.adjust("10 minutes")
      yield* manager.start("w").pipe(Effect.flip)
      assert.strictEqual((yield* client.health).consecutiveCrashes, 1)
      const delay = untilOf(yield* client.state) - (yield* Clock.currentTimeMillis)
      assert.isAtMost(delay, 1_250)
    }))

  it.effect("a restart whose handshake fails counts as another crash and schedules the next backoff", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({
        plugin: InMemorySpawner.sequence(
          InMemorySpawner.echo(),
          InMemorySpawner.echo({ initializeResult: { ok: false, error: "db unreachable" } }),
          InMemorySpawner.echo()
        )
      })
      const events = yield* recordEvents(manager)
      const client = yield* manager.register({ name: "w", executable: "plugin" }, { policy: alwaysOn() })
      yield* manager.start("w")
      yield* manager.call("w", "crash", { code: 9 }).pipe(Effect.flip)
      yield* TestClock.adjust(Duration.millis(untilOf(yield* client.state) - (yield* Clock.currentTimeMillis)))
      yield* settle
      let state = yield* client.state
      assert.strictEqual(state._tag, "Backoff", "the failed re-handshake did not schedule another restart")
      assert.include((yield* client.health).lastError, "db unreachable")
      yield* TestClock.adjust(Duration.millis(untilOf(state) - (yield* Clock.currentTimeMillis)))
      yield* settle
      state = yield* client.state
      assert.strictEqual(state._tag, "Running")
      assert.strictEqual((yield* fake.spawns).length, 3)
      assert.strictEqual(yield* manager.call("w", "echo", "back"), "back")
      const tags = events.filter((e) => e._tag !== "Plugin").map((e) => e._tag)
      assert.deepStrictEqual(tags, ["WorkerCrashed", "WorkerCrashed", "WorkerRestarted"])
      const crash = events.find((e) => e._tag === "WorkerCrashed")
      assert.deepInclude(crash, { code: 9, signal: null, willRestart: true })
    }))

  it.effect("a call whose timeout ends before the restart fails fast with Unavailable and nextRestartAt; stop cancels the pending restart and the calls waiting for it", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({ plugin: InMemorySpawner.echo() })
      const client = yield* manager.register({ name: "w", executable: "plugin" }, { policy: alwaysOn() })
      yield* manager.start("w")
      yield* manager.call("w", "crash", { code: 1 }).pipe(Effect.flip)
      const health = yield* client.health
      assert.strictEqual(health.state._tag, "Backoff")
      const unavailable = reasonOf(yield* manager.call("w", "echo", 1, { timeout: "10 millis" }).pipe(Effect.flip))
      assert.instanceOf(unavailable, PluginClientError.Unavailable)
      assert.strictEqual(unavailable instanceof PluginClientError.Unavailable ? unavailable.nextRestartAt : undefined, health.nextRestartAt)
      const waiting = yield* manager.call("w", "echo", 1).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* manager.stop("w")
      assert.instanceOf(reasonOf(yield* Fiber.join(waiting)), PluginClientError.Closed)
      assert.strictEqual((yield* client.state)._tag, "Stopped")
      yield* TestClock.adjust("10 minutes")
      yield* settle
      assert.strictEqual((yield* fake.spawns).length, 1, "a stopped plugin was restarted")
      assert.instanceOf(reasonOf(yield* manager.call("w", "echo", 1).pipe(Effect.flip)), PluginClientError.Closed)
      yield* manager.start("w")
      assert.strictEqual(yield* manager.call("w", "echo", 2), 2)
    }))

  it.effect("a call during backoff whose timeout outlasts the restart waits for it and succeeds", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({ plugin: InMemorySpawner.echo() })
      yield* manager.register({ name: "w", executable: "plugin" }, { policy: alwaysOn() })
      yield* manager.start("w")
      yield* manager.call("w", "crash", { code: 1 }).pipe(Effect.flip)
      const waiting = yield* manager.call("w", "echo", "after the restart").pipe(Effect.forkChild)
      yield* settle
      assert.isUndefined(waiting.pollUnsafe(), "the call waits for the restart")
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* Fiber.join(waiting), "after the restart")
      assert.strictEqual((yield* fake.spawns).length, 2)
    }))

  it.effect("eager plugins get the initialize handshake by default; ok: false fails start with InitFailed", () =>
    Effect.gen(function*() {
      const { manager } = yield* fakeManager({
        good: InMemorySpawner.echo({ supportedMethods: ["echo", "tools/list"] }),
        bad: InMemorySpawner.echo({ initializeResult: { ok: false } })
      })
      yield* manager.register({ name: "good", executable: "good" }, { policy: alwaysOn() })
      yield* manager.register({ name: "bad", executable: "bad" }, { policy: alwaysOn() })
      yield* manager.start("good")
      const [diag] = (yield* manager.diagnostics).filter((d) => d.id === "good")
      assert.deepStrictEqual(diag?.health.supportedMethods, ["echo", "tools/list"])
      const error = yield* manager.start("bad").pipe(Effect.flip)
      assert.instanceOf(reasonOf(error), PluginClientError.InitFailed)
      assert.include(error.message, "ok: false")
    }))

  it.effect("the stop sequence asks for shutdown first, then SIGTERM after the drain timeout", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({ plugin: InMemorySpawner.ignoreSigterm(InMemorySpawner.neverReply()) })
      yield* manager.register({ name: "w", executable: "plugin" }, {
        policy: alwaysOn({ drainTimeout: "10 seconds", shutdownGrace: "5 seconds" }),
        handshake: Handshake.none
      })
      yield* manager.start("w")
      const stopping = yield* manager.stop("w").pipe(Effect.forkChild)
      yield* settle
      const record = () => Effect.map(fake.spawns, (s) => s[0])
      assert.deepStrictEqual((yield* record())?.stdinLines.map((l) => JSON.parse(l).method), ["shutdown"])
      yield* TestClock.adjust("9999 millis")
      yield* settle
      assert.deepStrictEqual((yield* record())?.signals, [])
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.deepStrictEqual((yield* record())?.signals, ["SIGTERM"])
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(stopping)
      assert.deepStrictEqual((yield* record())?.signals, ["SIGTERM", "SIGKILL"])
    }))
})

describe("PluginManager (TestClock, in-memory spawner)", () => {
  it.effect("registers ids once, replaces a stopped one, and names unknown ids", () =>
    Effect.gen(function*() {
      const { manager } = yield* fakeManager({ plugin: InMemorySpawner.echo() })
      yield* manager.register({ name: "a", executable: "plugin" })
      const again = yield* manager.register({ name: "a", executable: "plugin" }).pipe(Effect.flip)
      assert.instanceOf(again.reason, PluginManager.AlreadyRegistered)
      assert.strictEqual(again.message, "plugin id `a` is already registered")
      yield* manager.stop("a")
      yield* manager.register({ name: "a", executable: "plugin" })
      const unknown = yield* manager.call("nope", "echo").pipe(Effect.flip)
      assert.instanceOf(reasonOf(unknown), PluginManager.NotRegistered)
      yield* manager.stop("nope")
      assert.isFalse(yield* manager.isRunning("nope"))
      assert.deepStrictEqual(yield* manager.ids, ["a"])
    }))

  it.effect("registers under the manifest's name by default, or under options.id: one manifest, two ids", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({ plugin: InMemorySpawner.echo() })
      const manifest = PluginManifest.make({ name: "echo", version: "1", executable: "plugin" })
      yield* manager.register(manifest)
      yield* manager.register(manifest, { id: "echo-2", env: { SECOND: "1" } })
      assert.deepStrictEqual(yield* manager.ids, ["echo", "echo-2"])
      assert.strictEqual(yield* manager.call("echo-2", "echo", "x"), "x")
      assert.deepStrictEqual((yield* fake.spawns).map((s) => s.env), [{ SECOND: "1" }])
      const again = yield* manager.register(manifest, { id: "echo-2" }).pipe(Effect.flip)
      assert.strictEqual(again.message, "plugin id `echo-2` is already registered")
    }))

  it.effect("PluginManager.layer(options) takes the manager's options: a spawn cap of 1", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.slowReply("1 second") })
      yield* Effect.gen(function*() {
        const manager = yield* PluginManager.PluginManager
        for (const name of ["a", "b"]) yield* manager.register({ name, executable: "plugin" }, { policy: LifetimePolicy.alwaysOn })
        const all = yield* manager.startAll.pipe(Effect.forkChild)
        yield* settle
        assert.strictEqual((yield* fake.spawns).length, 1)
        yield* TestClock.adjust("1 second")
        yield* settle
        assert.strictEqual((yield* fake.spawns).length, 2)
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(all)
        yield* stopOnTheClock(manager)
      }).pipe(Effect.provide(PluginManager.layer({ maxConcurrentSpawns: 1 }).pipe(Layer.provide(fake.layer))))
    }))

  it.effect("an id whose manifest discover rejected fails with NotRegistered naming the rejection, in start, call, get and notify", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "plugin-manager-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
      )
      // A small executable, so hashing it for the checksum is quick.
      const executable = fixture("env-dump.sh")
      const manifest = (name: string, checksum?: string) =>
        [`name = "${name}"`, `version = "1"`, `executable = "${executable}"`, ...(checksum === undefined ? [] : [`checksum_sha256 = "${checksum}"`])].join("\n")
      fs.writeFileSync(path.join(dir, "good.toml"), manifest("good"))
      fs.writeFileSync(path.join(dir, "devboy-echo.toml"), manifest("echo", "ab".repeat(32)))
      const { manager } = yield* fakeManager({})
      const outcomes = yield* manager.discover(dir)
      assert.deepStrictEqual(outcomes.map((o) => o._tag), ["Rejected", "Valid"])
      assert.deepStrictEqual(yield* manager.ids, ["good"])
      const failures = [
        yield* manager.start("echo").pipe(Effect.flip),
        yield* manager.call("echo", "echo").pipe(Effect.flip),
        yield* manager.get("echo").pipe(Effect.flip),
        yield* manager.notify("echo", "ping").pipe(Effect.flip)
      ]
      for (const failure of failures) {
        const reason = reasonOf(failure)
        assert.instanceOf(reason, PluginManager.NotRegistered)
        assert.strictEqual(reason instanceof PluginManager.NotRegistered ? reason.rejected?.reason._tag : undefined, "ChecksumMismatch")
        assert.include(
          failure.message,
          `plugin id \`echo\` is not registered: its manifest ${path.join(dir, "devboy-echo.toml")} was rejected: checksum mismatch for ${executable}`
        )
      }
      // An id no rejected file name implies keeps the plain message.
      const unknown = yield* manager.call("nope", "echo").pipe(Effect.flip)
      assert.strictEqual(unknown.message, "plugin id `nope` is not registered")
      // A missing folder is an error, not an empty host.
      const missing = yield* manager.discover(path.join(dir, "missing")).pipe(Effect.flip)
      assert.strictEqual(missing.message, `plugin directory ${path.join(dir, "missing")} does not exist`)
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("concurrent starts of one id share one spawn; lazy and eager plugins live together", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* fakeManager({ lazy: InMemorySpawner.echo(), eager: InMemorySpawner.echo() })
      yield* manager.register({ name: "lazy", executable: "lazy" })
      yield* manager.register({ name: "eager", executable: "eager" }, { policy: LifetimePolicy.alwaysOn })
      yield* Effect.all([1, 2, 3].map(() => manager.start("eager")), { concurrency: "unbounded" })
      assert.deepStrictEqual((yield* fake.spawns).map((s) => s.command), ["eager"])
      assert.isTrue(yield* manager.isRunning("eager"))
      assert.isFalse(yield* manager.isRunning("lazy"))
      assert.strictEqual(yield* manager.call("lazy", "echo", "x"), "x")
      assert.isTrue(yield* manager.isRunning("lazy"))
      // The lazy one is reaped when idle; the eager one never is.
      yield* TestClock.adjust("61 seconds")
      yield* settle
      assert.isFalse(yield* manager.isRunning("lazy"))
      assert.isTrue(yield* manager.isRunning("eager"))
    }))

  it.effect("caps how many plugins spawn at once", () =>
    Effect.gen(function*() {
      const slowInit = InMemorySpawner.slowReply("1 second")
      const { fake, manager } = yield* fakeManager({ plugin: slowInit }, { maxConcurrentSpawns: 2 })
      for (let i = 0; i < 5; i++) {
        yield* manager.register({ name: `p${i}`, executable: "plugin" }, { policy: LifetimePolicy.alwaysOn })
      }
      const all = yield* manager.startAll.pipe(Effect.forkChild)
      yield* settle
      assert.strictEqual((yield* fake.spawns).length, 2)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual((yield* fake.spawns).length, 4)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual((yield* fake.spawns).length, 5)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(all)
      for (let i = 0; i < 5; i++) assert.isTrue(yield* manager.isRunning(`p${i}`))
      yield* stopOnTheClock(manager)
    }))

  it.effect("diagnostics report every plugin under its id; events are tagged with the id", () =>
    Effect.gen(function*() {
      const { manager } = yield* fakeManager({ plugin: InMemorySpawner.echo() })
      const events = yield* Effect.gen(function*() {
        const seen: Array<PluginManager.ManagerEvent> = []
        yield* manager.events.pipe(Stream.runForEach((e) => Effect.sync(() => void seen.push(e))), Effect.forkScoped)
        yield* settle
        return seen
      })
      yield* manager.register({ name: "one", executable: "plugin", allowedEnvVars: ["HOME"] })
      yield* manager.register({ name: "two", executable: "plugin" })
      yield* manager.call("one", "echo", 1)
      const diagnostics = yield* manager.diagnostics
      assert.deepStrictEqual(diagnostics.map((d) => [d.id, d.health.state._tag]), [["one", "Running"], ["two", "Idle"]])
      assert.deepStrictEqual(diagnostics[0]?.allowedEnvVars, ["HOME"])
      yield* settle
      assert.isTrue(events.some((e) => e._tag === "Plugin" && e.id === "one" && e.event._tag === "Ready"))
      assert.isFalse(events.some((e) => e._tag === "Plugin" && e.id === "two"))
    }))

  it.effect("a plugin's events reach the manager's stream and the onEvent it was registered with, each in order", () =>
    Effect.gen(function*() {
      const { manager } = yield* fakeManager({ plugin: InMemorySpawner.echo() })
      const events = yield* recordEvents(manager)
      const own: Array<PluginClient.PluginEvent> = []
      yield* manager.register({ name: "watched", executable: "plugin" }, { onEvent: (event) => Effect.sync(() => void own.push(event)) })
      yield* manager.call("watched", "echo", 1)
      yield* manager.stop("watched")
      yield* settle
      const forwarded = events.flatMap((e) => e._tag === "Plugin" && e.id === "watched" ? [e.event] : [])
      const lifeOf = (list: ReadonlyArray<PluginClient.PluginEvent>) =>
        list.flatMap((event) => event._tag === "StateChanged" ? [`${event.from._tag}→${event.to._tag}`] : event._tag === "Ready" ? ["Ready"] : [])
      assert.deepStrictEqual(lifeOf(forwarded), ["Idle→Starting", "Starting→Running", "Ready", "Running→Stopping", "Stopping→Stopped"])
      assert.deepStrictEqual(own, forwarded, "the caller's listener gets exactly what the manager forwarded")
    }))

  it.effect("releasing the layer stops every plugin", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.echo() })
      yield* Effect.gen(function*() {
        const manager = yield* PluginManager.PluginManager
        for (const id of ["a", "b", "c"]) {
          yield* manager.register({ name: id, executable: "plugin" }, { policy: LifetimePolicy.alwaysOn })
        }
        yield* manager.startAll
        assert.strictEqual((yield* fake.spawns).filter((s) => s.running).length, 3)
      }).pipe(Effect.provide(PluginManager.layer().pipe(Layer.provide(fake.layer))))
      assert.strictEqual((yield* fake.spawns).filter((s) => s.running).length, 0)
    }))
})

describe("PluginManager shutdown (TestClock, in-memory spawner)", () => {
  const stubborn = { plugin: InMemorySpawner.ignoreSigterm(InMemorySpawner.neverReply()) }
  const graceful = LifetimePolicy.makeUnsafe({ shutdownGrace: "5 seconds" })

  /** A manager in its own Scope with `n` started plugins that only SIGKILL ends. */
  const stubbornManager = (n: number) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { fake, manager } = yield* fakeManager(stubborn).pipe(Scope.provide(scope))
      const ids = Array.from({ length: n }, (_, i) => `p${i}`)
      for (const id of ids) yield* manager.register({ name: id, executable: "plugin" }, { policy: graceful, handshake: Handshake.none })
      yield* Effect.forEach(ids, (id) => manager.start(id), { concurrency: "unbounded", discard: true })
      // Let each fake process run up to its SIGTERM trap, as a real one would have before a stop.
      yield* settle
      assert.strictEqual((yield* fake.spawns).filter((s) => s.running).length, n)
      return { scope, fake, manager }
    })

  it.effect("closing the manager's Scope stops 10 plugins that ignore SIGTERM at once: one grace, not ten", () =>
    Effect.gen(function*() {
      const { fake, scope } = yield* stubbornManager(10)
      const began = yield* Clock.currentTimeMillis
      const closing = yield* Scope.close(scope, Exit.void).pipe(Effect.forkChild)
      yield* settle
      assert.deepStrictEqual((yield* fake.spawns).map((s) => s.signals.join()), Array.from({ length: 10 }, () => "SIGTERM"))
      yield* TestClock.adjust("4999 millis")
      yield* settle
      assert.isUndefined(closing.pollUnsafe(), "every plugin still has 1 ms of grace")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      assert.strictEqual((yield* Clock.currentTimeMillis) - began, 5_000, "released exactly one grace after the close began")
      const spawns = yield* fake.spawns
      assert.deepStrictEqual(spawns.map((s) => s.signals.join()), Array.from({ length: 10 }, () => "SIGTERM,SIGKILL"))
      assert.strictEqual(spawns.filter((s) => s.running).length, 0)
    }))

  it.effect("closing the manager's Scope runs each plugin's whole stop sequence: shutdown request, drain, SIGTERM, grace, SIGKILL", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { fake, manager } = yield* fakeManager(stubborn).pipe(Scope.provide(scope))
      const policy = LifetimePolicy.makeUnsafe({ ...LifetimePolicy.alwaysOn, drainTimeout: "3 seconds", shutdownGrace: "5 seconds" })
      for (const id of ["a", "b"]) yield* manager.register({ name: id, executable: "plugin" }, { policy, handshake: Handshake.none })
      yield* manager.startAll
      const closing = yield* Scope.close(scope, Exit.void).pipe(Effect.forkChild)
      yield* settle
      const spawns = () => fake.spawns
      assert.deepStrictEqual((yield* spawns()).map((s) => s.stdinLines.map((l) => JSON.parse(l).method).join()), ["shutdown", "shutdown"])
      assert.deepStrictEqual((yield* spawns()).map((s) => s.signals.join()), ["", ""], "no SIGTERM before the drain ends")
      yield* TestClock.adjust("3 seconds")
      yield* settle
      assert.deepStrictEqual((yield* spawns()).map((s) => s.signals.join()), ["SIGTERM", "SIGTERM"])
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(closing)
      assert.deepStrictEqual((yield* spawns()).map((s) => s.signals.join()), ["SIGTERM,SIGKILL", "SIGTERM,SIGKILL"])
    }))

  it.effect("unregister or stop of one id does not wait for another's stop, nor blocks register", () =>
    Effect.gen(function*() {
      const { fake, manager } = yield* stubbornManager(3)
      const first = yield* manager.unregister("p0").pipe(Effect.forkChild)
      yield* settle
      const second = yield* manager.unregister("p1").pipe(Effect.forkChild)
      const third = yield* manager.stop("p2").pipe(Effect.forkChild)
      yield* settle
      yield* manager.register({ name: "late", executable: "plugin" }, { policy: graceful, handshake: Handshake.none })
      assert.deepStrictEqual(yield* manager.ids, ["p2", "late"])
      assert.deepStrictEqual((yield* fake.spawns).map((s) => s.signals.join()), ["SIGTERM", "SIGTERM", "SIGTERM"])
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(first)
      yield* settle
      assert.isDefined(second.pollUnsafe(), "every stop ended one grace after it began")
      assert.isDefined(third.pollUnsafe(), "every stop ended one grace after it began")
      assert.strictEqual((yield* fake.spawns).filter((s) => s.running).length, 0)
    }))
})

describe("PluginManager where the executable is found (real processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 5_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  it.live("a loaded or discovered manifest needs no manifestDir, whatever the working directory", () =>
    Effect.gen(function*() {
      const plugin = yield* namesPlugin
      const elsewhere = yield* tempFolder("plugin-host-cwd-")
      yield* inWorkingDirectory(elsewhere)
      const manager = yield* PluginManager.make()
      const policy = LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second" })
      yield* manager.register(yield* PluginManifest.load(plugin.file), { id: "loaded", policy })
      assert.isString(yield* manager.call("loaded", "names"))
      const outcomes = yield* manager.discover(path.relative(elsewhere, plugin.dir), { policy })
      assert.deepStrictEqual(outcomes.map((outcome) => outcome._tag), ["Valid"])
      assert.isString(yield* manager.call("names", "names"))
    }).pipe(Effect.provide(live)))
})

for (const launcher of launchers) {
  describe(`PluginManager (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 5_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    const quickBackoff = LifetimePolicy.makeUnsafe({
      ...LifetimePolicy.alwaysOn,
      shutdownGrace: "1 second",
      drainTimeout: "1 second",
      backoff: { ...LifetimePolicy.defaultBackoff, initial: "100 millis" }
    })

    it.live("a worker: started, called concurrently, calling the host, logging, streaming, crashing and restarted", () =>
      Effect.gen(function*() {
        const logged: Array<{ message: unknown; plugin: unknown; meta: unknown }> = []
        const capture = Logger.make(({ fiber, message }) => {
          const annotations = fiber.getRef(References.CurrentLogAnnotations)
          if (annotations.source === "plugin") logged.push({ message, plugin: annotations.plugin, meta: annotations.meta })
        })
        yield* Effect.gen(function*() {
          const manager = yield* PluginManager.PluginManager
          const streamEvents: Array<PluginClient.StreamEvent> = []
          const events: Array<PluginManager.ManagerEvent> = []
          yield* manager.events.pipe(Stream.runForEach((e) => Effect.sync(() => void events.push(e))), Effect.forkScoped)
          yield* manager.register({ name: "worker", executable: node, args: [fixture("echo-worker.ts")] }, {
            policy: quickBackoff,
            hostHandlers: { "host.add": (p) => Effect.succeed(Array.isArray(p) ? p.reduce((a: number, b: number) => a + b, 0) : 0) }
          })
          yield* manager.register({ name: "streamer", executable: node, args: [fixture("rpc-plugin.mjs")] }, {
            policy: quickBackoff,
            handshake: Handshake.none,
            onStreamNotification: (e) => Effect.sync(() => void streamEvents.push(e))
          })
          yield* manager.startAll
          const firstPid = (yield* manager.get("worker").pipe(Effect.flatMap((c) => c.health))).pid

          const answers = yield* Effect.all(
            [100, 50, 0].map((ms) => manager.call("worker", "sleep", { ms })),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(answers, [100, 50, 0])
          assert.strictEqual(yield* manager.call("worker", "askHost", [1, 2]), 3)
          assert.strictEqual(yield* manager.call("worker", "logSomething"), "logged")
          assert.isTrue(yield* eventually(() => logged.length > 0))
          assert.deepInclude(logged[0], { message: ["careful"], plugin: "worker", meta: { n: 1 } })

          yield* manager.call("streamer", "notify", { method: "streams.open", params: { channel: "c1" } })
          yield* manager.call("streamer", "notify", { method: "streams.emit", params: { channel: "c1", value: 1 } })
          const pending = yield* manager.call("streamer", "sleep", { ms: 10_000 }).pipe(Effect.flip, Effect.forkChild)
          yield* Effect.sleep("50 millis")
          yield* manager.call("streamer", "crash", { code: 3, stderr: "streamer died\n" }).pipe(Effect.flip)
          const failed = yield* Fiber.join(pending)
          const reason = reasonOf(failed)
          assert.instanceOf(reason, PluginClientError.Exited)
          assert.strictEqual(reason.code, 3)
          assert.include(reason.stderrExcerpt, "streamer died")
          assert.deepStrictEqual(
            streamEvents.map((e) => `${e.action}:${e.channel}:${e.synthetic}`),
            ["open:c1:false", "emit:c1:false", "close:c1:true"]
          )
          assert.isTrue(yield* eventually(() => events.some((e) => e._tag === "WorkerRestarted" && e.id === "streamer"), 3_000))
          assert.strictEqual(yield* manager.call("streamer", "echo", "again"), "again")
          assert.strictEqual((yield* manager.get("worker").pipe(Effect.flatMap((c) => c.health))).pid, firstPid)
        }).pipe(
          Effect.provide(PluginManager.layer()),
          Effect.provide(Logger.layer([capture])),
          Effect.provideService(References.MinimumLogLevel, "All")
        )
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("stops through each rung: shutdown answered, SIGTERM honoured, SIGKILL needed", () =>
      Effect.gen(function*() {
        const exits = new Map<string, { code: number | null; signal: string | null }>()
        yield* Effect.gen(function*() {
          const manager = yield* PluginManager.PluginManager
          yield* manager.events.pipe(
            Stream.runForEach((e) =>
              Effect.sync(() => {
                if (e._tag === "Plugin" && e.event._tag === "Exit") exits.set(e.id, { code: e.event.code, signal: e.event.signal })
              })
            ),
            Effect.forkScoped
          )
          // Deadlines generous enough for a loaded machine: the polite plugin must answer and exit
          // within the drain, the SIGTERM-honouring one within the grace.
          const policy = LifetimePolicy.makeUnsafe({ ...quickBackoff, drainTimeout: "3 seconds", shutdownGrace: "2 seconds" })
          const rung = (id: string, args: ReadonlyArray<string>) =>
            manager.register({ name: id, executable: node, args: [fixture("rpc-plugin.mjs"), ...args] }, {
              policy,
              handshake: Handshake.none
            })
          yield* rung("polite", [])
          yield* rung("term", ["--ignore-shutdown", "--ignore-eof"])
          yield* rung("stubborn", ["--ignore-shutdown", "--ignore-eof", "--trap-term"])
          yield* manager.startAll
          const [took] = yield* Effect.timed(manager.stopAll)
          assert.isBelow(Duration.toMillis(took), 3_000 + 2_000 + 3_000, "stops run in parallel within the deadlines")
          yield* Effect.sleep("100 millis")
        }).pipe(Effect.provide(PluginManager.layer()))
        assert.deepStrictEqual(exits.get("polite"), { code: 0, signal: null })
        assert.deepStrictEqual(exits.get("term"), { code: null, signal: "SIGTERM" })
        assert.deepStrictEqual(exits.get("stubborn"), { code: null, signal: "SIGKILL" })
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("releasing the layer stops 50 plugins, 10 trapping SIGTERM, within one grace plus a margin", () =>
      Effect.gen(function*() {
        const policy = LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds" })
        const { pids, releaseBegan } = yield* Effect.gen(function*() {
          const manager = yield* PluginManager.PluginManager
          for (let i = 0; i < 50; i++) {
            const stubborn = i < 10 ? ["--ignore-shutdown", "--ignore-eof", "--trap-term"] : []
            yield* manager.register({ name: `p${i}`, executable: node, args: [fixture("rpc-plugin.mjs"), ...stubborn] }, {
              policy,
              handshake: Handshake.none
            })
          }
          yield* Effect.forEach(yield* manager.ids, (id) => manager.start(id), { concurrency: "unbounded", discard: true })
          const diagnostics = yield* manager.diagnostics
          assert.strictEqual(diagnostics.filter((d) => d.health.state._tag === "Running").length, 50)
          return {
            pids: diagnostics.flatMap((d) => d.health.pid === undefined ? [] : [d.health.pid]),
            releaseBegan: performance.now()
          }
        }).pipe(Effect.provide(PluginManager.layer()))
        const took = performance.now() - releaseBegan
        assert.strictEqual(pids.length, 50)
        // A stubborn stop is SIGTERM, the 2 s grace, SIGKILL: one after another, ten would take over 20 s.
        assert.isBelow(took, 2_000 + 4_000, "every plugin stopped at once")
        assert.deepStrictEqual(pids.filter(isAlive), [])
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("50 plugins start and stop in parallel", () =>
      Effect.gen(function*() {
        const pids = yield* Effect.gen(function*() {
          const manager = yield* PluginManager.PluginManager
          for (let i = 0; i < 50; i++) {
            yield* manager.register({ name: `p${i}`, executable: node, args: [fixture("rpc-plugin.mjs")] }, {
              policy: LifetimePolicy.makeUnsafe({ ...LifetimePolicy.alwaysOn, shutdownGrace: "2 seconds" }),
              handshake: Handshake.none
            })
          }
          yield* manager.startAll
          const diagnostics = yield* manager.diagnostics
          assert.strictEqual(diagnostics.filter((d) => d.health.state._tag === "Running").length, 50)
          const answers = yield* Effect.all(
            diagnostics.map((d) => manager.call(d.id, "echo", d.id)),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(answers, diagnostics.map((d) => d.id))
          return diagnostics.flatMap((d) => d.health.pid === undefined ? [] : [d.health.pid])
        }).pipe(Effect.provide(PluginManager.layer()))
        assert.strictEqual(pids.length, 50)
        assert.deepStrictEqual(pids.filter(isAlive), [])
      }).pipe(Effect.provide(liveWith(launcher))))
  })
}

