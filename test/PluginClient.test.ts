import { afterEach, assert, describe, it } from "@effect/vitest"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
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
import { eventually, fixture, isAlive, live, liveChildren, node } from "./support/processes.ts"

const reasonOf = (error: PluginClientError.PluginClientError) => error.reason

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** A client over the in-memory spawner, whose command `plugin` runs `behaviour`. */
const fakeClient = (behaviour: InMemorySpawner.Behaviour, options?: PluginClient.Options) =>
  Effect.gen(function*() {
    const fake = yield* InMemorySpawner.make({ plugin: behaviour })
    const client = yield* PluginClient.make({ name: "fake", executable: "plugin" }, options).pipe(Effect.provide(fake.layer))
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
      assert.include(reason.detail, "no answer to `initialize` within 15s")
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

  it.effect("a plugin error object is not a crash", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient(InMemorySpawner.echo())
      const reason = reasonOf(yield* client.request("fail", { error: { kind: "needs-credential" } }).pipe(Effect.flip))
      assert.instanceOf(reason, PluginClientError.PluginError)
      assert.strictEqual((yield* client.health).totalCrashes, 0)
      assert.strictEqual(yield* stateOf(client), "Running")
    }))
})
