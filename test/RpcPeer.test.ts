import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import * as RpcPeer from "../src/RpcPeer.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { eventually, fixture, isAlive, launchers, liveWith, liveChildren, node } from "./support/processes.ts"

const reasonOf = (error: PluginClientError.PluginClientError) => error.reason

/** A real `rpc-plugin.mjs` process with a connection over it. */
const rpcPlugin = (args: ReadonlyArray<string> = [], options?: RpcPeer.Options) =>
  Effect.gen(function*() {
    const proc = yield* PluginProcess.make({ name: "rpc", executable: node, args: [fixture("rpc-plugin.mjs"), ...args] }, { shutdownGrace: "1 second" })
    const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), options)
    return { proc, peer }
  })

for (const launcher of launchers) {
  describe(`RpcPeer (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    it.live("answers concurrent calls out of order, matched by id", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin()
        const finished: Array<string> = []
        const call = (name: string, method: string, params: unknown) =>
          peer.request(method, params).pipe(Effect.tap(() => Effect.sync(() => finished.push(name))))
        const [slow, fast, echo] = yield* Effect.all([
          call("slow", "sleep", { ms: 300, value: "slow" }),
          call("fast", "sleep", { ms: 50, value: "fast" }),
          call("echo", "echo", { n: 1 })
        ], { concurrency: "unbounded" })
        assert.deepStrictEqual([slow, fast, echo], ["slow", "fast", { n: 1 }])
        assert.deepStrictEqual(finished, ["echo", "fast", "slow"])
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a crash mid-call fails every pending call at once with the exit status and stderr", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin()
        const pending = yield* Effect.all(
          [1, 2, 3].map(() => peer.request("sleep", { ms: 20_000 }).pipe(Effect.flip)),
          { concurrency: "unbounded" }
        ).pipe(Effect.forkChild)
        yield* Effect.sleep("100 millis")
        assert.strictEqual(yield* peer.pending, 3)
        const started = performance.now()
        const crash = yield* peer.request("crash", { code: 9, stderr: "panic: disk on fire\n" }).pipe(Effect.flip)
        const errors = yield* Fiber.join(pending)
        assert.isBelow(performance.now() - started, 2_000)
        for (const error of [crash, ...errors]) {
          const reason = reasonOf(error)
          assert.instanceOf(reason, PluginClientError.Exited)
          assert.strictEqual(reason.code, 9)
          assert.isFalse(reason.requested)
          assert.include(reason.stderrExcerpt, "panic: disk on fire")
          assert.include(error.message, "plugin `rpc` exited with code 9")
        }
        // Later calls fail at once with the same reason.
        const later = yield* peer.request("echo", 1).pipe(Effect.flip)
        assert.instanceOf(reasonOf(later), PluginClientError.Exited)
        assert.strictEqual(yield* peer.pending, 0)
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("serves plugin→host requests, including unknown methods and failing handlers", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin([], {
          hostHandlers: {
            "host.add": (params) =>
              Effect.succeed(Array.isArray(params) ? params.reduce((a: number, b: number) => a + b, 0) : 0),
            "host.refuse": () => Effect.fail(JsonRpc.error(-32010, "refused", { why: "policy" })),
            "host.explode": () => Effect.die(new Error("host bug")),
            "host.bigint": () => Effect.succeed({ n: 1n })
          }
        })
        assert.deepStrictEqual(yield* peer.request("callHost", { method: "host.add", params: [2, 3] }), { result: 5 })
        const unknown = yield* peer.request("callHost", { method: "host.nope" })
        assert.deepStrictEqual(unknown, { error: { code: -32601, message: "Method not found: host.nope" } })
        // Method names that exist on Object.prototype are not handlers.
        const proto = yield* peer.request("callHost", { method: "toString" })
        assert.deepStrictEqual(proto, { error: { code: -32601, message: "Method not found: toString" } })
        assert.deepStrictEqual(
          yield* peer.request("callHost", { method: "host.refuse" }),
          { error: { code: -32010, message: "refused", data: { why: "policy" } } }
        )
        const exploded = yield* peer.request("callHost", { method: "host.explode" })
        assert.strictEqual((exploded as { error: { code: number } }).error.code, -32603)
        // A result JSON cannot hold still gets an answer, not the plugin's timeout.
        const unencodable = yield* peer.request("callHost", { method: "host.bigint" })
        assert.strictEqual((unencodable as { error: { code: number } }).error.code, -32603)
        assert.strictEqual((yield* peer.stats).hostRequestsServed, 6)
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a plugin's error object fails the call with PluginError, kept whole, and the plugin stays up", () =>
      Effect.gen(function*() {
        const { peer, proc } = yield* rpcPlugin()
        const custom = reasonOf(yield* peer.request("fail", { error: { kind: "needs-credential", detail: "vault is locked" } }).pipe(Effect.flip))
        assert.instanceOf(custom, PluginClientError.PluginError)
        assert.strictEqual(custom.code, undefined)
        assert.deepStrictEqual(custom.data, { kind: "needs-credential", detail: "vault is locked" })
        const standard = reasonOf(yield* peer.request("nope").pipe(Effect.flip))
        assert.instanceOf(standard, PluginClientError.PluginError)
        assert.strictEqual(standard.code, -32601)
        assert.strictEqual(yield* peer.request("echo", "still up"), "still up")
        assert.isTrue(isAlive(proc.pid))
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("garbage lines interleaved with replies are counted, never fatal", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin()
        const result = yield* peer.request("garbage", {
          lines: ["not json", "[1,2]", "{\"jsonrpc\":\"2.0\"}", "{\"jsonrpc\":\"2.0\",\"id\":999999,\"result\":1}"],
          value: 42
        })
        assert.strictEqual(result, 42)
        const stats = yield* peer.stats
        assert.strictEqual(stats.invalidLines, 3)
        assert.strictEqual(stats.unknownResponses, 1)
        assert.strictEqual(yield* peer.request("echo", "after"), "after")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a line over maxLineBytes is a typed protocol violation, with bounded memory", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin([], { maxLineBytes: 1024 * 1024 })
        const rssBefore = process.memoryUsage().rss
        const error = yield* peer.request("giant", { bytes: 8 * 1024 * 1024 }).pipe(Effect.flip)
        const reason = reasonOf(error)
        assert.instanceOf(reason, PluginClientError.MalformedResponse)
        assert.include(reason.detail, "maxLineBytes")
        assert.isBelow(process.memoryUsage().rss - rssBefore, 64 * 1024 * 1024)
        assert.isTrue(Option.isSome(yield* peer.closeReason))
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("delivers notifications in order", () =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const { peer } = yield* rpcPlugin([], {
          onNotification: (n) => Effect.sync(() => void seen.push(`${n.method}:${JSON.stringify(n.params)}`))
        })
        for (const i of [1, 2, 3]) yield* peer.request("notify", { method: "progress", params: { i } })
        assert.isTrue(yield* eventually(() => seen.length === 3))
        assert.deepStrictEqual(seen, ["progress:{\"i\":1}", "progress:{\"i\":2}", "progress:{\"i\":3}"])
        // Host → plugin notifications arrive too.
        yield* peer.notify("configChanged", { level: 2 })
        assert.deepStrictEqual(
          yield* peer.request("notifications"),
          [{ jsonrpc: "2.0", method: "configChanged", params: { level: 2 } }]
        )
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a strictly serial plugin answering with the wrong id breaks the connection with IdMismatch", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin(["--wrong-id"], { maxConcurrentRequests: 1 })
        const reason = reasonOf(yield* peer.request("echo", 1).pipe(Effect.flip))
        assert.instanceOf(reason, PluginClientError.IdMismatch)
        assert.strictEqual(reason.expected, 1)
        assert.strictEqual(reason.got, 1001)
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a strictly serial plugin writing a line that is not JSON-RPC fails the call at once with MalformedResponse and its excerpt", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin([], { maxConcurrentRequests: 1 })
        const started = performance.now()
        const reason = reasonOf(yield* peer.request("garbage", { lines: ["y".repeat(500)], value: 1 }).pipe(Effect.flip))
        // Far below the 30 s timeout the call used to wait out.
        assert.isBelow(performance.now() - started, 10_000)
        assert.instanceOf(reason, PluginClientError.MalformedResponse)
        assert.strictEqual(reason.line, `${"y".repeat(199)}…`)
        assert.isTrue(Option.isSome(yield* peer.closeReason))
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("a strictly serial Python plugin with {kind} error objects", () =>
      Effect.gen(function*() {
        const proc = yield* PluginProcess.make({
          name: "vault",
          executable: "python3",
          args: [fixture("serial_plugin.py")],
          env: { SERIAL_SECRETS: JSON.stringify({ alpha: "a-value", beta: "b-value" }) }
        })
        const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), { maxConcurrentRequests: 1 })
        assert.deepStrictEqual(yield* peer.request("secret_source.init", {}), { ok: true })
        const values = yield* Effect.all(
          ["alpha", "beta"].map((key) => peer.request("secret_source.get", { key })),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(values, [{ value: "a-value" }, { value: "b-value" }])
        const locked = reasonOf(yield* peer.request("secret_source.get", { key: "locked" }).pipe(Effect.flip))
        assert.instanceOf(locked, PluginClientError.PluginError)
        assert.deepStrictEqual(locked.data, { kind: "needs-credential", detail: "vault is locked" })
        assert.strictEqual(locked.message, "needs-credential: vault is locked")
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("parameters JSON cannot hold fail with InvalidParams and send nothing", () =>
      Effect.gen(function*() {
        const { peer } = yield* rpcPlugin()
        const reason = reasonOf(yield* peer.request("echo", { n: 1n }).pipe(Effect.flip))
        assert.instanceOf(reason, PluginClientError.InvalidParams)
        assert.strictEqual((yield* peer.stats).requestsSent, 0)
      }).pipe(Effect.provide(liveWith(launcher))))
  })
}

for (const launcher of launchers) {
  describe(`PluginWorker end to end (real process, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    const worker = (options?: RpcPeer.Options) =>
      Effect.gen(function*() {
        const proc = yield* PluginProcess.make({ name: "echo-worker", executable: node, args: [fixture("echo-worker.ts")] }, { shutdownGrace: "2 seconds" })
        const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), options)
        return { proc, peer }
      })

    it.live("a burst of calls larger than one write slice is answered whole, each reply to its own call", () =>
      Effect.gen(function*() {
        const { peer } = yield* worker({ maxConcurrentRequests: 256 })
        // Large enough values that the 64 KiB slice bound is crossed as well as the 16-line one.
        const values = Array.from({ length: 300 }, (_, i) => ({ i, pad: "x".repeat(i % 7 === 0 ? 20_000 : 10) }))
        const results = yield* Effect.forEach(values, (value) => peer.request("echo", value), { concurrency: "unbounded" })
        assert.deepStrictEqual(results, values)
        const stats = yield* peer.stats
        assert.strictEqual(stats.responsesReceived, 300)
        assert.strictEqual(stats.invalidLines, 0)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))))

    it.live("serves handlers, maps typed errors, calls the host, logs, and exits 0 on EOF", () =>
      Effect.gen(function*() {
        const logs: Array<unknown> = []
        const { proc, peer } = yield* worker({
          hostHandlers: { "host.add": (p) => Effect.succeed(Array.isArray(p) ? p.reduce((a: number, b: number) => a + b, 0) : 0) },
          onNotification: (n) => Effect.sync(() => void logs.push(n))
        })
        const init = yield* peer.request("initialize")
        assert.deepInclude(init, { ok: true, version: "1.0.0" })
        assert.includeMembers((init as { supportedMethods: Array<string> }).supportedMethods, ["echo", "askHost"])
        assert.deepStrictEqual(yield* peer.request("echo", { é: [1, "ü"] }), { é: [1, "ü"] })

        const forbidden = reasonOf(yield* peer.request("forbidden").pipe(Effect.flip))
        assert.instanceOf(forbidden, PluginClientError.PluginError)
        assert.strictEqual(forbidden.code, JsonRpc.ErrorCode.WorkerError)
        assert.strictEqual(forbidden.message, "not allowed: secrets")
        assert.deepStrictEqual(forbidden.data, { _tag: "NotAllowed" })
        const invalid = reasonOf(yield* peer.request("invalid").pipe(Effect.flip))
        assert.instanceOf(invalid, PluginClientError.PluginError)
        assert.strictEqual(invalid.code, JsonRpc.ErrorCode.InvalidParams)
        const boom = reasonOf(yield* peer.request("boom").pipe(Effect.flip))
        assert.instanceOf(boom, PluginClientError.PluginError)
        assert.strictEqual(boom.code, JsonRpc.ErrorCode.InternalError)

        assert.strictEqual(yield* peer.request("askHost", [20, 22]), 42)
        assert.strictEqual(yield* peer.request("logSomething"), "logged")
        assert.isTrue(yield* eventually(() => logs.length === 1))
        assert.deepInclude(logs[0], { method: "log" })
        assert.deepInclude((logs[0] as { params: object }).params, { level: "warn", message: "careful", meta: { n: 1 } })

        assert.strictEqual(yield* peer.request("logToStderr"), "ok")
        assert.isTrue(yield* eventually(() => Effect.runSync(proc.stderrExcerpt).includes("to stderr, never stdout")))
        assert.strictEqual((yield* peer.stats).invalidLines, 0)

        const concurrent = yield* Effect.all(
          [200, 100, 0].map((ms) => peer.request("sleep", { ms })),
          { concurrency: "unbounded" }
        ).pipe(Effect.timed)
        assert.deepStrictEqual(concurrent[1], [200, 100, 0])
        assert.isBelow(Duration.toMillis(concurrent[0]), 290, "handlers ran one after another")

        yield* proc.endInput
        assert.deepStrictEqual(yield* proc.exit, { code: 0, signal: null, requested: false })
      }).pipe(Effect.provide(liveWith(launcher))))

    it.live("exits 0 after shutdown", () =>
      Effect.gen(function*() {
        const { proc, peer } = yield* worker()
        assert.strictEqual(yield* peer.request("shutdown"), null)
        assert.deepStrictEqual(yield* proc.exit, { code: 0, signal: null, requested: false })
      }).pipe(Effect.provide(liveWith(launcher))))
  })
}

describe("RpcPeer (TestClock, in-memory spawner)", () => {
  /** Lets forked fibers reach their next suspension without real time passing. */
  const settle = Effect.gen(function*() {
    for (let i = 0; i < 50; i++) yield* Effect.yieldNow
  })

  const connect = (behaviour: InMemorySpawner.Behaviour, options?: RpcPeer.Options) =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: behaviour })
      const proc = yield* PluginProcess.make({ name: "fake", executable: "plugin" }).pipe(Effect.provide(fake.layer))
      const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), options)
      return { fake, proc, peer }
    })

  it.effect("a call times out at exactly the default 30 s, not before, and its late reply is counted", () =>
    Effect.gen(function*() {
      const { peer } = yield* connect(InMemorySpawner.echo())
      const call = yield* peer.request("sleep", { ms: 45_000 }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.isUndefined(call.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const reason = reasonOf(yield* Fiber.join(call))
      assert.instanceOf(reason, PluginClientError.Timeout)
      assert.strictEqual(reason.method, "sleep")
      assert.strictEqual(Duration.toMillis(reason.timeout), 30_000)
      assert.strictEqual(yield* peer.pending, 0)
      yield* TestClock.adjust("20 seconds")
      yield* settle
      const stats = yield* peer.stats
      assert.strictEqual(stats.timeouts, 1)
      assert.strictEqual(stats.lateResponses, 1)
      assert.strictEqual(stats.unknownResponses, 0)
    }))

  it.effect("per-call timeouts are capped at maxRequestTimeout (5 min)", () =>
    Effect.gen(function*() {
      const { peer } = yield* connect(InMemorySpawner.neverReply())
      const call = yield* peer.request("anything", null, { timeout: "1 hour" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("5 minutes")
      const reason = reasonOf(yield* Fiber.join(call))
      assert.instanceOf(reason, PluginClientError.Timeout)
      assert.strictEqual(Duration.toMillis(reason.timeout), 300_000)
    }))

  it.effect("a shorter per-call timeout wins over the default", () =>
    Effect.gen(function*() {
      const { peer } = yield* connect(InMemorySpawner.neverReply())
      const call = yield* peer.request("x", null, { timeout: "2 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("2 seconds")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Timeout)
    }))

  it.effect("a call with a shorter timeout than those in flight times out on time, the others on theirs, and a call after a quiet spell on its own", () =>
    Effect.gen(function*() {
      const { peer } = yield* connect(InMemorySpawner.neverReply())
      const long = yield* peer.request("long").pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("10 seconds")
      const short = yield* peer.request("short", null, { timeout: "2 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1999 millis")
      yield* settle
      assert.isUndefined(short.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.instanceOf(reasonOf(yield* Fiber.join(short)), PluginClientError.Timeout)
      assert.isUndefined(long.pollUnsafe(), "the default timeout is not cut short")
      // 30 s after the long call was sent: 12 s have passed so far.
      yield* TestClock.adjust("17999 millis")
      yield* settle
      assert.isUndefined(long.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.instanceOf(reasonOf(yield* Fiber.join(long)), PluginClientError.Timeout)
      assert.strictEqual(yield* peer.pending, 0)
      // Nothing pending for a while, then a call: its timeout still holds.
      yield* TestClock.adjust("1 hour")
      const later = yield* peer.request("later", null, { timeout: "5 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("4999 millis")
      yield* settle
      assert.isUndefined(later.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.instanceOf(reasonOf(yield* Fiber.join(later)), PluginClientError.Timeout)
      assert.strictEqual((yield* peer.stats).timeouts, 3)
    }))

  it.effect("callers beyond maxConcurrentRequests wait for a slot", () =>
    Effect.gen(function*() {
      const { fake, peer } = yield* connect(InMemorySpawner.echo(), { maxConcurrentRequests: 2 })
      const calls = yield* Effect.all(
        [1, 2, 3].map((i) => peer.request("sleep", { ms: 1_000, value: i })),
        { concurrency: "unbounded" }
      ).pipe(Effect.forkChild)
      yield* settle
      assert.strictEqual(yield* peer.pending, 2)
      assert.strictEqual((yield* fake.spawns)[0]?.stdinLines.length, 2)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual((yield* fake.spawns)[0]?.stdinLines.length, 3)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(calls), [1, 2, 3])
    }))

  it.effect("interrupting a caller removes its pending entry and frees its slot", () =>
    Effect.gen(function*() {
      const { fake, peer } = yield* connect(InMemorySpawner.neverReply(), { maxConcurrentRequests: 1 })
      const first = yield* peer.request("first").pipe(Effect.forkChild)
      const queued = yield* peer.request("queued").pipe(Effect.forkChild)
      yield* settle
      assert.strictEqual(yield* peer.pending, 1)
      // Interrupting a caller still waiting for a slot sends nothing.
      yield* Fiber.interrupt(queued)
      yield* Fiber.interrupt(first)
      assert.strictEqual(yield* peer.pending, 0)
      const third = yield* peer.request("third").pipe(Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(
        (yield* fake.spawns)[0]?.stdinLines.map((l) => JSON.parse(l).method),
        ["first", "third"]
      )
      yield* Fiber.interrupt(third)
    }))

  it.effect("an observer hears each call start as it is made and end before its caller resumes: answered, timed out, interrupted waiting or in flight, failed by the end", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.echo() })
      const proc = yield* PluginProcess.make({ name: "fake", executable: "plugin" }).pipe(Effect.provide(fake.layer))
      const peerScope = yield* Scope.make()
      const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), { maxConcurrentRequests: 2 }).pipe(Scope.provide(peerScope))
      const heard: Array<string> = []
      const observed = (name: string, method: string, params: unknown, timeout?: Duration.Input) => {
        const observer: RpcPeer.CallObserver = {
          started: () => void heard.push(`${name} started`),
          ended: (succeeded, startedNanos) => {
            assert.strictEqual(typeof startedNanos, "bigint")
            heard.push(`${name} ${succeeded ? "succeeded" : "failed"}`)
          }
        }
        return peer.request(method, params, timeout === undefined ? undefined : { timeout }, observer).pipe(
          Effect.exit,
          Effect.tap(() => Effect.sync(() => void heard.push(`${name} resumed`)))
        )
      }
      assert.isTrue(Exit.isSuccess(yield* observed("answered", "echo", 1)))
      assert.deepStrictEqual(heard.splice(0), ["answered started", "answered succeeded", "answered resumed"])
      const timedOut = yield* observed("timed out", "sleep", { ms: 10_000 }, "1 second").pipe(Effect.forkChild)
      const inFlight = yield* observed("in flight", "sleep", { ms: 10_000 }).pipe(Effect.forkChild)
      const waiting = yield* observed("waiting", "sleep", { ms: 10_000 }).pipe(Effect.forkChild)
      const ended = yield* observed("ended", "sleep", { ms: 10_000 }).pipe(Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(heard.splice(0), ["timed out started", "in flight started", "waiting started", "ended started"])
      yield* Fiber.interrupt(waiting)
      assert.strictEqual(yield* peer.pending, 2, "interrupted while waiting for a slot")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(timedOut)
      yield* Fiber.interrupt(inFlight)
      assert.deepStrictEqual(heard.splice(0), ["waiting failed", "timed out failed", "timed out resumed", "in flight failed"])
      yield* Scope.close(peerScope, Exit.void)
      yield* Fiber.join(ended)
      yield* observed("after the end", "echo", 1)
      assert.deepStrictEqual(heard, ["ended failed", "ended resumed", "after the end started", "after the end failed", "after the end resumed"])
    }))

  it.effect("a timeout passes the slot to the next waiting call, whose own timeout starts when it is sent; the end fails the waiting ones too", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.neverReply() })
      const proc = yield* PluginProcess.make({ name: "fake", executable: "plugin" }).pipe(Effect.provide(fake.layer))
      const peerScope = yield* Scope.make()
      const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), { maxConcurrentRequests: 1 }).pipe(Scope.provide(peerScope))
      const methods = Effect.map(fake.spawns, (spawns) => spawns[0]?.stdinLines.map((l) => JSON.parse(l).method))
      const first = yield* peer.request("first", null, { timeout: "1 second" }).pipe(Effect.flip, Effect.forkChild)
      const second = yield* peer.request("second", null, { timeout: "3 seconds" }).pipe(Effect.flip, Effect.forkChild)
      const third = yield* peer.request("third").pipe(Effect.flip, Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(yield* methods, ["first"])
      yield* TestClock.adjust("1 second")
      assert.instanceOf(reasonOf(yield* Fiber.join(first)), PluginClientError.Timeout)
      yield* settle
      assert.deepStrictEqual(yield* methods, ["first", "second"])
      // 2.5 s after it was made but 1.5 s after it was sent: still waiting.
      yield* TestClock.adjust("1500 millis")
      yield* settle
      assert.isUndefined(second.pollUnsafe())
      yield* Scope.close(peerScope, Exit.void)
      for (const call of [second, third]) assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Closed)
      assert.deepStrictEqual(yield* methods, ["first", "second"], "the third was never sent")
      assert.strictEqual(yield* peer.pending, 0)
    }))

  it.effect("a crash fails pending calls with the exit code and stderr", () =>
    Effect.gen(function*() {
      const { peer } = yield* connect(InMemorySpawner.crashMidCall({ afterCalls: 1, code: 70, stderr: "segfault-ish\n" }))
      const first = yield* peer.request("sleep", { ms: 10_000 }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      const second = reasonOf(yield* peer.request("echo", 1).pipe(Effect.flip))
      const reason = reasonOf(yield* Fiber.join(first))
      for (const r of [reason, second]) {
        assert.instanceOf(r, PluginClientError.Exited)
        assert.strictEqual(r.code, 70)
        assert.include(r.stderrExcerpt, "segfault-ish")
      }
    }))

  it.effect("a plugin flooding the host with requests is refused beyond maxConcurrentHandlers", () =>
    Effect.gen(function*() {
      const answers: Array<unknown> = []
      const flood: InMemorySpawner.Behaviour = (proc) =>
        Effect.gen(function*() {
          for (let i = 1; i <= 5; i++) yield* proc.write(JSON.stringify({ jsonrpc: "2.0", id: `p${i}`, method: "host.slow" }))
          yield* proc.lines.pipe(Stream.runForEach((line) => Effect.sync(() => void answers.push(JSON.parse(line)))))
          return 0
        })
      const { peer } = yield* connect(flood, {
        maxConcurrentHandlers: 2,
        hostHandlers: { "host.slow": () => Effect.never }
      })
      yield* settle
      assert.strictEqual(answers.length, 3)
      for (const answer of answers) assert.deepInclude(answer, { error: { code: -32000, message: "too many concurrent requests (2 being served)" } })
      assert.strictEqual((yield* peer.stats).hostRequestsRefused, 3)
    }))

  it.effect("notifications the handler cannot keep up with are dropped and counted, not queued without bound", () =>
    Effect.gen(function*() {
      const chatty: InMemorySpawner.Behaviour = (proc) =>
        Effect.gen(function*() {
          for (let i = 1; i <= 10; i++) yield* proc.write(JSON.stringify({ jsonrpc: "2.0", method: "progress", params: { i } }))
          yield* Stream.runDrain(proc.lines)
          return 0
        })
      let handling = 0
      const { peer } = yield* connect(chatty, {
        maxQueuedNotifications: 3,
        onNotification: () => Effect.sync(() => void handling++).pipe(Effect.andThen(Effect.never))
      })
      yield* settle
      const stats = yield* peer.stats
      assert.strictEqual(stats.notificationsReceived, 10)
      assert.strictEqual(handling, 1, "the handler is stuck on the first one")
      // Three wait behind it; the handler may have taken its one before or after the burst.
      assert.isAtLeast(stats.notificationsDropped, 6)
      assert.isAtMost(stats.notificationsDropped, 7)
    }))

  it.effect("serial mode: a line that is not a message while a call is in flight fails it at once with MalformedResponse and its excerpt, and ends the connection", () =>
    Effect.gen(function*() {
      const long = "x".repeat(300)
      for (const [garbage, excerpt] of [[long, `${"x".repeat(199)}…`], ["{\"jsonrpc\":\"2.0\"}", "{\"jsonrpc\":\"2.0\"}"]] as const) {
        const { peer } = yield* connect(InMemorySpawner.garbage([garbage]), { maxConcurrentRequests: 1 })
        const call = yield* peer.request("echo", 1).pipe(Effect.flip, Effect.forkChild)
        yield* settle
        // No time has passed: the 30 s timeout plays no part.
        const exit = call.pollUnsafe()
        assert.isDefined(exit, "the call waited for its timeout")
        const reason = reasonOf(yield* Fiber.join(call))
        assert.instanceOf(reason, PluginClientError.MalformedResponse)
        assert.strictEqual(reason.line, excerpt)
        assert.isAtMost(reason.line.length, 200)
        assert.isNotEmpty(reason.detail)
        const closed = yield* peer.closeReason
        assert.isTrue(Option.isSome(closed) && closed.value instanceof PluginClientError.MalformedResponse)
        assert.instanceOf(reasonOf(yield* peer.request("echo", 2).pipe(Effect.flip)), PluginClientError.MalformedResponse)
        assert.strictEqual((yield* peer.stats).invalidLines, 1)
      }
    }))

  it.effect("serial mode: a line that is not a message while no call is in flight is only counted", () =>
    Effect.gen(function*() {
      const banner: InMemorySpawner.Behaviour = (proc) => Effect.andThen(proc.write("starting up"), InMemorySpawner.echo()(proc))
      const { peer } = yield* connect(banner, { maxConcurrentRequests: 1 })
      yield* settle
      assert.strictEqual((yield* peer.stats).invalidLines, 1)
      assert.strictEqual(yield* peer.request("echo", 1), 1)
      assert.isTrue(Option.isNone(yield* peer.closeReason))
    }))

  it.effect("concurrent mode: lines that are not messages are counted and the call is still answered", () =>
    Effect.gen(function*() {
      const { peer } = yield* connect(InMemorySpawner.garbage(["not json", "[1,2]", "{\"jsonrpc\":\"2.0\"}"]))
      assert.strictEqual(yield* peer.request("echo", 1), 1)
      assert.strictEqual((yield* peer.stats).invalidLines, 3)
      assert.isTrue(Option.isNone(yield* peer.closeReason))
    }))

  it.effect("closing the connection's scope fails pending calls with Closed", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.neverReply() })
      const proc = yield* PluginProcess.make({ name: "fake", executable: "plugin" }).pipe(Effect.provide(fake.layer))
      const result = yield* Effect.scoped(
        Effect.gen(function*() {
          const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc))
          const call = yield* peer.request("x").pipe(Effect.flip, Effect.forkDetach)
          yield* settle
          return call
        })
      )
      assert.instanceOf(reasonOf(yield* Fiber.join(result)), PluginClientError.Closed)
    }))
})

describe("RpcPeer over a pushing transport (Transport.listen)", () => {
  /** A transport whose bytes are pushed by the test; `incoming` must never be read. */
  const pushing = (closed: Effect.Effect<RpcPeer.EndReason> = Effect.never) => {
    let handlers: { readonly onChunk: (chunk: Uint8Array) => void; readonly onEnd: (failure?: string) => void } | undefined
    const written: Array<unknown> = []
    let listening = 0
    const transport: RpcPeer.Transport = {
      name: "pushed",
      incoming: Stream.die("incoming must not be read when listen is given"),
      listen: (h) =>
        Effect.acquireRelease(Effect.sync(() => {
          handlers = h
          listening++
        }), () => Effect.sync(() => void listening--)),
      writeLine: (line) => {
        written.push(JSON.parse(line))
        return true
      },
      closed
    }
    const push = (text: string) => handlers?.onChunk(new TextEncoder().encode(text))
    return { transport, written, push, end: (failure?: string) => handlers?.onEnd(failure), listening: () => listening }
  }

  it.effect("replies are matched as soon as their bytes are pushed, split anywhere", () =>
    Effect.gen(function*() {
      const t = pushing()
      const peer = yield* RpcPeer.make(t.transport)
      const calls = yield* Effect.all([peer.request("a"), peer.request("b")], { concurrency: "unbounded" }).pipe(Effect.forkChild)
      yield* Effect.yieldNow
      assert.deepStrictEqual(t.written.map((m) => (m as { method: string }).method), ["a", "b"])
      t.push(`{"jsonrpc":"2.0","id":2,"result":"B"}\n{"jsonrpc":"2.0","id":1,"re`)
      t.push(`sult":"A"}\n`)
      assert.deepStrictEqual(yield* Fiber.join(calls), ["A", "B"])
      assert.strictEqual(t.listening(), 1)
    }).pipe(Effect.scoped))

  it.effect("a read failure ends the connection with an Io reason naming it; the listeners go with the Scope", () =>
    Effect.gen(function*() {
      const t = pushing()
      const scope = yield* Scope.make()
      const peer = yield* RpcPeer.make(t.transport).pipe(Scope.provide(scope))
      const call = yield* peer.request("x").pipe(Effect.flip, Effect.forkChild)
      yield* Effect.yieldNow
      t.end("EIO: the pipe broke")
      const reason = reasonOf(yield* Fiber.join(call))
      assert.instanceOf(reason, PluginClientError.Io)
      assert.include(reason.message, "reading failed: EIO: the pipe broke")
      assert.instanceOf(reasonOf(yield* peer.request("y").pipe(Effect.flip)), PluginClientError.Io)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(t.listening(), 0)
    }))

  it.effect("closing the Scope after the other side is gone, before its output ends, ends the connection with the other side's reason", () =>
    Effect.gen(function*() {
      const gone = Deferred.makeUnsafe<PluginClientError.Reason>()
      const t = pushing(Deferred.await(gone))
      const scope = yield* Scope.make()
      const peer = yield* RpcPeer.make(t.transport).pipe(Scope.provide(scope))
      const call = yield* peer.request("x").pipe(Effect.flip, Effect.forkChild)
      yield* Effect.yieldNow
      yield* Deferred.succeed(gone, new PluginClientError.Exited({ code: null, signal: "SIGTERM", requested: true, stderrExcerpt: "" }))
      // Its output has not ended: the connection still waits for the last replies.
      assert.isTrue(Option.isNone(yield* peer.closeReason))
      yield* Scope.close(scope, Exit.void)
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Exited)
      assert.instanceOf(Option.getOrThrow(yield* peer.closeReason), PluginClientError.Exited)
    }))

  it.effect("after the other side is gone, replies still in its output are delivered; its output's end closes the connection", () =>
    Effect.gen(function*() {
      const gone = Deferred.makeUnsafe<PluginClientError.Reason>()
      const t = pushing(Deferred.await(gone))
      const peer = yield* RpcPeer.make(t.transport)
      const answered = yield* peer.request("answered").pipe(Effect.forkChild)
      const unanswered = yield* peer.request("unanswered").pipe(Effect.flip, Effect.forkChild)
      yield* Effect.yieldNow
      yield* Deferred.succeed(gone, new PluginClientError.Exited({ code: 0, signal: null, requested: false, stderrExcerpt: "" }))
      yield* Effect.yieldNow
      assert.isTrue(Option.isNone(yield* peer.closeReason), "still draining its output")
      t.push(`{"jsonrpc":"2.0","id":1,"result":"last words"}\n`)
      assert.strictEqual(yield* Fiber.join(answered), "last words")
      t.end()
      assert.instanceOf(reasonOf(yield* Fiber.join(unanswered)), PluginClientError.Exited)
      assert.instanceOf(Option.getOrThrow(yield* peer.closeReason), PluginClientError.Exited)
    }).pipe(Effect.scoped))

  it.effect("after the other side is gone, an output that never ends closes the connection 200 ms later", () =>
    Effect.gen(function*() {
      const gone = Deferred.makeUnsafe<PluginClientError.Reason>()
      const t = pushing(Deferred.await(gone))
      const peer = yield* RpcPeer.make(t.transport)
      const call = yield* peer.request("x").pipe(Effect.flip, Effect.forkChild)
      yield* Effect.yieldNow
      yield* Deferred.succeed(gone, new PluginClientError.Exited({ code: 0, signal: null, requested: false, stderrExcerpt: "" }))
      yield* TestClock.adjust("199 millis")
      assert.isTrue(Option.isNone(yield* peer.closeReason))
      assert.isUndefined(call.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Exited)
      assert.instanceOf(Option.getOrThrow(yield* peer.closeReason), PluginClientError.Exited)
    }).pipe(Effect.scoped))

  it.effect("an end reason given as a function is built once, and only when asked for", () =>
    Effect.gen(function*() {
      let built = 0
      const gone = Deferred.makeUnsafe<RpcPeer.EndReason>()
      const t = pushing(Deferred.await(gone))
      const peer = yield* RpcPeer.make(t.transport)
      t.end()
      yield* Deferred.succeed(gone, () => {
        built++
        return new PluginClientError.Exited({ code: 3, signal: null, requested: false, stderrExcerpt: "boom" })
      })
      yield* peer.ended
      assert.strictEqual(built, 0)
      const first = yield* peer.closed
      assert.strictEqual(yield* peer.closed, first)
      assert.strictEqual(Option.getOrThrow(yield* peer.closeReason), first)
      assert.strictEqual(built, 1)
      assert.include(first.message, "exited with code 3")
      assert.instanceOf(reasonOf(yield* peer.request("late").pipe(Effect.flip)), PluginClientError.Exited)
    }).pipe(Effect.scoped))
})
