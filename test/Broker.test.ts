import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Broker from "../src/Broker.ts"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as PluginWorker from "../src/PluginWorker.ts"

const text = (s: string) => new TextEncoder().encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)
const reply = (s: string) => () => Effect.succeed(text(s))

/** The reason tag of a failed broker effect. */
const reasonOf = <A>(effect: Effect.Effect<A, Broker.BrokerError, Broker.Broker>) =>
  Effect.flip(effect).pipe(Effect.map((error) => error.reason))

describe("Broker.layerMemory", () => {
  it.effect("request/reply reaches the server and returns its bytes", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* broker.serve("svc.upper", (data) => Effect.succeed(text(str(data).toUpperCase())))
      const answer = yield* broker.request("svc.upper", text("hello"), "1 second")
      assert.strictEqual(str(answer), "HELLO")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a request nobody serves fails at once with NoResponders", () =>
    Effect.gen(function*() {
      const before = yield* Clock.currentTimeMillis
      const reason = yield* reasonOf(Effect.flatMap(Broker.Broker, (b) => b.request("nobody.home", text("?"), "10 seconds")))
      assert.strictEqual(reason._tag, "NoResponders")
      assert.deepStrictEqual(reason, new Broker.NoResponders({ subject: "nobody.home" }))
      assert.strictEqual(yield* Clock.currentTimeMillis, before)
      assert.strictEqual(new Broker.BrokerError({ reason }).message, "no responders for `nobody.home`")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a request nobody answers fails with Timeout exactly at its timeout (TestClock)", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* broker.serve("svc.silent", () => Effect.never)
      const fiber = yield* broker.request("svc.silent", text("x"), "1500 millis").pipe(
        Effect.flip,
        Effect.flatMap((error) => Effect.map(Clock.currentTimeMillis, (at) => ({ error, at }))),
        Effect.forkChild
      )
      yield* TestClock.adjust("1499 millis")
      assert.isUndefined(fiber.pollUnsafe(), "still waiting 1 ms before the timeout")
      yield* TestClock.adjust("1 millis")
      const { at, error } = yield* Fiber.join(fiber)
      assert.strictEqual(at, 1500)
      assert.strictEqual(error.reason._tag, "Timeout")
      if (error.reason._tag === "Timeout") {
        assert.isTrue(Duration.equals(error.reason.timeout, Duration.millis(1500)))
        assert.strictEqual(error.reason.subject, "svc.silent")
      }
      assert.strictEqual(error.message, "request to `svc.silent` timed out after 1.5 s")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("`*` matches exactly one token, `>` one or more trailing tokens", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* broker.serve("orders.*.created", reply("star"))
      yield* broker.serve("metrics.>", reply("tail"))
      const ask = (subject: string) =>
        broker.request(subject, text(""), "1 second").pipe(
          Effect.map(str),
          Effect.catchTag("BrokerError", (e) => Effect.succeed(e.reason._tag))
        )
      assert.strictEqual(yield* ask("orders.eu.created"), "star")
      assert.strictEqual(yield* ask("orders.eu.west.created"), "NoResponders")
      assert.strictEqual(yield* ask("orders.created"), "NoResponders")
      assert.strictEqual(yield* ask("metrics.cpu"), "tail")
      assert.strictEqual(yield* ask("metrics.cpu.load.1m"), "tail")
      assert.strictEqual(yield* ask("metrics"), "NoResponders")
      assert.isTrue(Broker.subjectMatches("a.*.c.>", "a.b.c.d.e"))
      assert.isFalse(Broker.subjectMatches("a.*.c.>", "a.b.c"))
      assert.isTrue(Broker.subjectMatches("plain.subject", "plain.subject"))
      assert.isFalse(Broker.subjectMatches("plain.subject", "plain.subject.more"))
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a queue group spreads requests over its members, each message delivered once", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const counts = yield* Ref.make({ a: 0, b: 0 })
      yield* broker.serve("jobs.run", () => Ref.update(counts, (c) => ({ ...c, a: c.a + 1 })).pipe(Effect.as(text("a"))), { queue: "workers" })
      yield* broker.serve("jobs.run", () => Ref.update(counts, (c) => ({ ...c, b: c.b + 1 })).pipe(Effect.as(text("b"))), { queue: "workers" })
      const n = 10
      const answers = yield* Effect.forEach(Array.from({ length: n }), () => broker.request("jobs.run", text("job"), "1 second").pipe(Effect.map(str)))
      const { a, b } = yield* Ref.get(counts)
      assert.strictEqual(a + b, n, "each message went to exactly one member")
      assert.isAbove(a, 0)
      assert.isAbove(b, 0)
      assert.isBelow(a, n)
      assert.isBelow(b, n)
      assert.strictEqual(answers.filter((x) => x === "a").length, a)
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("publish reaches every plain subscriber and one member per queue group", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const all = yield* broker.subscribe("events.>").pipe(Stream.take(3), Stream.runCollect, Effect.forkChild({ startImmediately: true }))
      const grouped = yield* broker.subscribe("events.*", { queue: "g" }).pipe(Stream.take(2), Stream.runCollect, Effect.forkChild({ startImmediately: true }))
      yield* Effect.yieldNow
      yield* broker.publish("events.one", text("1"))
      yield* broker.publish("other.one", text("ignored"))
      yield* broker.publish("events.two", text("2"))
      yield* broker.publish("events.two.deep", text("3"))
      const got = yield* Fiber.join(all)
      assert.deepStrictEqual(got.map((m) => [m.subject, str(m.data), m.reply === undefined]), [
        ["events.one", "1", true],
        ["events.two", "2", true],
        ["events.two.deep", "3", true]
      ])
      const groupedGot = yield* Fiber.join(grouped)
      assert.deepStrictEqual(groupedGot.map((m) => m.subject), ["events.one", "events.two"])
      // Publishing with no subscriber is not an error.
      yield* broker.publish("nobody.listens", text("x"))
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a subscriber can answer a request through the message's reply", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* broker.subscribe("svc.manual").pipe(
        Stream.runForEach((message) => message.reply === undefined ? Effect.void : message.reply(text(`re:${str(message.data)}`))),
        Effect.forkChild({ startImmediately: true })
      )
      yield* Effect.yieldNow
      assert.strictEqual(str(yield* broker.request("svc.manual", text("q"), "1 second")), "re:q")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("serve answers concurrently", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* broker.serve("svc.slow", (data) => Effect.sleep("1 second").pipe(Effect.as(data)))
      const fibers = yield* Effect.forEach(["1", "2", "3"], (s) =>
        broker.request("svc.slow", text(s), "5 seconds").pipe(
          Effect.flatMap((data) => Effect.map(Clock.currentTimeMillis, (at) => `${str(data)}@${at}`)),
          Effect.forkChild
        ))
      yield* TestClock.adjust("3 seconds")
      // One after another, they would finish at 1000, 2000 and 3000.
      assert.deepStrictEqual(yield* Fiber.joinAll(fibers), ["1@1000", "2@1000", "3@1000"])
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("serve stops when its scope closes, interrupting requests in flight", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const scope = yield* Scope.make()
      const interrupted = yield* Ref.make(false)
      yield* broker.serve("svc.scoped", (data) =>
        str(data) === "hang"
          ? Effect.never.pipe(Effect.onInterrupt(() => Ref.set(interrupted, true)))
          : Effect.succeed(text("up"))).pipe(Scope.provide(scope))
      assert.strictEqual(str(yield* broker.request("svc.scoped", text("ping"), "1 second")), "up")
      const hanging = yield* broker.request("svc.scoped", text("hang"), "1 second").pipe(Effect.flip, Effect.forkChild)
      yield* Effect.yieldNow
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(yield* Ref.get(interrupted))
      const reason = yield* reasonOf(broker.request("svc.scoped", text("ping"), "1 second"))
      assert.strictEqual(reason._tag, "NoResponders")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(hanging)).reason._tag, "Timeout")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("requestJson round-trips JSON and turns a non-JSON reply into BadReply", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* broker.serve("json.ok", (data) => Effect.succeed(text(JSON.stringify({ got: JSON.parse(str(data)) }))))
      yield* broker.serve("json.bad", reply("<html>oops</html>"))
      assert.deepStrictEqual(yield* Broker.requestJson("json.ok", { a: [1, 2] }, "1 second"), { got: { a: [1, 2] } })
      const reason = yield* reasonOf(Broker.requestJson("json.bad", { a: 1 }, "1 second"))
      assert.strictEqual(reason._tag, "BadReply")
      if (reason._tag === "BadReply") {
        assert.strictEqual(reason.subject, "json.bad")
        assert.include(reason.detail, "<html>oops</html>")
      }
      assert.strictEqual((yield* reasonOf(Broker.requestJson("json.none", null, "1 second")))._tag, "NoResponders")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a released broker fails waiting requests and later calls with Closed", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const broker = yield* Broker.makeMemory.pipe(Scope.provide(scope))
      yield* broker.serve("svc.silent", () => Effect.never)
      const waiting = yield* broker.request("svc.silent", text("x"), "1 minute").pipe(Effect.flip, Effect.forkChild({ startImmediately: true }))
      const subscription = yield* broker.subscribe("events.>").pipe(Stream.runDrain, Effect.flip, Effect.forkChild({ startImmediately: true }))
      yield* Effect.yieldNow
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual((yield* Fiber.join(waiting)).reason._tag, "Closed")
      assert.strictEqual((yield* Fiber.join(subscription)).reason._tag, "Closed")
      const later = yield* Effect.flip(broker.publish("events.x", text("")))
      assert.strictEqual(later.reason._tag, "Closed")
      assert.strictEqual(later.message, "broker is closed: the in-memory broker was released")
    }))
})

describe("Broker.layerMemory requestMany (scatter-gather)", () => {
  /** Serves `subject` with a reply `name` after `delay`. */
  const answerAfter = (subject: string, name: string, delay: Duration.Input, queue?: string) =>
    Effect.flatMap(Broker.Broker, (broker) =>
      broker.serve(subject, () => Effect.as(Effect.sleep(delay), text(name)), queue === undefined ? {} : { queue }))

  /** Runs a gathering in the background; its replies (as text) and the time it ended. */
  const gatherInBackground = (subject: string, options: Broker.RequestManyOptions) =>
    Effect.flatMap(Broker.Broker, (broker) =>
      broker.requestMany(subject, text("?"), options).pipe(
        Stream.map(str),
        Stream.runCollect,
        Effect.flatMap((replies) => Effect.map(Clock.currentTimeMillis, (at) => ({ replies: [...replies], at }))),
        Effect.forkChild({ startImmediately: true })
      ))

  it.effect("every plain subscriber answers and one member per queue group; maxReplies ends it at once", () =>
    Effect.gen(function*() {
      yield* answerAfter("svc.ping", "a", 0)
      yield* answerAfter("svc.ping", "b", 0)
      yield* answerAfter("svc.ping", "q1", 0, "q")
      yield* answerAfter("svc.ping", "q2", 0, "q")
      const all = yield* gatherInBackground("svc.ping", { maxWait: "10 seconds", maxReplies: 3 })
      const { at, replies } = yield* Fiber.join(all)
      assert.strictEqual(at, 0, "no wait once maxReplies arrived")
      assert.sameMembers(replies.filter((r) => !r.startsWith("q")), ["a", "b"])
      assert.strictEqual(replies.filter((r) => r.startsWith("q")).length, 1)
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("maxWait ends the gathering at its deadline, with the replies that came before (TestClock)", () =>
    Effect.gen(function*() {
      yield* answerAfter("svc.ping", "fast", "100 millis")
      yield* answerAfter("svc.ping", "slow", "300 millis")
      yield* answerAfter("svc.ping", "late", "2 seconds")
      const gathering = yield* gatherInBackground("svc.ping", { maxWait: "1 second" })
      yield* TestClock.adjust("999 millis")
      assert.isUndefined(gathering.pollUnsafe(), "still gathering 1 ms before maxWait")
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(gathering), { replies: ["fast", "slow"], at: 1000 })
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("quiet ends the gathering that long after the latest reply (TestClock)", () =>
    Effect.gen(function*() {
      yield* answerAfter("svc.ping", "a", "100 millis")
      yield* answerAfter("svc.ping", "b", "200 millis")
      yield* answerAfter("svc.ping", "c", "700 millis")
      const gathering = yield* gatherInBackground("svc.ping", { maxWait: "5 seconds", quiet: "300 millis" })
      yield* TestClock.adjust("499 millis")
      assert.isUndefined(gathering.pollUnsafe(), "quiet runs from the latest reply (200 ms)")
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(gathering), { replies: ["a", "b"], at: 500 })
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("quiet does not start before the first reply", () =>
    Effect.gen(function*() {
      yield* answerAfter("svc.ping", "slow", "2 seconds")
      const gathering = yield* gatherInBackground("svc.ping", { maxWait: "5 seconds", quiet: "300 millis" })
      yield* TestClock.adjust("2300 millis")
      assert.deepStrictEqual(yield* Fiber.join(gathering), { replies: ["slow"], at: 2300 })
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a gathering nobody serves fails at once with NoResponders", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const error = yield* broker.requestMany("nobody.home", text("?"), { maxWait: "1 second" }).pipe(Stream.runCollect, Effect.flip)
      assert.deepStrictEqual(error.reason, new Broker.NoResponders({ subject: "nobody.home" }))
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("releasing the broker fails a running gathering with Closed", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const broker = yield* Broker.makeMemory.pipe(Scope.provide(scope))
      yield* broker.serve("svc.silent", () => Effect.never)
      const gathering = yield* broker.requestMany("svc.silent", text("?"), { maxWait: "1 minute" }).pipe(
        Stream.runCollect,
        Effect.flip,
        Effect.forkChild({ startImmediately: true })
      )
      yield* Effect.yieldNow
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual((yield* Fiber.join(gathering)).reason._tag, "Closed")
    }))
})

describe("PluginWorker.serveBroker over layerMemory", () => {
  class Revoked extends Schema.TaggedError<Revoked>()("Revoked", { what: Schema.String }) {
    override get message() {
      return `revoked: ${this.what}`
    }
  }
  const serveWorker = (id: string, queue?: string) =>
    PluginWorker.serveBroker({
      prefix: "plugins.mem",
      name: `mem-${id}`,
      ...(queue === undefined ? {} : { queue }),
      handlers: {
        poll_tick: (params) =>
          typeof params === "object" && params !== null && "config" in params && JSON.stringify(params.config) === `{"fail":"permanent"}`
            ? Effect.fail(JsonRpc.error(JsonRpc.ErrorCode.WorkerError, "permanent"))
            : Effect.succeed({ next_cursor: "YzE", metrics: { items_seen: 2, items_dispatched: 1 }, served_by: id }),
        echo: (params) => Effect.succeed(params),
        revoked: () => Effect.fail(new Revoked({ what: "token" })),
        boom: () => Effect.die(new Error("kaboom")),
        nothing: () => Effect.void,
        bigint: () => Effect.succeed({ n: 1n }),
        askHost: () => PluginWorker.callHost("host.add", [1, 2]),
        logs: () => PluginWorker.log("info", "hello from a broker worker").pipe(Effect.as("logged"))
      }
    })
  const ask = (subject: string, value: unknown) => Broker.requestJson(`plugins.mem.${subject}`, value, "1 second")

  it.effect("tick replies {result} or {error}; call replies JSON-RPC responses", () =>
    Effect.gen(function*() {
      yield* serveWorker("w1")
      assert.deepStrictEqual(yield* ask("tick", { kind: "k", config: {} }), {
        result: { next_cursor: "YzE", metrics: { items_seen: 2, items_dispatched: 1 }, served_by: "w1" }
      })
      assert.deepStrictEqual(yield* ask("tick", { kind: "k", config: { fail: "permanent" } }), {
        error: { code: -32002, message: "permanent" }
      })
      assert.deepStrictEqual(yield* ask("call", { jsonrpc: "2.0", id: 1, method: "echo", params: [1, "a"] }), {
        jsonrpc: "2.0",
        id: 1,
        result: [1, "a"]
      })
      assert.deepStrictEqual(yield* ask("call", { jsonrpc: "2.0", id: 2, method: "missing" }), {
        jsonrpc: "2.0",
        id: 2,
        error: { code: -32601, message: "Method not found: missing" }
      })
      assert.deepStrictEqual(yield* ask("call", { jsonrpc: "2.0", id: 3, method: "revoked" }), {
        jsonrpc: "2.0",
        id: 3,
        error: { code: -32002, message: "revoked: token", data: { _tag: "Revoked" } }
      })
      const boom = yield* ask("call", { jsonrpc: "2.0", id: 4, method: "boom" })
      assert.deepInclude(boom, { jsonrpc: "2.0", id: 4 })
      assert.include(JSON.stringify(boom), "-32603")
      assert.deepStrictEqual(yield* ask("call", { jsonrpc: "2.0", id: 5, method: "nothing" }), { jsonrpc: "2.0", id: 5, result: null })
      const host = yield* ask("call", { jsonrpc: "2.0", id: 6, method: "askHost" })
      assert.include(JSON.stringify(host), "this request carries no host inbox")
      assert.deepStrictEqual(yield* ask("call", { jsonrpc: "2.0", id: 7, method: "logs" }), { jsonrpc: "2.0", id: 7, result: "logged" })
      assert.deepStrictEqual(yield* ask("call", { jsonrpc: "2.0", method: "echo" }), {
        jsonrpc: "2.0",
        id: null,
        error: { code: -32600, message: "Invalid Request: expected a request with an id" }
      })
      const broker = yield* Broker.Broker
      const garbage = JSON.parse(str(yield* broker.request("plugins.mem.call", text("{oops"), "1 second")))
      assert.strictEqual(garbage.error.code, -32700)
      const badTick = JSON.parse(str(yield* broker.request("plugins.mem.tick", text("{oops"), "1 second")))
      assert.strictEqual(badTick.error.code, -32700)
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("initialize is answered as on stdio; a result JSON cannot hold gets -32603 on call and tick", () =>
    Effect.gen(function*() {
      yield* PluginWorker.serveBroker({
        prefix: "plugins.odd",
        handlers: { poll_tick: () => Effect.succeed({ n: 1n }), echo: (p) => Effect.succeed(p) },
        onInitialize: () => Effect.succeed({ version: "2" })
      })
      assert.deepStrictEqual(yield* Broker.requestJson("plugins.odd.call", { jsonrpc: "2.0", id: 1, method: "initialize" }, "1 second"), {
        jsonrpc: "2.0",
        id: 1,
        result: { ok: true, supportedMethods: ["poll_tick", "echo"], version: "2" }
      })
      const tick = yield* Broker.requestJson("plugins.odd.tick", {}, "1 second")
      assert.deepStrictEqual(Object.keys(tick as object), ["error"])
      assert.include(JSON.stringify(tick), "-32603")
      yield* serveWorker("w1")
      const call = yield* ask("call", { jsonrpc: "2.0", id: 9, method: "bigint" })
      assert.deepInclude(call, { jsonrpc: "2.0", id: 9 })
      assert.include(JSON.stringify(call), "-32603")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("runBroker serves on any Broker layer until interrupted", () =>
    Effect.gen(function*() {
      const shared = Layer.succeed(Broker.Broker, yield* Broker.Broker)
      const fiber = yield* PluginWorker.runBroker({ prefix: "plugins.run", handlers: { echo: (p) => Effect.succeed(p) } }, shared).pipe(
        Effect.forkChild
      )
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      const answer = yield* Broker.requestJson("plugins.run.call", { jsonrpc: "2.0", id: 1, method: "echo", params: "hi" }, "1 second")
      assert.deepStrictEqual(answer, { jsonrpc: "2.0", id: 1, result: "hi" })
      yield* Fiber.interrupt(fiber)
      const after = yield* Effect.flip(Broker.requestJson("plugins.run.call", { jsonrpc: "2.0", id: 2, method: "echo" }, "1 second"))
      assert.strictEqual(after.reason._tag, "NoResponders")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a worker without poll_tick answers ticks with -32601", () =>
    Effect.gen(function*() {
      yield* PluginWorker.serveBroker({ prefix: "plugins.plain", handlers: { echo: (p) => Effect.succeed(p) } })
      assert.deepStrictEqual(yield* Broker.requestJson("plugins.plain.tick", {}, "1 second"), {
        error: { code: -32601, message: "Method not found: poll_tick" }
      })
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("workers in one queue group share the ticks", () =>
    Effect.gen(function*() {
      yield* serveWorker("w1", "pollers")
      yield* serveWorker("w2", "pollers")
      const servedBy = yield* Effect.forEach(Array.from({ length: 6 }), () =>
        ask("tick", { config: {} }).pipe(Effect.map((reply) => JSON.stringify(reply).includes("\"w1\"") ? "w1" : "w2")))
      assert.deepStrictEqual(servedBy.filter((w) => w === "w1").length, 3)
      assert.deepStrictEqual(servedBy.filter((w) => w === "w2").length, 3)
    }).pipe(Effect.provide(Broker.layerMemory)))
})
