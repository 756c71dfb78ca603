import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { TestClock } from "effect/testing"
import * as Broker from "../../src/Broker.ts"
import * as NatsMicro from "../../src/internal/natsMicro.ts"
import * as NatsBroker from "../../src/NatsBroker.ts"
import { skipNats, startNatsServer } from "../support/nats.ts"

const str = (b: Uint8Array) => new TextDecoder().decode(b)
const bytes = (s: string) => new TextEncoder().encode(s)

const endpoint = (overrides: Partial<NatsMicro.EndpointStats> = {}): NatsMicro.EndpointStats => ({
  name: "call",
  subject: "calc.call",
  queue_group: "q",
  num_requests: 10,
  num_errors: 1,
  last_error: "boom",
  processing_time: 5_000_000,
  average_processing_time: 500_000,
  ...overrides
})

const instance = (id: string, overrides: Partial<NatsMicro.ResponderOptions> = {}): NatsMicro.ResponderOptions => ({
  name: "calc",
  id,
  version: "1.2.3",
  description: "adds numbers",
  metadata: { host: "m1" },
  started: Date.UTC(2026, 11, 6, 12, 0, 0),
  endpoints: () => [endpoint()],
  ...overrides
})

/** Starts a responder in its own scope; closing the scope stops that instance. */
const startInstance = (options: NatsMicro.ResponderOptions) =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const scope = yield* Scope.make()
    yield* NatsMicro.respond(broker, options).pipe(Scope.provide(scope))
    return { stop: Scope.close(scope, Exit.void) }
  })

/** Runs a discovery under TestClock: starts it, moves the clock by its wait, returns what it found. */
const discoverNow = (name: string | undefined, wait: Duration.Input = "1 second") =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const fiber = yield* NatsMicro.discover(broker, name, { wait }).pipe(Effect.forkChild({ startImmediately: true }))
    yield* TestClock.adjust(wait)
    return yield* Fiber.join(fiber)
  })

const request = (subject: string) =>
  Effect.flatMap(Broker.Broker, (broker) => broker.request(subject, new Uint8Array(), "1 second")).pipe(
    Effect.map((reply): Record<string, unknown> => JSON.parse(str(reply)))
  )

/** The JSON keys of the Go `micro` structs (nats.go micro/service.go), which `nats micro` decodes. */
const goKeys = {
  ping: ["type", "name", "id", "version", "metadata"],
  info: ["type", "name", "id", "version", "metadata", "description", "endpoints"],
  endpointInfo: ["name", "subject", "queue_group", "metadata"],
  stats: ["type", "name", "id", "version", "metadata", "started", "endpoints"],
  endpointStats: ["name", "subject", "queue_group", "num_requests", "num_errors", "last_error", "processing_time", "average_processing_time"]
}

const keysOf = (value: unknown): Array<string> => typeof value === "object" && value !== null ? Object.keys(value) : []
const firstOf = (value: unknown): unknown => Array.isArray(value) ? value[0] : undefined

describe("natsMicro responder (ADR-32)", () => {
  it.effect("answers PING, INFO and STATS on all, by-name and by-id subjects", () =>
    Effect.gen(function*() {
      yield* startInstance(instance("i1"))
      for (const verb of ["PING", "INFO", "STATS"] as const) {
        for (const subject of [`$SRV.${verb}`, `$SRV.${verb}.calc`, `$SRV.${verb}.calc.i1`]) {
          const reply = yield* request(subject)
          assert.strictEqual(reply.id, "i1", subject)
          assert.strictEqual(reply.type, `io.nats.micro.v1.${verb.toLowerCase()}_response`, subject)
        }
      }
      const other = yield* Effect.flip(request("$SRV.PING.calc.someone-else"))
      assert.strictEqual(other.reason._tag, "NoResponders")
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("its replies carry exactly the fields the Go micro structs (and so `nats micro`) read", () =>
    Effect.gen(function*() {
      yield* startInstance(instance("i1"))
      const ping = yield* request("$SRV.PING.calc.i1")
      const info = yield* request("$SRV.INFO.calc.i1")
      const stats = yield* request("$SRV.STATS.calc.i1")
      assert.sameMembers(keysOf(ping), goKeys.ping)
      assert.sameMembers(keysOf(info), goKeys.info)
      assert.sameMembers(keysOf(firstOf(info.endpoints)), goKeys.endpointInfo)
      assert.sameMembers(keysOf(stats), goKeys.stats)
      assert.sameMembers(keysOf(firstOf(stats.endpoints)), goKeys.endpointStats)
      assert.deepStrictEqual(ping, { type: "io.nats.micro.v1.ping_response", name: "calc", id: "i1", version: "1.2.3", metadata: { host: "m1" } })
      assert.deepStrictEqual(info.endpoints, [{ name: "call", subject: "calc.call", queue_group: "q", metadata: {} }])
      assert.strictEqual(info.description, "adds numbers")
      // Go reads `started` as an RFC 3339 time and the durations as integer nanoseconds.
      assert.match(String(stats.started), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/)
      assert.strictEqual(stats.started, "2026-12-06T12:00:00.000Z")
      assert.deepStrictEqual(firstOf(stats.endpoints), endpoint())
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("STATS reads the endpoints' counters at each request", () =>
    Effect.gen(function*() {
      let requests = 0
      yield* startInstance(instance("i1", { endpoints: () => [endpoint({ num_requests: requests })] }))
      requests = 7
      const stats = Schema.decodeUnknownSync(NatsMicro.StatsResponse)(yield* request("$SRV.STATS.calc"))
      assert.strictEqual(stats.endpoints[0]?.num_requests, 7)
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("counters and nanoseconds go out as whole numbers (Go reads them as int64)", () =>
    Effect.gen(function*() {
      yield* startInstance(instance("i1", { endpoints: () => [endpoint({ processing_time: 1234.9, average_processing_time: 617.45, num_requests: 2 })] }))
      const stats = Schema.decodeUnknownSync(NatsMicro.StatsResponse)(yield* request("$SRV.STATS.calc"))
      assert.deepInclude(stats.endpoints[0], { processing_time: 1234, average_processing_time: 617, num_requests: 2 })
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("a name, version or id the ADR does not allow fails with InvalidService", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const fieldOf = (options: NatsMicro.ResponderOptions) =>
        NatsMicro.respond(broker, options).pipe(Effect.scoped, Effect.flip, Effect.map((e) => e._tag === "InvalidService" ? e.field : e._tag))
      assert.strictEqual(yield* fieldOf(instance("i1", { name: "calc.v2" })), "name")
      assert.strictEqual(yield* fieldOf(instance("i1", { version: "1.2" })), "version")
      assert.strictEqual(yield* fieldOf(instance("a.b")), "id")
    }).pipe(Effect.provide(Broker.layerMemory)))
})

describe("natsMicro discovery", () => {
  it.effect("finds every instance of a service with its info and stats, and no other service", () =>
    Effect.gen(function*() {
      yield* startInstance(instance("i1"))
      yield* startInstance(instance("i2", { version: "1.3.0", endpoints: () => [endpoint({ num_requests: 3, num_errors: 0, last_error: "" })] }))
      yield* startInstance(instance("x1", { name: "other" }))
      const found = yield* discoverNow("calc")
      assert.sameMembers(found.map((i) => i.id), ["i1", "i2"])
      const i2 = found.find((i) => i.id === "i2")
      assert.strictEqual(i2?.version, "1.3.0")
      assert.deepStrictEqual(i2?.metadata, { host: "m1" })
      assert.strictEqual(Option.map(i2?.stats ?? Option.none(), (s) => s.endpoints[0]?.num_requests).pipe(Option.getOrUndefined), 3)
      assert.strictEqual(Option.map(i2?.info ?? Option.none(), (s) => s.description).pipe(Option.getOrUndefined), "adds numbers")
      const everything = yield* discoverNow(undefined)
      assert.sameMembers(everything.map((i) => `${i.name}/${i.id}`), ["calc/i1", "calc/i2", "other/x1"])
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("an instance that stopped is not found again; no instance is an empty list", () =>
    Effect.gen(function*() {
      const one = yield* startInstance(instance("i1"))
      yield* startInstance(instance("i2"))
      yield* one.stop
      assert.deepStrictEqual((yield* discoverNow("calc")).map((i) => i.id), ["i2"])
      assert.deepStrictEqual(yield* discoverNow("nobody"), [])
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("discovery lasts its wait and no longer (TestClock)", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* startInstance(instance("i1"))
      const fiber = yield* NatsMicro.discover(broker, "calc", { wait: "2 seconds" }).pipe(Effect.forkChild({ startImmediately: true }))
      yield* TestClock.adjust("1999 millis")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* Fiber.join(fiber)).length, 1)
    }).pipe(Effect.provide(Broker.layerMemory)))

  it.effect("reads services written with the Go client: null metadata, extra fields, and skips replies of another shape", () =>
    Effect.gen(function*() {
      const broker = yield* Broker.Broker
      // Replies as nats.go micro encodes them (a service whose metadata and endpoint metadata were never set).
      const goPing = `{"name":"calc","id":"GoSvc1","version":"0.1.0","metadata":null,"type":"io.nats.micro.v1.ping_response"}`
      const goStats = `{"name":"calc","id":"GoSvc1","version":"0.1.0","metadata":null,"type":"io.nats.micro.v1.stats_response",` +
        `"started":"2023-01-16T16:41:22.926143Z","endpoints":[{"name":"default","subject":"calc.add","queue_group":"q",` +
        `"num_requests":2,"num_errors":0,"last_error":"","processing_time":123456,"average_processing_time":61728}]}`
      const goInfo = `{"name":"calc","id":"GoSvc1","version":"0.1.0","metadata":{},"type":"io.nats.micro.v1.info_response",` +
        `"description":"","endpoints":[{"name":"default","subject":"calc.add","queue_group":"q","metadata":null}]}`
      yield* broker.serve("$SRV.PING.calc", () => Effect.succeed(bytes(goPing)))
      yield* broker.serve("$SRV.STATS.calc", () => Effect.succeed(bytes(goStats)))
      yield* broker.serve("$SRV.INFO.calc", () => Effect.succeed(bytes(goInfo)))
      yield* broker.serve("$SRV.PING.calc", () => Effect.succeed(bytes(`{"hello":"not a ping"}`)))
      const [found, ...rest] = yield* discoverNow("calc")
      assert.strictEqual(rest.length, 0)
      assert.strictEqual(found?.id, "GoSvc1")
      assert.deepStrictEqual(found?.metadata, {})
      const stats = Option.getOrUndefined(found?.stats ?? Option.none())
      assert.strictEqual(stats?.endpoints[0]?.average_processing_time, 61728)
      const info = Option.getOrUndefined(found?.info ?? Option.none())
      assert.deepStrictEqual(info?.endpoints[0]?.metadata, {})
      assert.isTrue(Schema.is(NatsMicro.StatsResponse)(stats))
    }).pipe(Effect.provide(Broker.layerMemory)))
})

describe.skipIf(skipNats)("natsMicro over a real nats-server", () => {
  it.live("instances on separate connections are found with their ping time and stats; a stopped one is gone", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const client = yield* NatsBroker.make({ servers: server.url, name: "client" })
      const scopes = yield* Effect.forEach(["n1", "n2"], (id) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const broker = yield* NatsBroker.make({ servers: server.url, name: id }).pipe(Scope.provide(scope))
          yield* NatsMicro.respond(broker, instance(id)).pipe(Scope.provide(scope))
          return scope
        }))
      const found = yield* NatsMicro.discover(client, "calc", { wait: "500 millis" })
      assert.sameMembers(found.map((i) => i.id), ["n1", "n2"])
      for (const i of found) {
        assert.isTrue(Duration.isGreaterThan(i.latency, Duration.zero), `${i.id} has a ping time`)
        assert.isTrue(Duration.isLessThan(i.latency, Duration.millis(500)), `${i.id} answered within the wait`)
        assert.strictEqual(Option.getOrUndefined(i.stats)?.endpoints[0]?.num_requests, 10)
      }
      const [first] = scopes
      assert.isDefined(first)
      yield* Scope.close(first, Exit.void)
      const after = yield* NatsMicro.discover(client, "calc", { wait: "500 millis" })
      assert.deepStrictEqual(after.map((i) => i.id), ["n2"])
    }).pipe(Effect.scoped))
})
