import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Broker from "../src/Broker.ts"
import * as NatsBroker from "../src/NatsBroker.ts"
import { freePort, skipNats, spawnNode, startNatsServer, startNatsServerWithConfig } from "./support/nats.ts"
import { eventually, fixture, isAlive, liveChildren } from "./support/processes.ts"

const text = (s: string) => new TextEncoder().encode(s)
const str = (b: Uint8Array) => new TextDecoder().decode(b)
const quiet = Logger.layer([])

/** Milliseconds an effect took (real time). */
const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const value = yield* effect
    return { value, ms: performance.now() - start }
  })

/** Retries while the subject has no responders yet (a subscription made by another client). */
const untilServed = <A, R>(effect: Effect.Effect<A, Broker.BrokerError, R>) =>
  effect.pipe(Effect.retry({
    while: (e) => e.reason._tag === "NoResponders",
    schedule: Schedule.spaced("20 millis"),
    times: 100
  }))

describe.skipIf(skipNats)("NatsBroker (real nats-server)", () => {
  afterEach(async () => {
    // The server and every worker process are stopped at the end of their test.
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  it.live("request/reply between two connections", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const served = yield* NatsBroker.make({ servers: server.url, name: "served" })
      const client = yield* NatsBroker.make({ servers: [server.url], name: "client" })
      yield* served.serve("svc.upper", (data) => Effect.succeed(text(str(data).toUpperCase())))
      const answer = yield* client.request("svc.upper", text("hello"), "2 seconds")
      assert.strictEqual(str(answer), "HELLO")
      const json = yield* Broker.requestJson("svc.upper", { a: "b" }, "2 seconds").pipe(
        Effect.provideService(Broker.Broker, client)
      )
      assert.deepStrictEqual(json, { A: "B" })
    }).pipe(Effect.provide(quiet)))

  it.live("a request nobody serves fails promptly with NoResponders", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const client = yield* NatsBroker.make({ servers: server.url })
      const { ms, value: error } = yield* timed(Effect.flip(client.request("nobody.home", text("?"), "5 seconds")))
      assert.deepStrictEqual(error.reason, new Broker.NoResponders({ subject: "nobody.home" }))
      assert.isBelow(ms, 1_000)
    }).pipe(Effect.provide(quiet)))

  it.live("a server that never replies makes the request fail with Timeout after the timeout", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const served = yield* NatsBroker.make({ servers: server.url })
      const client = yield* NatsBroker.make({ servers: server.url })
      yield* served.serve("svc.silent", () => Effect.never)
      const { ms, value: error } = yield* timed(Effect.flip(client.request("svc.silent", text("x"), "300 millis")))
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.strictEqual(error.message, "request to `svc.silent` timed out after 300 ms")
      assert.isAtLeast(ms, 290)
      assert.isBelow(ms, 1_500)
    }).pipe(Effect.provide(quiet)))

  it.live("serve handles requests concurrently", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const served = yield* NatsBroker.make({ servers: server.url })
      const client = yield* NatsBroker.make({ servers: server.url })
      yield* served.serve("svc.slow", (data) => Effect.sleep("200 millis").pipe(Effect.as(data)))
      const { ms, value } = yield* timed(Effect.forEach(
        ["1", "2", "3", "4", "5"],
        (s) => client.request("svc.slow", text(s), "3 seconds").pipe(Effect.map(str)),
        { concurrency: "unbounded" }
      ))
      assert.deepStrictEqual(value, ["1", "2", "3", "4", "5"])
      assert.isBelow(ms, 600, "five 200 ms requests were served at once, not one after another")
    }).pipe(Effect.provide(quiet)))

  it.live("a queue group over two serves spreads the work over both", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const a = yield* NatsBroker.make({ servers: server.url, name: "a" })
      const b = yield* NatsBroker.make({ servers: server.url, name: "b" })
      const client = yield* NatsBroker.make({ servers: server.url, name: "client" })
      const counts = yield* Ref.make({ a: 0, b: 0 })
      yield* a.serve("jobs.run", () => Ref.update(counts, (c) => ({ ...c, a: c.a + 1 })).pipe(Effect.as(text("a"))), { queue: "workers" })
      yield* b.serve("jobs.run", () => Ref.update(counts, (c) => ({ ...c, b: c.b + 1 })).pipe(Effect.as(text("b"))), { queue: "workers" })
      const n = 30
      const answers = yield* Effect.forEach(
        Array.from({ length: n }),
        () => client.request("jobs.run", text("job"), "2 seconds").pipe(Effect.map(str)),
        { concurrency: 5 }
      )
      const { a: byA, b: byB } = yield* Ref.get(counts)
      assert.strictEqual(byA + byB, n, "each request was handled by exactly one member")
      assert.isAbove(byA, 0)
      assert.isAbove(byB, 0)
      assert.strictEqual(answers.filter((x) => x === "a").length, byA)
    }).pipe(Effect.provide(quiet)))

  it.live("requestMany gathers a reply from every plain subscriber and one per queue group", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const a = yield* NatsBroker.make({ servers: server.url, name: "a" })
      const b = yield* NatsBroker.make({ servers: server.url, name: "b" })
      const client = yield* NatsBroker.make({ servers: server.url, name: "client" })
      yield* a.serve("svc.ping", () => Effect.succeed(text("a")))
      yield* b.serve("svc.ping", () => Effect.succeed(text("b")))
      yield* a.serve("svc.ping", () => Effect.succeed(text("qa")), { queue: "q" })
      yield* b.serve("svc.ping", () => Effect.succeed(text("qb")), { queue: "q" })
      const { ms, value: replies } = yield* timed(
        client.requestMany("svc.ping", text("?"), { maxWait: "5 seconds", quiet: "300 millis" }).pipe(Stream.map(str), Stream.runCollect)
      )
      assert.sameMembers(replies.filter((r) => !r.startsWith("q")), ["a", "b"])
      assert.strictEqual(replies.filter((r) => r.startsWith("q")).length, 1)
      assert.isBelow(ms, 4_000, "the quiet gap ended it, not maxWait")
      const counted = yield* client.requestMany("svc.ping", text("?"), { maxWait: "5 seconds", maxReplies: 2 }).pipe(Stream.runCollect)
      assert.strictEqual(counted.length, 2)
    }).pipe(Effect.provide(quiet)))

  it.live("requestMany to a subject nobody serves fails with NoResponders", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const client = yield* NatsBroker.make({ servers: server.url })
      const error = yield* client.requestMany("nobody.home", text("?"), { maxWait: "5 seconds" }).pipe(Stream.runCollect, Effect.flip)
      assert.deepStrictEqual(error.reason, new Broker.NoResponders({ subject: "nobody.home" }))
    }).pipe(Effect.provide(quiet)))

  it.live("subscribe streams published messages and can answer requests", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const listener = yield* NatsBroker.make({ servers: server.url })
      const client = yield* NatsBroker.make({ servers: server.url })
      const seen: Array<string> = []
      yield* listener.subscribe("events.>").pipe(
        Stream.runForEach((message) =>
          Effect.sync(() => seen.push(`${message.subject}=${str(message.data)}`)).pipe(
            Effect.andThen(message.reply === undefined ? Effect.void : message.reply(text("ack")))
          )
        ),
        Effect.forkScoped
      )
      // A request answered through the stream proves the subscription is registered.
      assert.strictEqual(str(yield* untilServed(client.request("events.ping", text("p"), "1 second"))), "ack")
      yield* client.publish("events.a", text("1"))
      yield* client.publish("other.b", text("ignored"))
      yield* client.publish("events.c.d", text("2"))
      assert.isTrue(yield* eventually(() => seen.length >= 3, 2_000))
      assert.deepStrictEqual(seen, ["events.ping=p", "events.a=1", "events.c.d=2"])
    }).pipe(Effect.provide(quiet)))

  it.live("connecting to a closed port fails promptly with a Connection reason naming the server", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const { ms, value: error } = yield* timed(Effect.flip(
        Layer.build(NatsBroker.layer({ servers: `127.0.0.1:${port}`, timeout: "2 seconds" }))
      ))
      assert.strictEqual(error.reason._tag, "Connection")
      assert.include(error.message, `127.0.0.1:${port}`)
      assert.isBelow(ms, 1_500)
    }).pipe(Effect.provide(quiet)))

  it.live("after its scope closes the connection is drained and calls fail with Closed", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const scope = yield* Scope.make()
      const broker = yield* NatsBroker.make({ servers: server.url }).pipe(Scope.provide(scope))
      yield* broker.serve("svc.up", () => Effect.succeed(text("up"))).pipe(Scope.provide(scope))
      assert.strictEqual(str(yield* broker.request("svc.up", text(""), "1 second")), "up")
      const { ms } = yield* timed(Scope.close(scope, Exit.void))
      assert.isBelow(ms, 1_000)
      assert.strictEqual((yield* Effect.flip(broker.request("svc.up", text(""), "1 second"))).reason._tag, "Closed")
      assert.strictEqual((yield* Effect.flip(broker.publish("svc.up", text("")))).reason._tag, "Closed")
    }).pipe(Effect.provide(quiet)))

  it.live("a request to a subject the server does not let it publish to fails at once, naming the permission, and others still work", () =>
    Effect.gen(function*() {
      // Every connection without credentials is `limited`, which may not publish to `forbidden.>`.
      const server = yield* startNatsServerWithConfig([
        "authorization {",
        "  users = [ { user: \"limited\", password: \"unused\", permissions: { publish: { deny: [\"forbidden.>\"] } } } ]",
        "}",
        "no_auth_user: limited"
      ].join("\n"))
      const served = yield* NatsBroker.make({ servers: server.url })
      yield* served.serve("svc.open", () => Effect.succeed(text("open")))
      const client = yield* NatsBroker.make({ servers: server.url })
      const { ms, value: error } = yield* timed(Effect.flip(client.request("forbidden.thing", text("x"), "20 seconds")))
      assert.notStrictEqual(error.reason._tag, "Timeout")
      assert.include(error.message.toLowerCase(), "permission")
      assert.include(error.message, "forbidden.thing")
      assert.isBelow(ms, 10_000, "it failed when the server refused, not at its 20 s timeout")
      assert.strictEqual(str(yield* untilServed(client.request("svc.open", text(""), "5 seconds"))), "open")
    }).pipe(Effect.provide(quiet)))

  it.live("a request still waiting when its connection closes fails with Closed, not after its timeout", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const served = yield* NatsBroker.make({ servers: server.url })
      yield* served.serve("svc.silent", () => Effect.never)
      const scope = yield* Scope.make()
      const client = yield* NatsBroker.make({ servers: server.url }).pipe(Scope.provide(scope))
      const waiting = yield* Effect.forkChild(Effect.flip(client.request("svc.silent", text("x"), "20 seconds")))
      yield* Effect.sleep("100 millis")
      const { ms, value: error } = yield* timed(Scope.close(scope, Exit.void).pipe(Effect.andThen(Fiber.join(waiting))))
      assert.strictEqual(error.reason._tag, "Closed")
      assert.isBelow(ms, 5_000)
    }).pipe(Effect.provide(quiet)))

  it.live("concurrent requests on one connection each get their own reply", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const served = yield* NatsBroker.make({ servers: server.url })
      const client = yield* NatsBroker.make({ servers: server.url })
      yield* served.serve("svc.echo", (data) => Effect.sleep(`${data[data.length - 1]! % 7} millis`).pipe(Effect.as(data)))
      const sent = Array.from({ length: 200 }, (_, i) => `#${i}`)
      const answers = yield* Effect.forEach(sent, (s) => client.request("svc.echo", text(s), "5 seconds").pipe(Effect.map(str)), {
        concurrency: 64
      })
      assert.deepStrictEqual(answers, sent)
    }).pipe(Effect.provide(quiet)))

  describe("a PluginWorker in another process (serveBroker over NATS)", () => {
    const worker = (url: string, prefix: string) =>
      spawnNode(fixture("broker-worker.ts"), { NATS_URL: url, WORKER_PREFIX: prefix, WORKER_QUEUE: "pollers" }).pipe(
        Effect.tap((w) => w.waitForStderr("serving", 10_000))
      )

    it.live("answers <prefix>.tick and <prefix>.call", () =>
      Effect.gen(function*() {
        const server = yield* startNatsServer
        const client = yield* NatsBroker.make({ servers: server.url })
        const w = yield* worker(server.url, "plugins.vault")
        const ask = (subject: string, value: unknown) =>
          Broker.requestJson(subject, value, "3 seconds").pipe(Effect.provideService(Broker.Broker, client))
        const tick = { kind: "vault", job_id: "j1", agent_id: "a1", cursor: null, config: {}, now: "2026-01-01T00:00:00Z", interval_hint_secs: 60 }

        assert.deepStrictEqual(yield* ask("plugins.vault.tick", tick), {
          result: {
            next_cursor: Buffer.from("c1").toString("base64url"),
            metrics: { items_seen: 2, items_dispatched: 1 },
            served_by: w.pid
          }
        })
        assert.deepStrictEqual(yield* ask("plugins.vault.tick", { ...tick, config: { fail: "permanent" } }), {
          error: { code: -32002, message: "permanent failure: credentials revoked", data: { kind: "permanent" } }
        })
        assert.deepStrictEqual(yield* ask("plugins.vault.call", { jsonrpc: "2.0", id: 7, method: "echo", params: { a: [1] } }), {
          jsonrpc: "2.0",
          id: 7,
          result: { a: [1] }
        })
        assert.deepStrictEqual(yield* ask("plugins.vault.call", { jsonrpc: "2.0", id: "x", method: "nope" }), {
          jsonrpc: "2.0",
          id: "x",
          error: { code: -32601, message: "Method not found: nope" }
        })
        const hostCall = yield* ask("plugins.vault.call", { jsonrpc: "2.0", id: 8, method: "askHost" })
        assert.include(JSON.stringify(hostCall), "this request carries no host inbox")
        assert.deepStrictEqual(yield* ask("plugins.vault.call", { jsonrpc: "2.0", id: 9, method: "initialize" }), {
          jsonrpc: "2.0",
          id: 9,
          result: { ok: true, supportedMethods: ["poll_tick", "echo", "pid", "askHost"] }
        })
        const garbage = yield* client.request("plugins.vault.call", text("not json"), "3 seconds")
        assert.strictEqual(JSON.parse(str(garbage)).error.code, -32700)
      }).pipe(Effect.provide(quiet)))

    it.live("two worker processes in one queue group both receive ticks", () =>
      Effect.gen(function*() {
        const server = yield* startNatsServer
        const client = yield* NatsBroker.make({ servers: server.url })
        const [w1, w2] = yield* Effect.all([worker(server.url, "plugins.shared"), worker(server.url, "plugins.shared")], {
          concurrency: 2
        })
        const servedBy = yield* Effect.forEach(
          Array.from({ length: 30 }),
          () =>
            Broker.requestJson("plugins.shared.tick", { kind: "shared", config: {} }, "3 seconds").pipe(
              Effect.provideService(Broker.Broker, client),
              Effect.map((reply) => JSON.stringify(reply).match(/"served_by":(\d+)/)?.[1])
            ),
          { concurrency: 5 }
        )
        const counts = new Map<string | undefined, number>()
        for (const pid of servedBy) counts.set(pid, (counts.get(pid) ?? 0) + 1)
        assert.deepStrictEqual([...counts.keys()].sort(), [String(w1.pid), String(w2.pid)].sort())
        assert.strictEqual(servedBy.length, 30)
      }).pipe(Effect.provide(quiet)))

    it.live("a worker killed mid-tick makes the request fail with Timeout after the timeout", () =>
      Effect.gen(function*() {
        const server = yield* startNatsServer
        const client = yield* NatsBroker.make({ servers: server.url })
        const w = yield* worker(server.url, "plugins.doomed")
        const start = performance.now()
        const pending = yield* client.request("plugins.doomed.tick", text(JSON.stringify({ config: { sleep: 10_000 } })), "800 millis").pipe(
          Effect.flip,
          Effect.map((error) => ({ error, ms: performance.now() - start })),
          Effect.forkScoped
        )
        yield* w.waitForStderr("tick sleeping")
        yield* w.kill("SIGKILL")
        yield* w.exited
        assert.isFalse(isAlive(w.pid))
        const { error, ms } = yield* Fiber.join(pending)
        assert.strictEqual(error.reason._tag, "Timeout")
        assert.isAtLeast(ms, 790)
        assert.isBelow(ms, 2_000)
      }).pipe(Effect.provide(quiet)))

    it.live("a worker exits 0 on SIGTERM", () =>
      Effect.gen(function*() {
        const server = yield* startNatsServer
        const w = yield* worker(server.url, "plugins.polite")
        yield* w.kill("SIGTERM")
        yield* w.exited.pipe(Effect.timeout("3 seconds"))
        assert.strictEqual(w.child.exitCode, 0)
      }).pipe(Effect.provide(quiet)))
  })
})
