import { afterEach, assert, describe, it } from "@effect/vitest"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Tracer from "effect/Tracer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginMethod from "../src/PluginMethod.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { inWorkingDirectory, namesPlugin, tempFolder } from "./support/pluginFolder.ts"
import { eventually, fixture, isAlive, launchers, live, liveWith, liveChildren, node } from "./support/processes.ts"

const reasonOf = (error: PluginClientError.PluginClientError) => error.reason

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** A client over the in-memory spawner, whose command `plugin` runs `behaviour`. */
const fakeClient = (behaviour: InMemorySpawner.Behaviour, options?: PluginClient.Options, name = "fake") =>
  Effect.gen(function*() {
    const fake = yield* InMemorySpawner.make({ plugin: behaviour })
    const client = yield* PluginClient.make({ name, executable: "plugin" }, options).pipe(Effect.provide(fake.layer))
    return { fake, client }
  })

const stateOf = (client: PluginClient.PluginClient) => Effect.map(client.state, (s) => s._tag)

describe("PluginClient (TestClock, in-memory spawner)", () => {
  it.effect("spawns nothing until the first request; concurrent first requests share one spawn", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      yield* settle
      assert.strictEqual((yield* fake.spawns).length, 0)
      assert.strictEqual(yield* stateOf(client), "Idle")
      const results = yield* Effect.all([1, 2, 3, 4].map((n) => client.request("echo", n)), { concurrency: "unbounded" })
      assert.deepStrictEqual(results, [1, 2, 3, 4])
      assert.strictEqual((yield* fake.spawns).length, 1)
      assert.strictEqual(yield* stateOf(client), "Running")
    }))

  it.effect("reaps an idle plugin exactly at the idle timeout, not before, and respawns on the next call", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.request("echo", 1)
      const firstPid = (yield* client.health).pid
      yield* TestClock.adjust("59999 millis")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Running")
      assert.isTrue((yield* fake.spawns)[0]?.running)
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Idle")
      assert.isFalse((yield* fake.spawns)[0]?.running)
      assert.strictEqual(yield* client.request("echo", 2), 2)
      const spawns = yield* fake.spawns
      assert.strictEqual(spawns.length, 2)
      assert.notStrictEqual(spawns[1]?.pid, firstPid)
    }))

  it.effect("every call re-arms the idle timer", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.request("echo", 1)
      yield* TestClock.adjust("40 seconds")
      yield* client.request("echo", 2)
      yield* TestClock.adjust("40 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Running")
      yield* TestClock.adjust("20 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Idle")
    }))

  it.effect("never reaps while a call is in flight", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.request("echo", 0)
      const slow = yield* client.request("sleep", { ms: 150_000, value: "done" }, { timeout: "5 minutes" }).pipe(Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("149 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Running")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(slow), "done")
      yield* TestClock.adjust("59 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Running")
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Idle")
    }))

  it.effect("a call to the running plugin whose caller gives up ends there: counted, timed, and the idle period runs from then", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo(), undefined, "given-up")
      yield* client.request("echo", 0)
      const slow = yield* client.request("sleep", { ms: 150_000, value: "never" }, { timeout: "5 minutes" }).pipe(Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.interrupt(slow)
      const health = yield* client.health
      assert.strictEqual(health.requests, 2)
      assert.strictEqual(health.pendingRequests, 0)
      const durations = yield* Metric.value(Metric.withAttributes(PluginClient.requestDuration, { plugin: "given-up" }))
      assert.strictEqual(durations.count, 2)
      assert.isAtLeast(durations.max, 10_000)
      yield* TestClock.adjust("59999 millis")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Running")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Idle")
    }))

  it.effect("a stop leaves no timer behind (idle watch, call timeouts, the wait for the exit), and an idle plugin is reaped with none either", () =>
    Effect.gen(function*() {
      const base = yield* Clock.Clock
      let sleeping = 0
      const counting: Clock.Clock = {
        currentTimeMillisUnsafe: () => base.currentTimeMillisUnsafe(),
        currentTimeMillis: base.currentTimeMillis,
        currentTimeNanosUnsafe: () => base.currentTimeNanosUnsafe(),
        currentTimeNanos: base.currentTimeNanos,
        monotonicTimeNanosUnsafe: () => base.monotonicTimeNanosUnsafe(),
        monotonicTimeNanos: base.monotonicTimeNanos,
        sleep: (duration) =>
          Effect.suspend(() => {
            sleeping++
            return Effect.ensuring(base.sleep(duration), Effect.sync(() => void sleeping--))
          })
      }
      // Everything the client does runs on the counting clock; the test moves the TestClock under it.
      const counted = Effect.provideService(Clock.Clock, counting)
      const { client } = yield* counted(fakeClient(InMemorySpawner.echo()))
      yield* counted(client.request("echo", 1))
      assert.isAbove(sleeping, 0, "the idle watch and the call timeouts sleep")
      yield* counted(client.stop)
      yield* settle
      assert.strictEqual(sleeping, 0, "timers left after the stop")
      yield* counted(client.start)
      yield* counted(client.request("echo", 2))
      yield* TestClock.adjust("60 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Idle")
      assert.strictEqual(sleeping, 0, "timers left after the reap")

      // Closing the scope of a client with a restart pending, a running plugin with its idle
      // watch and exit watcher, and a listener still busy with earlier events leaves none either:
      // each is a fiber the client's scope owns.
      const scope = yield* Scope.make()
      const backoff = LifetimePolicy.makeUnsafe({ backoff: { initial: "5 seconds", jitter: 0 } })
      const owned = yield* counted(fakeClient(InMemorySpawner.echo(), { policy: backoff, onEvent: () => Effect.sleep("1 hour") })).pipe(
        Scope.provide(scope)
      )
      yield* counted(owned.client.request("echo", 1))
      yield* counted(owned.client.request("crash", { code: 1 })).pipe(Effect.flip)
      assert.strictEqual(yield* stateOf(owned.client), "Backoff")
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(owned.client), "Running")
      yield* counted(owned.client.request("crash", { code: 1 })).pipe(Effect.flip)
      assert.strictEqual(yield* stateOf(owned.client), "Backoff")
      assert.isAbove(sleeping, 1, "the backoff timer and the listener sleep")
      yield* Scope.close(scope, Exit.void)
      yield* settle
      assert.strictEqual(sleeping, 0, "timers left after the client's scope closed")
      yield* TestClock.adjust("1 minute")
      yield* settle
      assert.lengthOf(yield* owned.fake.spawns, 2, "the pending restart ran after the scope closed")
    }))

  it.effect("3 crashes within 60 s disable the plugin: the third call fails with RestartCapExceeded, later calls fast with Disabled", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      for (const n of [1, 2]) {
        const reason = reasonOf(yield* client.request("crash", { code: n }).pipe(Effect.flip))
        assert.instanceOf(reason, PluginClientError.Exited)
        assert.strictEqual(yield* stateOf(client), "Recovering")
        yield* TestClock.adjust("10 seconds")
      }
      const third = reasonOf(yield* client.request("crash", { code: 3 }).pipe(Effect.flip))
      assert.instanceOf(third, PluginClientError.RestartCapExceeded)
      assert.strictEqual(third.cap, 3)
      const state = yield* client.state
      assert.strictEqual(state._tag, "Disabled")
      const later = yield* client.request("echo", 1).pipe(Effect.flip)
      assert.instanceOf(reasonOf(later), PluginClientError.Disabled)
      assert.include(later.message, "plugin `fake` is disabled")
      assert.strictEqual((yield* fake.spawns).length, 3, "a disabled plugin is not spawned again")
      const health = yield* client.health
      assert.strictEqual(health.crashesInWindow, 3)
      assert.strictEqual(health.totalCrashes, 3)
    }))

  it.effect("3 crashes spread over more than 60 s never disable the plugin", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      for (let i = 0; i < 6; i++) {
        yield* client.request("crash", { code: 1 }).pipe(Effect.flip)
        assert.strictEqual(yield* stateOf(client), "Recovering")
        yield* TestClock.adjust("31 seconds")
      }
      assert.strictEqual(yield* client.request("echo", "alive"), "alive")
      assert.strictEqual((yield* client.health).crashesInWindow, 1)
      assert.strictEqual((yield* client.health).totalCrashes, 6)
    }))

  it.effect("the window's edge: crashes at 0, 30 s and 59.999 s disable; at 0, 30 s and 60 s they do not", () =>
    Effect.gen(function*() {
      for (const [last, expected] of [[59_999, "Disabled"], [60_000, "Recovering"]] as const) {
        const { client } = yield* fakeClient(InMemorySpawner.echo())
        const start = yield* Clock.currentTimeMillis
        for (const at of [0, 30_000, last]) {
          yield* TestClock.adjust(Duration.millis(start + at - (yield* Clock.currentTimeMillis)))
          yield* client.request("crash", { code: 1 }).pipe(Effect.flip)
        }
        assert.strictEqual(yield* stateOf(client), expected, `third crash at ${last} ms`)
      }
    }))

  it.effect("a successful respawn ends the run of consecutive crashes, not the window: the third crash within 60 s still disables", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      for (const n of [1, 2]) {
        yield* client.request("crash", { code: n }).pipe(Effect.flip)
        assert.strictEqual((yield* client.health).consecutiveCrashes, 1, `crash ${n}`)
        assert.strictEqual(yield* client.request("echo", n), n)
        const health = yield* client.health
        assert.strictEqual(health.consecutiveCrashes, 0, `respawn after crash ${n}`)
        assert.strictEqual(health.crashesInWindow, n)
        yield* TestClock.adjust("10 seconds")
      }
      assert.instanceOf(reasonOf(yield* client.request("crash", { code: 3 }).pipe(Effect.flip)), PluginClientError.RestartCapExceeded)
      const state = yield* client.state
      assert.include(state._tag === "Disabled" ? state.reason : "", "crashed 3 times within 1 min")
    }))

  it.effect("clearDisabled forgets the crashes and the plugin works again", () =>
    Effect.gen(function*() {
      const behaviour = InMemorySpawner.sequence(
        InMemorySpawner.crashOnStart({ code: 1, stderr: "boom 1\n" }),
        InMemorySpawner.crashOnStart({ code: 1, stderr: "boom 2\n" }),
        InMemorySpawner.crashOnStart({ code: 1, stderr: "boom 3\n" }),
        InMemorySpawner.echo()
      )
      const { client } = yield* fakeClient(behaviour, { handshake: Handshake.initialize() })
      yield* client.request("echo", 1).pipe(Effect.flip)
      yield* client.request("echo", 1).pipe(Effect.flip)
      const tripped = reasonOf(yield* client.request("echo", 1).pipe(Effect.flip))
      assert.instanceOf(tripped, PluginClientError.RestartCapExceeded)
      assert.strictEqual(yield* stateOf(client), "Disabled")
      yield* client.clearDisabled
      assert.strictEqual(yield* stateOf(client), "Idle")
      assert.strictEqual((yield* client.health).crashesInWindow, 0)
      assert.strictEqual(yield* client.request("echo", "back"), "back")
    }))

  it.effect("a failed start counts as a crash and carries the stderr excerpt", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.crashOnStart({ code: 2, stderr: "missing config file\n" }), {
        handshake: Handshake.initialize()
      })
      const error = yield* client.request("echo", 1).pipe(Effect.flip)
      const reason = reasonOf(error)
      assert.instanceOf(reason, PluginClientError.InitFailed)
      assert.include(error.message, "missing config file")
      assert.strictEqual((yield* client.health).totalCrashes, 1)
      assert.strictEqual(yield* stateOf(client), "Recovering")
    }))

  it.effect("a plugin that writes to stderr and exits 1 during its handshake: the error and lastError hold the stderr excerpt once", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.crashOnStart({ code: 1, stderr: "cannot open config.toml\n" }), {
        handshake: Handshake.initialize()
      })
      const error = yield* client.request("echo", 1).pipe(Effect.flip)
      const occurrences = (text: string | undefined) => (text ?? "").split("cannot open config.toml").length - 1
      assert.strictEqual(occurrences(error.message), 1, error.message)
      const health = yield* client.health
      assert.strictEqual(occurrences(health.lastError), 1, health.lastError)
      assert.include(health.lastError, "exited with code 1")
      assert.strictEqual(health.lastErrorReason, "InitFailed")
    }))

  it.effect("a handshake with no answer fails with InitFailed at initTimeout (15 s), kills the process and counts as a crash", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.neverReply(), { handshake: Handshake.initialize() })
      const call = yield* client.request("echo", 1).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("14999 millis")
      yield* settle
      assert.isUndefined(call.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const reason = reasonOf(yield* Fiber.join(call))
      assert.instanceOf(reason, PluginClientError.InitFailed)
      assert.include(reason.detail, "no answer to `initialize` within 15 s")
      assert.isFalse((yield* fake.spawns)[0]?.running)
      assert.strictEqual((yield* client.health).totalCrashes, 1)
    }))

  it.effect("a handshake that answers ok: false is refused", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo({ initializeResult: { ok: false, error: "license expired" } }), {
        handshake: Handshake.initialize()
      })
      const reason = reasonOf(yield* client.request("echo", 1).pipe(Effect.flip))
      assert.instanceOf(reason, PluginClientError.InitFailed)
      assert.include(reason.detail, "license expired")
    }))

  it.effect("a handshake's result is kept (supportedMethods) and its afterwards notification is sent", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo({ supportedMethods: ["echo", "sleep"] }), {
        handshake: Handshake.make({
          method: "initialize",
          validate: (result) => Effect.succeed({ supportedMethods: (result as { supportedMethods: Array<string> }).supportedMethods }),
          afterwards: { method: "initialized" }
        })
      })
      yield* client.start
      yield* settle
      assert.deepStrictEqual((yield* client.health).supportedMethods, ["echo", "sleep"])
      const methods = (yield* fake.spawns)[0]?.stdinLines.map((l) => JSON.parse(l).method)
      assert.deepStrictEqual(methods, ["initialize", "initialized"])
    }))

  it.effect("a call timing out does not kill the process; 3 in a row recycle it as a crash", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      const timeOut = client.request("sleep", { ms: 60_000 }, { timeout: "1 second" }).pipe(Effect.flip, Effect.forkChild)
      const first = yield* timeOut
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.instanceOf(reasonOf(yield* Fiber.join(first)), PluginClientError.Timeout)
      assert.strictEqual(yield* client.request("echo", "ok"), "ok", "a success resets the streak")
      for (let i = 0; i < 2; i++) {
        const f = yield* timeOut
        yield* settle
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(f)
      }
      assert.strictEqual((yield* fake.spawns).length, 1)
      assert.strictEqual((yield* client.health).totalCrashes, 0)
      const third = yield* timeOut
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.instanceOf(reasonOf(yield* Fiber.join(third)), PluginClientError.Timeout)
      yield* settle
      assert.strictEqual((yield* client.health).totalCrashes, 1)
      assert.isFalse((yield* fake.spawns)[0]?.running)
      assert.strictEqual(yield* client.request("echo", "fresh"), "fresh")
      assert.strictEqual((yield* fake.spawns).length, 2)
    }))

  it.effect("a manifest's cancellation wins over the policy's: a timed-out call is cancelled in the manifest's dialect", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.neverReply() })
      const manifest = PluginManifest.make({ name: "fake", version: "1", executable: "plugin", cancellation: "mcp" })
      const client = yield* PluginClient.make(manifest, { policy: LifetimePolicy.makeUnsafe({ cancellation: "none" }) }).pipe(
        Effect.provide(fake.layer)
      )
      const call = yield* client.request("work", {}, { timeout: "1 second" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.instanceOf((yield* Fiber.join(call)).reason, PluginClientError.Timeout)
      yield* settle
      const lines = ((yield* fake.spawns)[0]?.stdinLines ?? []).map((line) => JSON.parse(line))
      assert.deepStrictEqual(lines.map((line) => line.method), ["work", "notifications/cancelled"])
      assert.deepStrictEqual(lines[1].params, { requestId: lines[0].id, reason: "timeout" })
    }))

  it.effect("without a manifest's cancellation the policy's holds: \"none\" sends nothing", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.neverReply() })
      const manifest = PluginManifest.make({ name: "fake", version: "1", executable: "plugin" })
      const client = yield* PluginClient.make(manifest).pipe(Effect.provide(fake.layer))
      const call = yield* client.request("work", {}, { timeout: "1 second" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(call)
      yield* settle
      assert.deepStrictEqual(((yield* fake.spawns)[0]?.stdinLines ?? []).map((line) => JSON.parse(line).method), ["work"])
    }))

  it.effect("shutdown stops the plugin for good; later calls fail with Closed", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.request("echo", 1)
      yield* client.shutdown
      assert.strictEqual(yield* stateOf(client), "Stopped")
      assert.isFalse((yield* fake.spawns)[0]?.running)
      assert.instanceOf(reasonOf(yield* client.request("echo", 1).pipe(Effect.flip)), PluginClientError.Closed)
    }))

  it.effect("shutdown of a SIGTERM-ignoring plugin escalates to SIGKILL after shutdownGrace", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.ignoreSigterm(InMemorySpawner.echo()), {
        policy: LifetimePolicy.makeUnsafe({ shutdownGrace: "10 seconds" })
      })
      yield* client.request("echo", 1)
      const stopping = yield* client.shutdown.pipe(Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("9999 millis")
      yield* settle
      assert.isTrue((yield* fake.spawns)[0]?.running)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(stopping)
      const record = (yield* fake.spawns)[0]
      assert.deepStrictEqual(record?.signals, ["SIGTERM", "SIGKILL"])
    }))

  it.effect("restart replaces the process", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.request("echo", 1)
      yield* client.restart
      const spawns = yield* fake.spawns
      assert.strictEqual(spawns.length, 2)
      assert.isFalse(spawns[0]?.running)
      assert.isTrue(spawns[1]?.running)
      assert.strictEqual((yield* client.health).totalCrashes, 0)
    }))

  it.effect("events report state changes, readiness, crashes and exits in order", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      const collected = yield* client.events.pipe(Stream.take(6), Stream.runCollect, Effect.forkChild)
      yield* settle
      yield* client.request("echo", 1)
      yield* client.request("crash", { code: 4 }).pipe(Effect.flip)
      const events = yield* Fiber.join(collected)
      const describe = (e: PluginClient.PluginEvent) => {
        switch (e._tag) {
          case "StateChanged":
            return `${e.from._tag}→${e.to._tag}`
          case "Crash":
            return `Crash(willRestart=${e.willRestart})`
          case "Exit":
            return `Exit(${e.code})`
          default:
            return e._tag
        }
      }
      assert.deepStrictEqual(events.map(describe), [
        "Idle→Starting",
        "Starting→Running",
        "Ready",
        "Crash(willRestart=true)",
        "Running→Recovering",
        "Exit(4)"
      ])
    }))

  it.effect("health reports pid, uptime, counters and the last error", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.request("echo", 1)
      yield* TestClock.adjust("5 seconds")
      const health = yield* client.health
      assert.strictEqual(health.pluginName, "fake")
      assert.strictEqual(health.state._tag, "Running")
      assert.isNumber(health.pid)
      assert.strictEqual(Duration.toMillis(health.uptime ?? Duration.zero), 5_000)
      assert.strictEqual(health.requests, 1)
      assert.strictEqual(health.spawns, 1)
      assert.strictEqual(health.pendingRequests, 0)
      assert.strictEqual(health.lastUsed, 0)
      yield* client.request("crash", { code: 5 }).pipe(Effect.flip)
      const after = yield* client.health
      assert.include(after.lastError, "exited with code 5")
      assert.strictEqual(after.lastCrash, 5_000)
      assert.strictEqual(after.pid, undefined)
    }))

  it.effect("call decodes the result with the method's Schema: a wrong shape is UnexpectedPayload", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      const Echo = PluginMethod.make("echo", {
        params: Schema.Struct({ n: Schema.Number }),
        result: Schema.Struct({ n: Schema.Number })
      })
      assert.deepStrictEqual(yield* client.call(Echo, { n: 1 }), { n: 1 })
      const Wrong = PluginMethod.make("echo", {
        params: Schema.Struct({ n: Schema.Number }),
        result: Schema.Struct({ n: Schema.String })
      })
      const reason = reasonOf(yield* client.call(Wrong, { n: 1 }).pipe(Effect.flip))
      assert.instanceOf(reason, PluginClientError.UnexpectedPayload)
      assert.strictEqual(reason.method, "echo")
    }))

  it.effect("counts spawns, requests, crashes and reaps per plugin, and traces every request", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.NativeSpan> = []
      const tracer = Tracer.make({
        span: (options) => {
          const span = new Tracer.NativeSpan(options)
          spans.push(span)
          return span
        }
      })
      const { client } = yield* fakeClient(InMemorySpawner.echo(), undefined, "metered")
      const attributes = { plugin: "metered" }
      const value = (metric: Metric.Metric<number, Metric.CounterState<number>>) =>
        Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (state) => state.count)
      yield* client.request("echo", 1).pipe(Effect.withTracer(tracer))
      yield* client.request("crash", { code: 1 }).pipe(Effect.flip)
      yield* client.request("echo", 2)
      yield* TestClock.adjust("60 seconds")
      yield* settle
      assert.strictEqual(yield* value(PluginClient.spawnsTotal), 2)
      assert.strictEqual(yield* value(PluginClient.requestsTotal), 3)
      assert.strictEqual(yield* value(PluginClient.crashesTotal), 1)
      assert.strictEqual(yield* value(PluginClient.reapsTotal), 1)
      const durations = yield* Metric.value(Metric.withAttributes(PluginClient.requestDuration, attributes))
      assert.strictEqual(durations.count, 3)
      // The series has the buckets of any timer (milliseconds).
      const timer = yield* Metric.value(Metric.timer("probe")).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
      assert.deepStrictEqual(durations.buckets.map(([bound]) => bound), timer.buckets.map(([bound]) => bound))
      const request = spans.find((s) => s.name === "PluginClient.request")
      assert.strictEqual(request?.attributes.get("plugin"), "metered")
      assert.strictEqual(request?.attributes.get("rpc.method"), "echo")
    }))

  it.effect("a strictly serial plugin writing a line that is not a message fails the call at once with MalformedResponse and is recycled as a crash", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(
        InMemorySpawner.sequence(InMemorySpawner.garbage(["not json"]), InMemorySpawner.echo()),
        { policy: LifetimePolicy.makeUnsafe({ maxConcurrentRequests: 1 }) }
      )
      const call = yield* client.request("echo", 1).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      assert.isDefined(call.pollUnsafe(), "the call waited for its timeout")
      const reason = reasonOf(yield* Fiber.join(call))
      assert.instanceOf(reason, PluginClientError.MalformedResponse)
      assert.strictEqual(reason.line, "not json")
      yield* settle
      const health = yield* client.health
      assert.strictEqual(health.totalCrashes, 1)
      assert.isFalse((yield* fake.spawns)[0]?.running, "the process that broke the protocol is still running")
      assert.strictEqual(yield* client.request("echo", 2), 2)
      assert.lengthOf(yield* fake.spawns, 2)
    }))

  it.effect("notify spawns the plugin lazily, like a call", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      yield* settle
      assert.lengthOf(yield* fake.spawns, 0)
      yield* client.notify("configChanged", { level: 2 })
      yield* settle
      const spawns = yield* fake.spawns
      assert.lengthOf(spawns, 1)
      assert.strictEqual(yield* stateOf(client), "Running")
      assert.deepStrictEqual(spawns[0]?.stdinLines.map((line) => JSON.parse(line)), [
        { jsonrpc: "2.0", method: "configChanged", params: { level: 2 } }
      ])
    }))

  it.effect("every notify re-arms the idle timer, a failed one too (as a failed call does)", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.request("echo", 1)
      yield* TestClock.adjust("40 seconds")
      yield* client.notify("tick")
      yield* TestClock.adjust("40 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Running")
      // Parameters JSON cannot hold: nothing is sent, and it still counts as use.
      const refused = reasonOf(yield* client.notify("tick", { n: 1n }).pipe(Effect.flip))
      assert.instanceOf(refused, PluginClientError.InvalidParams)
      assert.strictEqual((yield* client.health).lastUsed, 80_000)
      yield* TestClock.adjust("40 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Running")
      yield* TestClock.adjust("20 seconds")
      yield* settle
      assert.strictEqual(yield* stateOf(client), "Idle")
    }))

  it.effect("notify to a plugin that died fails with a typed error naming it; the crash is counted once and the next notify respawns it", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo())
      yield* client.notify("first")
      const pid = (yield* client.health).pid
      if (pid === undefined) return assert.fail("a running plugin has a pid")
      yield* fake.signal(pid, "SIGKILL")
      yield* settle
      assert.strictEqual((yield* client.health).totalCrashes, 1)
      yield* client.notify("second")
      const spawns = yield* fake.spawns
      assert.lengthOf(spawns, 2)
      assert.strictEqual(yield* stateOf(client), "Running")
      assert.strictEqual((yield* client.health).totalCrashes, 1)
    }))

  it.effect("notify to a plugin whose crash tripped the restart cap fails with Disabled, naming the plugin", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient(InMemorySpawner.echo(), { policy: LifetimePolicy.makeUnsafe({ restartCap: 1 }) })
      yield* client.notify("first")
      const pid = (yield* client.health).pid
      if (pid === undefined) return assert.fail("a running plugin has a pid")
      yield* fake.signal(pid, "SIGKILL")
      yield* settle
      const error = yield* client.notify("second").pipe(Effect.flip)
      assert.instanceOf(reasonOf(error), PluginClientError.Disabled)
      assert.include(error.message, "plugin `fake`")
      assert.lengthOf(yield* fake.spawns, 1)
      assert.strictEqual((yield* client.health).totalCrashes, 1)
    }))

  it.effect("a plugin error object is not a crash", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      const reason = reasonOf(yield* client.request("fail", { error: { kind: "needs-credential" } }).pipe(Effect.flip))
      assert.instanceOf(reason, PluginClientError.PluginError)
      assert.strictEqual((yield* client.health).totalCrashes, 0)
      assert.strictEqual(yield* stateOf(client), "Running")
    }))
})

for (const launcher of launchers) {
  describe(`PluginClient (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    const rpcPlugin = { name: "rpc", executable: node, args: [fixture("rpc-plugin.mjs")] }
    const fast = (input: LifetimePolicy.Input = {}) => LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second", ...input })
    const pidOf = (client: PluginClient.PluginClient) =>
      Effect.map(client.request("pid"), (r) => (r as { pid: number }).pid)

    it.live("spawns lazily, runs the handshake, and reports the plugin's methods (TypeScript worker)", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make(
          { name: "echo-worker", executable: node, args: [fixture("echo-worker.ts")] },
          { handshake: Handshake.initialize(), policy: fast() }
        )
        yield* Effect.sleep("100 millis")
        assert.deepStrictEqual(liveChildren(), [], "spawned before the first request")
        assert.deepStrictEqual(yield* client.request("echo", { a: 1 }), { a: 1 })
        const health = yield* client.health
        assert.strictEqual(health.state._tag, "Running")
        assert.includeMembers([...(health.supportedMethods ?? [])], ["echo", "askHost"])
        assert.deepStrictEqual(liveChildren(), [health.pid])
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("reaps an idle plugin and respawns it with a new pid on the next call", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make(rpcPlugin, { policy: fast({ idleTimeout: "300 millis" }) })
        const first = yield* pidOf(client)
        assert.isTrue(yield* eventually(() => !isAlive(first), 3_000), "not reaped")
        assert.isTrue(yield* eventually(() => Effect.runSync(client.state)._tag === "Idle"))
        const second = yield* pidOf(client)
        assert.notStrictEqual(second, first)
        assert.isTrue(isAlive(second))
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a crash loop disables the plugin; clearDisabled makes it work again", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make(rpcPlugin, { policy: fast() })
        for (const code of [1, 2]) {
          assert.instanceOf(reasonOf(yield* client.request("crash", { code, stderr: `crash ${code}\n` }).pipe(Effect.flip)), PluginClientError.Exited)
        }
        const tripped = yield* client.request("crash", { code: 3 }).pipe(Effect.flip)
        assert.instanceOf(reasonOf(tripped), PluginClientError.RestartCapExceeded)
        assert.include(tripped.message, "plugin `rpc` exceeded restart cap (3 restarts in 1 min); marking disabled")
        assert.instanceOf(reasonOf(yield* client.request("echo", 1).pipe(Effect.flip)), PluginClientError.Disabled)
        assert.deepStrictEqual(liveChildren(), [])
        yield* client.clearDisabled
        assert.strictEqual(yield* client.request("echo", "works"), "works")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("passes allow-listed variables and never a secret-looking host variable", () =>
      Effect.gen(function*() {
        process.env.PLUGIN_HOST_TEST_ALLOWED = "visible"
        process.env.PLUGIN_HOST_TEST_SECRET_TOKEN = "hunter2"
        const client = yield* PluginClient.make(
          { ...rpcPlugin, allowedEnvVars: ["PLUGIN_HOST_TEST_ALLOWED"] },
          { policy: fast(), env: { PLUGIN_MODE: "test" } }
        )
        const env = yield* client.request("env")
        assert.deepStrictEqual(env, { PLUGIN_HOST_TEST_ALLOWED: "visible", PLUGIN_MODE: "test" })
      }).pipe(
        Effect.provide(liveWith(launcher)),
        Effect.ensuring(Effect.sync(() => {
          delete process.env.PLUGIN_HOST_TEST_ALLOWED
          delete process.env.PLUGIN_HOST_TEST_SECRET_TOKEN
        }))
      ))

    it.live("a SIGTERM-trapping plugin is shut down within the grace period plus a small margin", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make(
          { ...rpcPlugin, args: [fixture("rpc-plugin.mjs"), "--trap-term", "--ignore-eof"] },
          { policy: fast({ shutdownGrace: "400 millis" }) }
        )
        const pid = yield* pidOf(client)
        const [took] = yield* Effect.timed(client.shutdown)
        assert.isAtLeast(Duration.toMillis(took), 390)
        assert.isBelow(Duration.toMillis(took), 400 + 1_000)
        assert.isFalse(isAlive(pid))
        assert.strictEqual((yield* client.state)._tag, "Stopped")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("refuses a binary swapped after discovery (checksum verified before every spawn)", () =>
      Effect.gen(function*() {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-checksum-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
        const script = path.join(dir, "echo-plugin.sh")
        fs.copyFileSync(fixture("env-dump.sh"), script)
        fs.chmodSync(script, 0o755)
        const sum = yield* PluginManifest.checksum(script)
        fs.writeFileSync(path.join(dir, "devboy-source-shell.toml"), [
          `name = "shell"`,
          `version = "1.0.0"`,
          `executable = "./echo-plugin.sh"`,
          `checksum_sha256 = "${sum.toUpperCase()}"`
        ].join("\n"))
        const [found] = yield* PluginManifest.discover(dir)
        assert.strictEqual(found?._tag, "Valid")
        if (found?._tag !== "Valid") return
        const client = yield* PluginClient.make(found.manifest, { policy: fast() })
        assert.isString(yield* client.request("names"))

        fs.appendFileSync(script, "\n# tampered\n")
        const error = yield* client.restart.pipe(Effect.flip)
        const reason = reasonOf(error)
        assert.instanceOf(reason, PluginClientError.ChecksumMismatch)
        assert.strictEqual(reason.declared, sum)
        assert.notStrictEqual(reason.actual, sum)
        assert.include(error.message, "checksum mismatch")
        assert.strictEqual((yield* client.health).totalCrashes, 1, "a refused spawn counts as a failed start")
      }).pipe(Effect.provide(NodeServices.layer)))

    it.live("a strictly serial Python secret source with {kind} error objects", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make(
          { name: "vault", executable: "python3", args: [fixture("serial_plugin.py")] },
          { policy: fast({ maxConcurrentRequests: 1 }), handshake: Handshake.secretSource({ path: "/vault" }) }
        )
        const GetSecret = PluginMethod.make("secret_source.get", {
          params: Schema.Struct({ key: Schema.String }),
          result: Schema.Struct({ value: Schema.String })
        })
        const values = yield* Effect.all(
          ["alpha", "alpha"].map((key) => client.call(GetSecret, { key })),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(values, [{ value: "a-value" }, { value: "a-value" }])
        const missing = reasonOf(yield* client.call(GetSecret, { key: "nope" }).pipe(Effect.flip))
        assert.instanceOf(missing, PluginClientError.PluginError)
        assert.deepStrictEqual(missing.data, { kind: "not-found", detail: "no secret named nope" })
        const locked = yield* client.call(GetSecret, { key: "locked" }).pipe(Effect.flip)
        assert.include(locked.message, "plugin `vault` returned an error: needs-credential: vault is locked")
        assert.strictEqual((yield* client.health).totalCrashes, 0)
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a shell plugin runs with exactly its allowed environment", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make(
          { name: "shell", executable: fixture("env-dump.sh"), allowedEnvVars: ["HOME"] },
          { policy: fast(), hostEnv: { HOME: "/home/plugin", AWS_SECRET_ACCESS_KEY: "x" } }
        )
        const names = String(yield* client.request("names")).trim().split(" ").sort()
        assert.deepStrictEqual(names, ["HOME", "PWD"])
      }).pipe(Effect.provide(liveWith(launcher))))
  })
}


describe("PluginClient where the executable is found (real processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  const policy = LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second" })
  /** The command line of a running process, arguments space-separated. */
  const commandLine = (pid: number | undefined) =>
    fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((part) => part !== "").join(" ")

  it.live("a loaded manifest runs its relative executable from another working directory, with no manifestDir", () =>
    Effect.gen(function*() {
      const plugin = yield* namesPlugin
      const elsewhere = yield* tempFolder("plugin-host-cwd-")
      yield* inWorkingDirectory(elsewhere)
      const manifest = yield* PluginManifest.load(path.relative(elsewhere, plugin.file))
      const client = yield* PluginClient.make(manifest, { policy })
      assert.isString(yield* client.request("names"))
      assert.include(commandLine((yield* client.health).pid), path.join(plugin.dir, "bin/names.sh"))
    }).pipe(Effect.provide(live)))

  it.live("an explicit manifestDir wins over the manifest's own folder; a plain record needs it", () =>
    Effect.gen(function*() {
      const plugin = yield* namesPlugin
      const empty = yield* tempFolder("plugin-host-empty-")
      const manifest = yield* PluginManifest.load(plugin.file)
      const redirected = yield* PluginClient.make(manifest, { policy, manifestDir: empty })
      const error = yield* redirected.request("names").pipe(Effect.flip)
      assert.instanceOf(error.reason, PluginClientError.Spawn)
      assert.include(error.message, path.join(empty, "bin/names.sh"))

      const record = yield* PluginClient.make({ name: "names", executable: "bin/names.sh" }, { policy, manifestDir: plugin.dir })
      assert.isString(yield* record.request("names"))
    }).pipe(Effect.provide(live)))

  it.live("PluginClient.layer runs a real plugin as the PluginClient service and stops it with the layer", () =>
    Effect.gen(function*() {
      const plugin = yield* namesPlugin
      const manifest = yield* PluginManifest.load(plugin.file)
      const pid = yield* Effect.gen(function*() {
        const client = yield* PluginClient.PluginClient
        assert.isString(yield* client.request("names"))
        return (yield* client.health).pid
      }).pipe(Effect.provide(PluginClient.layer(manifest, { policy })))
      assert.isNumber(pid)
      assert.isTrue(yield* eventually(() => pid !== undefined && !isAlive(pid)), "the layer's release left the plugin running")
    }).pipe(Effect.provide(live)))
})

class Echo extends Context.Service<Echo, PluginClient.PluginClient>()("test/Echo") {}
class Reverser extends Context.Service<Reverser, PluginClient.PluginClient>()("test/Reverser") {}

describe("PluginClient layers (TestClock, in-memory spawner)", () => {
  it.effect("layer provides the PluginClient service; layerAs hosts several plugins as services of their own", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ echo: InMemorySpawner.echo(), reverser: InMemorySpawner.echo() })
      const plugins = Layer.mergeAll(
        PluginClient.layer({ name: "main", executable: "echo" }),
        PluginClient.layerAs(Echo, { name: "echo", executable: "echo" }),
        PluginClient.layerAs(Reverser, { name: "reverser", executable: "reverser" })
      ).pipe(Layer.provide(fake.layer))
      const names = yield* Effect.gen(function*() {
        const main = yield* PluginClient.PluginClient
        const echo = yield* Echo
        const reverser = yield* Reverser
        assert.strictEqual(yield* echo.request("echo", 1), 1)
        assert.strictEqual(yield* reverser.request("echo", 2), 2)
        assert.strictEqual((yield* main.state)._tag, "Idle", "each service is its own client: calling one spawns no other")
        const spawns = yield* fake.spawns
        assert.deepStrictEqual(spawns.map((spawn) => spawn.command), ["echo", "reverser"])
        assert.isTrue(spawns.every((spawn) => spawn.running))
        return [main.name, echo.name, reverser.name]
      }).pipe(Effect.provide(plugins))
      assert.deepStrictEqual(names, ["main", "echo", "reverser"])
      const spawns = yield* fake.spawns
      assert.isTrue(spawns.every((spawn) => !spawn.running), "releasing the layer stops every plugin")
    }))

  it.effect("a program needing a plugin service runs against the real client or a stand-in", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ echo: InMemorySpawner.echo() })
      const program = Echo.use((echo) => echo.request("echo", "hello"))
      const real = yield* program.pipe(Effect.provide(PluginClient.layerAs(Echo, { name: "echo", executable: "echo" }).pipe(Layer.provide(fake.layer))))
      const standIn = yield* PluginClient.make({ name: "stand-in", executable: "echo" }).pipe(Effect.provide(fake.layer))
      const stubbed = yield* program.pipe(Effect.provideService(Echo, { ...standIn, request: () => Effect.succeed("stubbed") }))
      assert.deepStrictEqual([real, stubbed], ["hello", "stubbed"])
      assert.lengthOf(yield* fake.spawns, 1, "the stand-in spawned nothing")
    }))
})
