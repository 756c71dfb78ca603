import { assert, describe, it } from "@effect/vitest"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import { TestClock } from "effect/testing"
import * as Broker from "../src/Broker.ts"
import * as DoctorReport from "../src/DoctorReport.ts"
import * as NatsMicro from "../src/internal/natsMicro.ts"
import * as PluginHealth from "../src/PluginHealth.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as PluginWorker from "../src/PluginWorker.ts"
import { InMemorySpawner } from "../src/testing/index.ts"

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** A health service (no local plugins but one group `local`) and an in-memory broker. */
const setup = Effect.gen(function*() {
  const fake = yield* InMemorySpawner.make({})
  const manager = yield* PluginManager.make().pipe(Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, fake.spawner))
  const health = yield* PluginHealth.make({ groups: { local: [] } }).pipe(Effect.provideService(PluginManager.PluginManager, manager))
  const broker = yield* Broker.makeMemory
  return { health, broker }
})

/** One instance of the `calendar` service, stopped when `stop` runs. */
const startInstance = (broker: Broker.Broker["Service"], id: string, counters: Partial<NatsMicro.EndpointStats> = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* NatsMicro.respond(broker, {
      name: "calendar",
      id,
      version: "2.0.0",
      started: 0,
      endpoints: () => [{
        name: "call",
        subject: "calendar.call",
        queue_group: "q",
        num_requests: 0,
        num_errors: 0,
        last_error: "",
        processing_time: 0,
        average_processing_time: 0,
        ...counters
      }]
    }).pipe(Scope.provide(scope))
    return { stop: Scope.close(scope, Exit.void) }
  })

/** Runs a check of a watched remote plugin under TestClock (its discovery waits 1 s). */
const checkNow = (health: PluginHealth.PluginHealth["Service"], name: string) =>
  Effect.gen(function*() {
    const fiber = yield* health.checkRemote(name).pipe(Effect.forkChild({ startImmediately: true }))
    yield* TestClock.adjust("1 second")
    return yield* Fiber.join(fiber)
  })

const describeEvent = (event: PluginHealth.HealthEvent): string => {
  switch (event._tag) {
    case "GroupStateChanged":
      return `${event.group}: ${event.from ?? "-"} → ${event.to} (${event.message})`
    case "InstancesChanged":
      return `${event.plugin}: +[${event.joined.join(",")}] -[${event.left.join(",")}] = ${event.instances}`
    default:
      return event._tag
  }
}

describe("PluginHealth remote plugins (instances over NATS micro discovery)", () => {
  it.effect("healthy at minInstances, degraded below, failed at zero, as a poll sees instances come and go (TestClock)", () =>
    Effect.gen(function*() {
      const { broker, health } = yield* setup
      const a = yield* startInstance(broker, "a")
      const b = yield* startInstance(broker, "b")
      const events = yield* health.subscribe
      const log: Array<string> = []
      yield* events.pipe(Stream.runForEach((event) => Effect.sync(() => log.push(describeEvent(event)))), Effect.forkScoped)
      yield* health.watchRemote(
        { name: "calendar", service: "calendar", minInstances: 2 },
        { broker, wait: "1 second", poll: Schedule.spaced("10 seconds") }
      )
      yield* settle
      yield* TestClock.adjust("1 second") // first check: at once, over after its 1 s wait
      yield* a.stop
      yield* TestClock.adjust("11 seconds") // 10 s apart, then 1 s of discovery
      yield* b.stop
      yield* TestClock.adjust("11 seconds")
      yield* startInstance(broker, "c")
      yield* TestClock.adjust("11 seconds")
      yield* settle
      const [last] = yield* health.remotes
      assert.strictEqual(last?.state, "Degraded")
      assert.deepStrictEqual(last?.instances.map((i) => i.id), ["c"])
      assert.deepStrictEqual(log, [
        "calendar: +[a,b] -[] = 2",
        "calendar: - → Healthy (2 instances (2 required))",
        "calendar: +[] -[a] = 1",
        "calendar: Healthy → Degraded (1 of 2 required instances)",
        "calendar: +[] -[b] = 0",
        "calendar: Degraded → Failed (no instance answers)",
        "calendar: +[c] -[] = 1",
        "calendar: Failed → Degraded (1 of 2 required instances)"
      ])
    }).pipe(Effect.scoped))

  it.effect("a check reports each instance's version, request and error counts and last error", () =>
    Effect.gen(function*() {
      const { broker, health } = yield* setup
      yield* startInstance(broker, "a", { num_requests: 12, num_errors: 2, last_error: "calendar locked" })
      yield* startInstance(broker, "b", { num_requests: 5 })
      yield* health.watchRemote({ name: "calendar", service: "calendar" }, { broker })
      const check = yield* checkNow(health, "calendar")
      assert.strictEqual(check.state, "Healthy")
      assert.strictEqual(check.minInstances, 1)
      const byId = Object.fromEntries(check.instances.map((i) => [i.id, i]))
      assert.deepInclude(byId.a, { version: "2.0.0", requests: 12, errors: 2, lastError: "calendar locked", started: "1970-01-01T00:00:00.000Z" })
      assert.deepInclude(byId.b, { requests: 5, errors: 0 })
      assert.isUndefined(byId.b?.lastError)
    }).pipe(Effect.scoped))

  it.effect("the doctor lists remote plugins with their instances, in text and JSON", () =>
    Effect.gen(function*() {
      const { broker, health } = yield* setup
      yield* startInstance(broker, "a", { num_requests: 3, num_errors: 1, last_error: "boom" })
      yield* health.watchRemote({ name: "calendar", service: "calendar", minInstances: 2 }, { broker })
      const fiber = yield* health.doctor.pipe(Effect.forkChild({ startImmediately: true }))
      yield* TestClock.adjust("1 second")
      const report = yield* Fiber.join(fiber)
      assert.strictEqual(report.remotes?.length, 1)
      const text = PluginHealth.render(report)
      assert.include(text, "remote calendar (NATS service calendar): Degraded - 1 of 2 required instances")
      assert.include(text, "  instance a v2.0.0: ping 0.0 ms, 3 requests, 1 errors, last error: boom")
      const json = JSON.parse(JSON.stringify(Schema.encodeSync(DoctorReport.DoctorReport)(report)))
      const decoded = Schema.decodeUnknownSync(DoctorReport.DoctorReport)(json)
      assert.deepStrictEqual(decoded.remotes?.[0]?.instances.map((i) => i.id), ["a"])
      assert.strictEqual(PluginHealth.render(decoded), text)
    }).pipe(Effect.scoped))

  it.effect("a broker that cannot be asked makes the remote plugin Failed, with the reason", () =>
    Effect.gen(function*() {
      const { health } = yield* setup
      const scope = yield* Scope.make()
      const broker = yield* Broker.makeMemory.pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      yield* health.watchRemote({ name: "calendar", service: "calendar" }, { broker })
      const check = yield* checkNow(health, "calendar")
      assert.strictEqual(check.state, "Failed")
      assert.strictEqual(check.message, "discovery failed: broker is closed: the in-memory broker was released")
    }).pipe(Effect.scoped))

  it.effect("a watch lasts its Scope; a bad, duplicate or group-named registration is refused", () =>
    Effect.gen(function*() {
      const { broker, health } = yield* setup
      const refused = (remote: PluginHealth.RemotePlugin) =>
        health.watchRemote(remote, { broker }).pipe(Effect.scoped, Effect.flip, Effect.map((e) => `${e.field} ${e.detail}`))
      assert.strictEqual(yield* refused({ name: "local", service: "x" }), "remote.local is the name of a configured group")
      assert.strictEqual(yield* refused({ name: "c", service: "x", minInstances: 0 }), "remote.c.minInstances must be an integer >= 1 (got 0)")
      assert.strictEqual(yield* refused({ name: "c", service: " " }), "remote.c has an empty service name")
      const scope = yield* Scope.make()
      yield* health.watchRemote({ name: "calendar", service: "calendar" }, { broker }).pipe(Scope.provide(scope))
      assert.strictEqual(yield* refused({ name: "calendar", service: "calendar" }), "remote.calendar is watched already")
      yield* Scope.close(scope, Exit.void)
      const unknown = yield* Effect.flip(health.checkRemote("calendar"))
      assert.strictEqual(unknown.message, "no remote plugin `calendar` is watched (watched: none)")
    }).pipe(Effect.scoped))
})

describe("PluginHealth watches the manager's remote plugins (manifests with [remote], TestClock)", () => {
  const manifest = (minInstances: number) =>
    PluginManifest.make({
      name: "calendar",
      version: "1.0.0",
      executable: "calendar-nats.ts",
      remote: { subjectPrefix: "plugins.calendar", service: "calendar-svc", minInstances }
    })

  /** A manager reaching remote plugins on one in-memory broker, and a health service polling them every 10 s. */
  const hosted = Effect.gen(function*() {
    const broker = yield* Broker.makeMemory
    const fake = yield* InMemorySpawner.make({ local: InMemorySpawner.echo() })
    const manager = yield* PluginManager.make({ brokers: () => Effect.succeed(broker) }).pipe(
      Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, fake.spawner)
    )
    const health = yield* PluginHealth.make({ groups: { local: ["local"], calendars: ["calendar"] }, remote: { poll: "10 seconds", wait: "1 second" } }).pipe(
      Effect.provideService(PluginManager.PluginManager, manager)
    )
    const states: Array<string> = []
    const events = yield* health.subscribe
    yield* events.pipe(
      Stream.runForEach((event) =>
        Effect.sync(() => event._tag === "GroupStateChanged" && event.group === "calendar" && void states.push(describeEvent(event)))
      ),
      Effect.forkScoped
    )
    return { broker, manager, health, states }
  })

  /** One worker instance of the calendar's service, served until `kill`. */
  const worker = (broker: Broker.Broker["Service"]) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const served = yield* PluginWorker.serveBroker({
        prefix: "plugins.calendar",
        service: "calendar-svc",
        version: "1.0.0",
        handlers: { echo: (params) => Effect.succeed(params) }
      }).pipe(Effect.provideService(Broker.Broker, broker), Scope.provide(scope))
      return { id: served.id, endpoints: served.endpoints, kill: Scope.close(scope, Exit.void) }
    })

  /** One poll period (its discovery fits in it). */
  const nextPoll = Effect.andThen(settle, TestClock.adjust("10 seconds"))

  it.effect("a registered remote plugin is watched from its registration: failed at zero, healthy at min_instances, degraded below", () =>
    Effect.gen(function*() {
      const { broker, health, manager, states } = yield* hosted
      yield* manager.register(manifest(2))
      yield* settle
      yield* TestClock.adjust("1 second") // the first check runs at once
      const one = yield* worker(broker)
      const two = yield* worker(broker)
      yield* nextPoll
      assert.strictEqual(yield* manager.call("calendar", "echo", "through the manager"), "through the manager")
      yield* one.kill
      yield* nextPoll
      const [degraded] = yield* health.remotes
      assert.deepInclude(degraded, { plugin: "calendar", service: "calendar-svc", minInstances: 2, state: "Degraded" })
      assert.deepStrictEqual(degraded?.instances.map((i) => i.id), [two.id])
      const group = yield* health.check("calendars")
      assert.deepStrictEqual(group.servers.map((s) => [s.serverName, s.status, s.lastError]), [["calendar", "Degraded", "1 of 2 required instances"]])
      yield* two.kill
      yield* nextPoll
      yield* settle
      assert.strictEqual((yield* health.check("calendars")).state, "Failed", "a group whose remote plugin has no instance left is failed")
      assert.deepStrictEqual(states, [
        "calendar: - → Failed (no instance answers)",
        "calendar: Failed → Healthy (2 instances (2 required))",
        "calendar: Healthy → Degraded (1 of 2 required instances)",
        "calendar: Degraded → Failed (no instance answers)"
      ])
    }).pipe(Effect.scoped))

  it.effect("the doctor lists the remote plugin beside the local ones; unregistering it ends its watch", () =>
    Effect.gen(function*() {
      const { broker, health, manager } = yield* hosted
      yield* manager.register({ name: "local", executable: "local" })
      yield* manager.register(manifest(1))
      const instance = yield* worker(broker)
      assert.strictEqual(yield* manager.call("calendar", "echo", 1), 1)
      // As `plugin-host doctor` does: probe every running plugin, then report.
      yield* health.probeNow
      const fiber = yield* health.doctor.pipe(Effect.forkChild({ startImmediately: true }))
      yield* TestClock.adjust("1 second")
      const report = yield* Fiber.join(fiber)
      // A remote plugin is judged by discovery, never probed (one instance would count an error).
      assert.deepStrictEqual(instance.endpoints().map((e) => [e.num_requests, e.num_errors] as const).filter(([n]) => n > 0), [[1, 0]])
      assert.sameMembers(report.plugins.map((p) => p.id), ["local", "calendar"])
      assert.strictEqual(report.plugins.find((p) => p.id === "calendar")?.checksum, "remote", "nothing of it runs here to verify")
      assert.deepStrictEqual(report.remotes?.map((r) => [r.plugin, r.state, r.instances.length]), [["calendar", "Healthy", 1]])
      assert.include(PluginHealth.render(report), "remote calendar (NATS service calendar-svc): Healthy - 1 instance (1 required)")
      yield* manager.unregister("calendar")
      assert.deepStrictEqual(yield* health.remotes, [])
      const gone = yield* Effect.flip(health.checkRemote("calendar"))
      assert.strictEqual(gone._tag, "UnknownRemote")
    }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)))

  it.effect("a remote plugin registered anew is watched with its new manifest", () =>
    Effect.gen(function*() {
      const { broker, health, manager } = yield* hosted
      yield* worker(broker)
      yield* manager.register(manifest(3))
      const first = yield* checkNow(health, "calendar")
      assert.deepInclude(first, { state: "Degraded", minInstances: 3 })
      yield* manager.stop("calendar")
      yield* manager.register(manifest(1))
      const second = yield* checkNow(health, "calendar")
      assert.deepInclude(second, { state: "Healthy", minInstances: 1 })
      // 0 would say nothing: with no instance the plugin is failed whatever it says.
      assert.throws(() => manifest(0))
    }).pipe(Effect.scoped))

  it.effect("an invalid poll or wait is refused when the service is made", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({})
      const manager = yield* PluginManager.make().pipe(Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, fake.spawner))
      const error = yield* Effect.flip(
        PluginHealth.make({ groups: {}, remote: { poll: "0 seconds" } }).pipe(Effect.provideService(PluginManager.PluginManager, manager))
      )
      assert.strictEqual(error.field, "remote.poll")
    }).pipe(Effect.scoped))
})
