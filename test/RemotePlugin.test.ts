import { afterEach, assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Broker from "../src/Broker.ts"
import * as NatsMicro from "../src/internal/natsMicro.ts"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as NatsBroker from "../src/NatsBroker.ts"
import * as PluginHealth from "../src/PluginHealth.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import type * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginWorker from "../src/PluginWorker.ts"
import * as RemotePlugin from "../src/RemotePlugin.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { Add } from "./fixtures/mathContract.ts"
import { skipNats, spawnNode, startNatsServer, startNatsServerAt } from "./support/nats.ts"
import { eventually, fixture, liveChildren } from "./support/processes.ts"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const prefix = "plugins.calendar"

/** Serves one worker instance in a Scope of its own; closing it is the instance dying. */
const instance = (handlers: Readonly<Record<string, PluginWorker.Handler>>, options?: Partial<PluginWorker.ServeBrokerOptions>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const served = yield* PluginWorker.serveBroker({ prefix, handlers, ...options }).pipe(Scope.provide(scope))
    return { served, kill: Scope.close(scope, Exit.void) }
  })

const remote = (options?: Partial<RemotePlugin.Options>) =>
  RemotePlugin.make("calendar", { subjectPrefix: prefix, service: "calendar-svc", ...options })

const reasonOf = <A>(effect: Effect.Effect<A, PluginClientError.PluginClientError>) =>
  Effect.map(Effect.flip(effect), (error) => error.reason)

/** Forks `effect`, lets it run, and returns its fiber. */
const started = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect)
    yield* settle
    return fiber
  })

const inMemory = <A, E>(effect: Effect.Effect<A, E, Broker.Broker | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(Broker.layerMemory))

/** Discovers the instances of `service` under TestClock: listens 1 s of virtual time. */
const discoverNow = (broker: Broker.Broker["Service"], service: string) =>
  Effect.gen(function*() {
    const fiber = yield* NatsMicro.discover(broker, service, { wait: "1 second" }).pipe(Effect.forkChild({ startImmediately: true }))
    yield* TestClock.adjust("1 second")
    return yield* Fiber.join(fiber)
  })

describe("RemotePlugin over Broker.layerMemory (TestClock)", () => {
  it.effect("calls reach an instance: results, typed methods and the plugin's error objects", () =>
    inMemory(Effect.gen(function*() {
      yield* instance({
        echo: (params) => Effect.succeed(params),
        refuse: () => Effect.fail(JsonRpc.error(-32002, "calendar deleted", { kind: "permanent" })),
        ...PluginWorker.handlers(PluginWorker.handle(Add, ({ a, b }) => Effect.succeed({ sum: a + b })))
      })
      const client = yield* remote()
      assert.deepStrictEqual(yield* client.request("echo", { a: [1, "x"] }), { a: [1, "x"] })
      assert.deepStrictEqual(yield* client.call(Add, { a: 2, b: 3 }), { sum: 5 })
      const refused = yield* reasonOf(client.request("refuse"))
      assert.deepStrictEqual(refused, new PluginClientError.PluginError({ code: -32002, message: "calendar deleted", data: { kind: "permanent" } }))
      const unknown = yield* reasonOf(client.request("nope"))
      assert.strictEqual(unknown._tag === "PluginError" ? unknown.code : undefined, -32601)
    })))

  it.effect("a handler calls the host, notifies it and logs to it, through the inbox its request carried", () =>
    inMemory(Effect.gen(function*() {
      yield* instance({
        askHost: () => PluginWorker.callHost("host.add", [1, 2]),
        askMissing: () => PluginWorker.callHost("host.missing"),
        chatty: () =>
          PluginWorker.log("info", "working on it").pipe(
            Effect.andThen(PluginWorker.notifyHost("calendar.changed", { id: 7 })),
            Effect.as("done")
          )
      })
      const notified = yield* Deferred.make<unknown>()
      const events: Array<PluginClient.PluginEvent> = []
      const client = yield* remote({
        hostHandlers: {
          "host.add": (params) => Effect.succeed((params as [number, number])[0] + (params as [number, number])[1])
        },
        onNotification: (notification) => Deferred.succeed(notified, notification.params).pipe(Effect.asVoid),
        onEvent: (event) => Effect.sync(() => void events.push(event))
      })
      assert.strictEqual(yield* client.request("askHost"), 3)
      const missing = yield* reasonOf(client.request("askMissing"))
      assert.strictEqual(missing._tag, "PluginError")
      assert.include(missing.message, "Method not found: host.missing")
      assert.strictEqual(yield* client.request("chatty"), "done")
      assert.deepStrictEqual(yield* Deferred.await(notified), { id: 7 })
      yield* settle
      assert.isTrue(events.some((e) => e._tag === "Log" && e.message === "working on it"))
      assert.isTrue(events.some((e) => e._tag === "Notification" && e.method === "calendar.changed"))
    })))

  it.effect("progress reaches onProgress and gives the call a full timeout again, never past maxRequestTimeout", () =>
    inMemory(Effect.gen(function*() {
      yield* instance({
        slow: () =>
          Effect.gen(function*() {
            for (let i = 1; i <= 10; i++) {
              yield* Effect.sleep("900 millis")
              yield* PluginWorker.progress({ progress: i, total: 10 })
            }
            return "finished"
          })
      })
      const policy = yield* LifetimePolicy.make({ requestTimeout: "1 second", maxRequestTimeout: "5 seconds" })
      const client = yield* remote({ policy, livenessInterval: "10 seconds" })
      const seen: Array<unknown> = []
      const call = yield* started(client.request("slow", {}, { onProgress: (value) => Effect.sync(() => void seen.push(value)) }))
      // Each report at 0.9 s intervals moves the 1 s deadline; the cap ends it at 5 s.
      yield* TestClock.adjust("4500 millis")
      yield* settle
      assert.isUndefined(call.pollUnsafe())
      assert.deepStrictEqual(seen, [1, 2, 3, 4, 5].map((progress) => ({ progress, total: 10 })))
      yield* TestClock.adjust("500 millis")
      yield* settle
      const exit = yield* Fiber.await(call)
      assert.isTrue(Exit.isFailure(exit))
      const reason = Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit))?.reason : undefined
      assert.strictEqual(reason?._tag, "Timeout")
    })))

  it.effect("a call the host gives up is cancelled on the instance holding it: its handler is interrupted", () =>
    inMemory(Effect.gen(function*() {
      const interrupted: Array<string> = []
      yield* instance({
        hang: (params) => Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => void interrupted.push(String(params)))))
      })
      const client = yield* remote({ livenessInterval: "1 minute" })
      const timedOut = yield* started(client.request("hang", "by-timeout", { timeout: "2 seconds" }))
      const abandoned = yield* started(client.request("hang", "by-interrupt"))
      yield* Fiber.interrupt(abandoned)
      yield* settle
      assert.deepStrictEqual(interrupted, ["by-interrupt"])
      yield* TestClock.adjust("2 seconds")
      yield* settle
      const reason = yield* reasonOf(Fiber.join(timedOut))
      assert.deepInclude(reason, { _tag: "Timeout", method: "hang" })
      assert.deepStrictEqual(interrupted, ["by-interrupt", "by-timeout"])
    })))

  it.effect("no instance: NoResponders names the service, at once", () =>
    inMemory(Effect.gen(function*() {
      const client = yield* remote()
      const reason = yield* reasonOf(client.request("echo", 1))
      assert.deepStrictEqual(reason, new PluginClientError.NoResponders({ service: "calendar-svc", subject: `${prefix}.call` }))
      assert.strictEqual(
        PluginClientError.make("calendar", reason).message,
        "plugin `calendar` has no instance of service `calendar-svc` answering on `plugins.calendar.call`"
      )
      const health = yield* client.health
      assert.strictEqual(health.lastErrorReason, "NoResponders")
      assert.strictEqual(health.requests, 1)
    })))

  it.effect("an idempotent method is sent again until an instance answers; any other fails at once", () =>
    inMemory(Effect.gen(function*() {
      const client = yield* remote({ idempotent: ["echo"] })
      const once = yield* reasonOf(client.request("other", 1))
      assert.strictEqual(once._tag, "NoResponders")
      const retried = yield* started(client.request("echo", "hello"))
      yield* TestClock.adjust("120 millis")
      assert.isUndefined(retried.pollUnsafe())
      yield* instance({ echo: (params) => Effect.succeed(params) })
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(yield* Fiber.join(retried), "hello")
    })))

  it.effect("an instance lost mid-call ends the call with InstanceLost; an idempotent one goes to another instance", () =>
    inMemory(Effect.gen(function*() {
      const first = yield* instance({ work: () => Effect.never, once: () => Effect.never })
      yield* instance({ work: () => Effect.succeed("second"), once: () => Effect.succeed("second") })
      const client = yield* remote({ idempotent: ["work"], livenessInterval: "2 seconds", livenessTimeout: "1 second" })
      // The queue group hands the first two calls to the first and the second instance in turn.
      const work = yield* started(client.request("work"))
      assert.strictEqual(yield* client.request("once"), "second")
      const once = yield* started(client.request("once"))
      yield* first.kill
      yield* TestClock.adjust("2 seconds")
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* settle
      assert.strictEqual(yield* Fiber.join(work), "second")
      const lost = yield* reasonOf(Fiber.join(once))
      assert.deepInclude(lost, { _tag: "InstanceLost", service: "calendar-svc", method: "once" })
    })))

  it.effect("a reply from an instance taken for lost arrives too late to end the call a second time", () =>
    inMemory(Effect.gen(function*() {
      const broker = yield* Broker.Broker
      // An instance that answers calls but not `held` (as one that is cut off would): slowly.
      const lateReplies: Array<string> = []
      yield* broker.serve(`${prefix}.call`, (data) =>
        Effect.gen(function*() {
          yield* Effect.sleep("5 seconds")
          const request = JSON.parse(new TextDecoder().decode(data)) as { id: number }
          lateReplies.push("sent")
          return new TextEncoder().encode(JSON.stringify({ jsonrpc: "2.0", id: request.id, result: "late" }))
        }), { queue: "q" })
      yield* instance({ work: () => Effect.succeed("second") })
      const client = yield* remote({ idempotent: ["work"], livenessInterval: "2 seconds", livenessTimeout: "1 second" })
      const ends: Array<unknown> = []
      const work = yield* started(client.request("work").pipe(Effect.tap((value) => Effect.sync(() => void ends.push(value)))))
      for (let i = 0; i < 10; i++) {
        yield* TestClock.adjust("1 second")
        yield* settle
      }
      assert.strictEqual(yield* Fiber.join(work), "second")
      assert.deepStrictEqual(lateReplies, ["sent"], "the first instance did answer, late")
      assert.deepStrictEqual(ends, ["second"], "the call ended once")
    })))

  it.effect("a long call on a live instance is asked after, and not taken for lost", () =>
    inMemory(Effect.gen(function*() {
      yield* instance({ long: () => Effect.as(Effect.sleep("7 seconds"), "late but fine") })
      const client = yield* remote({ livenessInterval: "2 seconds" })
      const call = yield* started(client.request("long", undefined, { timeout: "10 seconds" }))
      for (let i = 0; i < 7; i++) {
        yield* TestClock.adjust("1 second")
        yield* settle
      }
      assert.strictEqual(yield* Fiber.join(call), "late but fine")
    })))

  it.effect("notify reaches one instance's notification handler; a stopped client refuses calls until started", () =>
    inMemory(Effect.gen(function*() {
      const heard = yield* Deferred.make<unknown>()
      yield* instance({ echo: (params) => Effect.succeed(params) }, {
        notifications: { "config.changed": (params) => Deferred.succeed(heard, params).pipe(Effect.asVoid) }
      })
      const client = yield* remote()
      yield* client.notify("config.changed", { tz: "UTC" })
      assert.deepStrictEqual(yield* Deferred.await(heard), { tz: "UTC" })
      yield* client.stop
      assert.strictEqual((yield* client.state)._tag, "Stopped")
      assert.strictEqual((yield* reasonOf(client.request("echo", 1)))._tag, "Closed")
      yield* client.start
      assert.strictEqual(yield* client.request("echo", 1), 1)
    })))

  it.effect("closing the client ends its calls in flight with Closed, and the instance is told to cancel them", () =>
    inMemory(Effect.gen(function*() {
      const interrupted: Array<string> = []
      yield* instance({ hang: () => Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => void interrupted.push("hang")))) })
      const clientScope = yield* Scope.make()
      const client = yield* remote().pipe(Scope.provide(clientScope))
      const call = yield* started(client.request("hang"))
      yield* Scope.close(clientScope, Exit.void)
      yield* settle
      const reason = yield* reasonOf(Fiber.join(call))
      assert.deepStrictEqual(reason, new PluginClientError.Closed({ detail: "the client was closed" }))
      assert.deepStrictEqual(interrupted, ["hang"])
    })))

  it.effect("an instance counts its requests and errors per endpoint, as $SRV.STATS reports them", () =>
    inMemory(Effect.gen(function*() {
      const { served } = yield* instance({
        echo: (params) => Effect.succeed(params),
        refuse: () => Effect.fail(JsonRpc.error(-32002, "no"))
      }, { service: "calendar-svc", version: "1.2.3" })
      const client = yield* remote()
      yield* client.request("echo", 1)
      yield* Effect.ignore(client.request("refuse"))
      assert.strictEqual(served.name, "calendar-svc")
      assert.strictEqual(served.version, "1.2.3")
      assert.match(served.id, /^[0-9a-f-]{36}$/)
      const call = served.endpoints().find((endpoint) => endpoint.name === "call")
      assert.deepInclude(call, { subject: `${prefix}.call`, queue_group: "q", num_requests: 2, num_errors: 1, last_error: "-32002: no" })
    })))

  it.effect("every instance answers NATS micro discovery ($SRV.PING/INFO/STATS) with its identity and counters", () =>
    inMemory(Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const one = yield* instance({ echo: (params) => Effect.succeed(params) }, { service: "calendar-svc", version: "1.2.3" })
      const two = yield* instance({ echo: (params) => Effect.succeed(params) }, { service: "calendar-svc", version: "1.2.3" })
      const client = yield* remote()
      for (let i = 0; i < 4; i++) yield* client.request("echo", i)
      const found = yield* discoverNow(broker, "calendar-svc")
      assert.sameMembers(found.map((i) => i.id), [one.served.id, two.served.id])
      assert.deepStrictEqual(found.map((i) => [i.name, i.version]), [["calendar-svc", "1.2.3"], ["calendar-svc", "1.2.3"]])
      const calls = found.map((i) => Option.getOrThrow(i.stats).endpoints.find((e) => e.name === "call")?.num_requests ?? 0)
      assert.strictEqual(calls.reduce((a, b) => a + b, 0), 4, "the counters the instances report are the calls they served")
      const info = Option.getOrThrow(found[0]?.info ?? Option.none())
      assert.sameMembers(info.endpoints.map((e) => e.subject), [`${prefix}.call`, `${prefix}.tick`, `${prefix}.notify`])
      yield* one.kill
      assert.deepStrictEqual((yield* discoverNow(broker, "calendar-svc")).map((i) => i.id), [two.served.id], "a stopped instance no longer answers")
    })))

  it.effect("the default service name is the worker's name (else its prefix) made ADR-32-safe; an invalid one serves nothing", () =>
    inMemory(Effect.gen(function*() {
      const broker = yield* Broker.Broker
      const { served } = yield* instance({})
      assert.strictEqual(served.name, "plugins-calendar")
      assert.deepStrictEqual((yield* discoverNow(broker, "plugins-calendar")).map((i) => i.id), [served.id])
      const named = yield* instance({}, { name: "cal.v2" })
      assert.strictEqual(named.served.name, "cal-v2")
      const badName = yield* Effect.flip(instance({}, { service: "calendar.svc" }))
      assert.deepStrictEqual([badName._tag, badName._tag === "InvalidService" ? badName.field : ""], ["InvalidService", "name"])
      const badVersion = yield* Effect.flip(instance({}, { service: "other", version: "1" }))
      assert.deepStrictEqual([badVersion._tag, badVersion._tag === "InvalidService" ? badVersion.field : ""], ["InvalidService", "version"])
      assert.deepStrictEqual(yield* discoverNow(broker, "other"), [], "nothing answers for a refused service")
    })))
})

describe("PluginManager holds remote plugins beside local ones (TestClock)", () => {
  const remoteManifest = PluginManifest.make({
    name: "calendar",
    version: "1.0.0",
    executable: "calendar-nats.ts",
    remote: { subjectPrefix: prefix, service: "calendar-svc", idempotent: ["echo"] }
  })

  it.effect("a manifest with [remote] is called through the manager like a local plugin, and reported as remote", () =>
    inMemory(Effect.gen(function*() {
      const broker = yield* Broker.Broker
      yield* instance({ echo: (params) => Effect.succeed({ remote: params }) })
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.echo() })
      const asked: Array<RemotePlugin.Target> = []
      const manager = yield* PluginManager.make({
        brokers: (target) => Effect.sync(() => void asked.push(target)).pipe(Effect.as(broker))
      }).pipe(Effect.provide(fake.layer))
      yield* manager.register({ name: "local", executable: "plugin" })
      yield* manager.register(remoteManifest)
      assert.deepStrictEqual(yield* manager.call("local", "echo", 1), 1)
      assert.deepStrictEqual(yield* manager.call("calendar", "echo", 2), { remote: 2 })
      assert.isTrue(yield* manager.isRunning("calendar"))
      const diagnostics = yield* manager.diagnostics
      const remote = diagnostics.find((d) => d.id === "calendar")
      assert.strictEqual(remote?.remote?.service, "calendar-svc")
      assert.strictEqual(remote?.health.requests, 1)
      assert.isUndefined(diagnostics.find((d) => d.id === "local")?.remote)
      assert.deepStrictEqual(asked, [{ servers: undefined, serverSet: undefined }], "one broker for the default servers")
      assert.strictEqual((yield* fake.spawns).length, 1, "nothing spawned for the remote plugin")
    })))

  it.effect("without brokers, registering a remote plugin fails with RemoteUnavailable", () =>
    inMemory(Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.echo() })
      const manager = yield* PluginManager.make().pipe(Effect.provide(fake.layer))
      const error = yield* Effect.flip(manager.register(remoteManifest))
      assert.strictEqual(error.reason._tag, "RemoteUnavailable")
      assert.include(error.message, "plugin id `calendar` is remote and cannot be reached")
    })))
})

describe("RemotePlugin.serversOf", () => {
  const withEnv = (env: Record<string, string>) => <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.provideService(effect, ConfigProvider.ConfigProvider, ConfigProvider.fromEnvRecord(env))

  it.effect("a manifest's own servers win; else its server set's, else the default ones, from Config", () =>
    Effect.gen(function*() {
      const env = withEnv({ PLUGIN_HOST_NATS_SERVERS: "nats://d:4222", PLUGIN_HOST_NATS_SERVERS_MAIN: "a:4222, b:4222" })
      assert.deepStrictEqual(yield* env(RemotePlugin.serversOf({ servers: ["x:1"], serverSet: "main" })), ["x:1"])
      assert.deepStrictEqual(yield* env(RemotePlugin.serversOf({ servers: undefined, serverSet: "main" })), ["a:4222", "b:4222"])
      assert.deepStrictEqual(yield* env(RemotePlugin.serversOf({ servers: undefined, serverSet: undefined })), ["nats://d:4222"])
      const missing = yield* Effect.flip(withEnv({})(RemotePlugin.serversOf({ servers: undefined, serverSet: "edge" })))
      assert.strictEqual(missing.reason._tag, "Connection")
      assert.include(missing.message, "no NATS servers in PLUGIN_HOST_NATS_SERVERS_EDGE")
      const empty = yield* Effect.flip(withEnv({ PLUGIN_HOST_NATS_SERVERS: " , " })(RemotePlugin.serversOf({ servers: undefined, serverSet: undefined })))
      assert.include(empty.message, "it is empty")
    }))
})

// ---------------------------------------------------------------------------------------------
// across processes, on a real nats-server
// ---------------------------------------------------------------------------------------------

const quiet = Logger.layer([])

describe.skipIf(skipNats)("RemotePlugin over NATS (real nats-server, worker processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 5_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  const natsPrefix = "plugins.remote"
  const worker = (url: string) =>
    spawnNode(fixture("remote-worker.ts"), { NATS_URL: url, WORKER_PREFIX: natsPrefix, WORKER_SERVICE: "remote-test" }).pipe(
      Effect.tap((w) => w.waitForStderr("serving", 15_000))
    )
  /** A remote client on its own NATS connection. */
  const natsClient = (url: string, options?: Partial<RemotePlugin.Options>) =>
    Effect.gen(function*() {
      const broker = yield* NatsBroker.make({ servers: url, name: "host", timeout: "5 seconds", drainTimeout: "1 second" })
      return yield* RemotePlugin.make("remote", { subjectPrefix: natsPrefix, service: "remote-test", ...options }).pipe(
        Effect.provideService(Broker.Broker, broker)
      )
    })

  it.live("10k calls at 64 in flight over two instances, one SIGKILLed mid-load: ≥ 99 % succeed, every call ends", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const doomed = yield* worker(server.url)
      const survivor = yield* worker(server.url)
      const policy = yield* LifetimePolicy.make({ requestTimeout: "20 seconds" })
      const client = yield* natsClient(server.url, { policy, idempotent: ["pid"], livenessInterval: "1 second" })
      const total = 10_000
      let ended = 0
      const killer = yield* Effect.forkChild(Effect.gen(function*() {
        while (ended < 3_000) yield* Effect.sleep("5 millis")
        yield* doomed.kill("SIGKILL")
      }))
      // Even calls are idempotent (`pid`: sent again when their instance is lost); odd ones are not.
      const outcomes = yield* Effect.forEach(
        Array.from({ length: total }, (_, i) => i),
        (i) =>
          (i % 2 === 0 ? client.request("pid") : client.request("echo", i)).pipe(
            Effect.map((value) => ({ ok: true as const, value, i })),
            Effect.catch((error) => Effect.succeed({ ok: false as const, reason: error.reason._tag, i })),
            Effect.ensuring(Effect.sync(() => void ended++))
          ),
        { concurrency: 64 }
      ).pipe(Effect.timeout("120 seconds"))
      yield* Fiber.join(killer)
      const failures = outcomes.filter((o) => !o.ok)
      assert.strictEqual(outcomes.length, total, "every call ended")
      assert.isAtLeast(total - failures.length, 0.99 * total, `failures: ${JSON.stringify(failures.slice(0, 5))}`)
      for (const failure of failures) {
        assert.strictEqual(failure.i % 2, 1, "an idempotent call never fails for a lost instance")
        assert.include(["InstanceLost", "Timeout"], failure.ok ? "" : failure.reason)
      }
      const servedBy = new Set(outcomes.flatMap((o) => o.ok && o.i % 2 === 0 ? [o.value] : []))
      assert.isTrue(servedBy.has(doomed.pid) && servedBy.has(survivor.pid), "both instances served calls")
      assert.strictEqual(yield* client.request("pid"), survivor.pid)
    }).pipe(Effect.scoped, Effect.provide(quiet)), 180_000)

  it.live("two worker processes answer $SRV.PING/INFO/STATS as two instances of one service; their counts move with calls", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      yield* worker(server.url)
      yield* worker(server.url)
      const broker = yield* NatsBroker.make({ servers: server.url, name: "discovery", timeout: "5 seconds", drainTimeout: "1 second" })
      const requestsOf = (instances: ReadonlyArray<NatsMicro.Instance>) =>
        instances.reduce((sum, i) =>
          sum + Option.match(i.stats, { onNone: () => 0, onSome: (s) => s.endpoints.find((e) => e.name === "call")?.num_requests ?? 0 }), 0)
      const before = yield* NatsMicro.discover(broker, "remote-test", { wait: "1 second" })
      assert.strictEqual(before.length, 2, JSON.stringify(before))
      assert.deepStrictEqual(before.map((i) => [i.name, i.version]), [["remote-test", "1.0.0"], ["remote-test", "1.0.0"]])
      assert.isTrue(before.every((i) => Option.isSome(i.info) && Option.isSome(i.stats)), "every instance answered INFO and STATS")
      assert.strictEqual(requestsOf(before), 0)
      const client = yield* natsClient(server.url)
      for (let i = 0; i < 20; i++) yield* client.request("echo", i)
      const after = yield* NatsMicro.discover(broker, "remote-test", { wait: "1 second" })
      assert.sameMembers(after.map((i) => i.id), before.map((i) => i.id))
      assert.strictEqual(requestsOf(after), 20)
      const everyService = yield* NatsMicro.discover(broker, undefined, { wait: "1 second" })
      assert.sameMembers(everyService.map((i) => i.id), before.map((i) => i.id), "a bare $SRV.PING finds them too")
    }).pipe(Effect.scoped, Effect.provide(quiet)), 60_000)

  it.live("a worker calls the host back, logs and notifies it across NATS", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const w = yield* worker(server.url)
      const notified = yield* Deferred.make<unknown>()
      const logs: Array<string> = []
      const client = yield* natsClient(server.url, {
        hostHandlers: { "host.add": (params) => Effect.succeed((params as [number, number])[0] + (params as [number, number])[1]) },
        onNotification: (notification) => Deferred.succeed(notified, notification.params).pipe(Effect.asVoid),
        onEvent: (event) => Effect.sync(() => event._tag === "Log" && void logs.push(event.message))
      })
      assert.strictEqual(yield* client.request("askHost", 41), 42)
      assert.strictEqual(yield* client.request("chatty"), "sent")
      assert.deepStrictEqual(yield* Deferred.await(notified).pipe(Effect.timeout("5 seconds")), { pid: w.pid })
      assert.isTrue(yield* Effect.promise(() => Effect.runPromise(eventually(() => logs.includes(`hello from ${w.pid}`), 5_000))))
    }).pipe(Effect.scoped, Effect.provide(quiet)), 60_000)

  it.live("progress and cancellation cross NATS; no instance at all is NoResponders naming the service", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const client = yield* natsClient(server.url)
      const nobody = yield* reasonOf(client.request("echo", 1))
      assert.deepStrictEqual(nobody, new PluginClientError.NoResponders({ service: "remote-test", subject: `${natsPrefix}.call` }))
      const w = yield* worker(server.url)
      const seen: Array<unknown> = []
      const done = yield* client.request("slow", {}, { onProgress: (value) => Effect.sync(() => void seen.push(value)) })
      assert.strictEqual(done, "slow done")
      assert.deepStrictEqual(seen, [{ progress: 1 }, { progress: 2 }, { progress: 3 }])
      const timedOut = yield* reasonOf(client.request("hang", "gave-up", { timeout: "500 millis" }))
      assert.strictEqual(timedOut._tag, "Timeout")
      yield* w.waitForStderr("interrupted gave-up", 5_000)
    }).pipe(Effect.scoped, Effect.provide(quiet)), 60_000)

  it.live("a manager hosts a [remote] manifest through RemotePlugin.natsBrokers, its servers from a named set in Config", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      yield* worker(server.url)
      const manifest = yield* PluginManifest.parse(
        `name = "remote"\nversion = "1.0.0"\nexecutable = "remote-worker.ts"\n[remote]\nsubject_prefix = "${natsPrefix}"\nservice = "remote-test"\nserver_set = "main"\n`,
        "/plugins/remote.toml"
      )
      const manager = yield* PluginManager.make({ brokers: RemotePlugin.natsBrokers() }).pipe(Effect.provide(InMemorySpawner.layer({})))
      yield* manager.register(manifest).pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnvRecord({ PLUGIN_HOST_NATS_SERVERS_MAIN: server.url }))
      )
      assert.strictEqual(yield* manager.call("remote", "echo", "through the manager"), "through the manager")
    }).pipe(Effect.scoped, Effect.provide(quiet)), 60_000)

  it.live("health watches a [remote] manifest's workers: two up is healthy (min 2), one SIGKILLed is degraded, none is failed", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const one = yield* worker(server.url)
      const two = yield* worker(server.url)
      const manifest = yield* PluginManifest.parse(
        `name = "remote"\nversion = "1.0.0"\nexecutable = "remote-worker.ts"\n[remote]\nsubject_prefix = "${natsPrefix}"\n` +
          `service = "remote-test"\nservers = ["${server.url}"]\nmin_instances = 2\n`,
        "/plugins/remote.toml"
      )
      const manager = yield* PluginManager.make({ brokers: RemotePlugin.natsBrokers() }).pipe(Effect.provide(InMemorySpawner.layer({})))
      const health = yield* PluginHealth.make({ groups: {}, remote: { poll: "250 millis", wait: "300 millis" } }).pipe(
        Effect.provideService(PluginManager.PluginManager, manager)
      )
      const states: Array<string> = []
      yield* (yield* health.subscribe).pipe(
        Stream.runForEach((event) => Effect.sync(() => event._tag === "GroupStateChanged" && void states.push(event.to))),
        Effect.forkScoped
      )
      yield* manager.register(manifest)
      /** Waits (real time, bounded) until the last poll saw the plugin in `state`; returns that check. */
      const reached = (state: string) =>
        Effect.gen(function*() {
          for (let i = 0; i < 100; i++) {
            const [check] = yield* health.remotes
            if (check?.state === state) return check
            yield* Effect.sleep("100 millis")
          }
          return yield* Effect.die(new Error(`never ${state}; seen: ${states.join(", ")}`))
        })
      assert.strictEqual((yield* reached("Healthy")).instances.length, 2)
      yield* one.kill("SIGKILL")
      yield* one.exited
      assert.strictEqual((yield* reached("Degraded")).message, "1 of 2 required instances")
      yield* two.kill("SIGKILL")
      yield* two.exited
      assert.strictEqual((yield* reached("Failed")).message, "no instance answers")
      assert.deepStrictEqual(states.filter((s, i) => s !== states[i - 1]).slice(-3), ["Healthy", "Degraded", "Failed"])
    }).pipe(Effect.scoped, Effect.provide(quiet)), 60_000)

  it.live("a server restart is ridden out: calls after it succeed", () =>
    Effect.gen(function*() {
      const first = yield* startNatsServer
      yield* worker(first.url)
      const client = yield* natsClient(first.url)
      assert.strictEqual(yield* client.request("echo", "before"), "before")
      yield* first.stop
      yield* startNatsServerAt(first.port)
      // The worker and the host reconnect on their own (and resubscribe); until then calls fail.
      let after: unknown = undefined
      for (let i = 0; i < 100 && after === undefined; i++) {
        after = yield* client.request("echo", "after", { timeout: "1 second" }).pipe(
          Effect.catch(() => Effect.as(Effect.sleep("200 millis"), undefined))
        )
      }
      assert.strictEqual(after, "after")
      assert.strictEqual(yield* client.request("echo", "again"), "again")
    }).pipe(Effect.scoped, Effect.provide(quiet)), 60_000)
})
