/**
 * The seed systems' exact wire formats, each against a fixture written to that system's
 * documentation (real processes): devboy secret sources, Paperclip workers, nexo pollers
 * (ephemeral, and long-lived over a real nats-server).
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as Broker from "../src/Broker.ts"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as NatsBroker from "../src/NatsBroker.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import * as Poller from "../src/Poller.ts"
import * as PollerRouter from "../src/PollerRouter.ts"
import { skipNats, spawnNode, startNatsServer } from "./support/nats.ts"
import { eventually, fixture, live, liveChildren, node } from "./support/processes.ts"
import { bytes, text, tickInput } from "./support/ticks.ts"

/** Every log line at any level, with its level and annotations. */
const captureLogs = () => {
  const lines: Array<{ level: string; message: string; stream: unknown; plugin: unknown }> = []
  const logger = Logger.make(({ fiber, logLevel, message }) => {
    const annotations = fiber.getRef(References.CurrentLogAnnotations)
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    lines.push({ level: logLevel, message: text, stream: annotations.stream, plugin: annotations.plugin })
  })
  const layer = Layer.merge(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, "All"))
  return { lines, layer }
}

afterEach(async () => {
  const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 5_000))
  assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
})

describe("devboy dialect: secret_source.init (real process)", () => {
  const source = { name: "echo", executable: "python3", args: [fixture("devboy-source-echo.py")] }
  const serial = LifetimePolicy.makeUnsafe({ ...LifetimePolicy.defaultPolicy, maxConcurrentRequests: 1 })

  it.live("a plugin written to devboy's guide accepts the preset: source_name, config and protocol_version 1.0", () =>
    Effect.gen(function*() {
      const client = yield* PluginClient.make(source, {
        policy: serial,
        handshake: Handshake.secretSource({ address: "https://vault.invalid" })
      })
      assert.deepStrictEqual(yield* client.request("secret_source.get", { reference: "team/api-key" }), { value: "echo:team/api-key" })
      const health = yield* client.health
      assert.include(health.stderrExcerpt, "init source_name=echo protocol_version=1.0 config={\"address\": \"https://vault.invalid\"}")
      yield* client.shutdown
    }).pipe(Effect.scoped, Effect.provide(live)))

  it.live("the source name can differ from the plugin's name", () =>
    Effect.gen(function*() {
      const client = yield* PluginClient.make(source, { policy: serial, handshake: Handshake.secretSource(undefined, { sourceName: "team-vault" }) })
      assert.deepStrictEqual(yield* client.request("secret_source.is_available"), { status: "available", detail: null })
      assert.include((yield* client.health).stderrExcerpt, "init source_name=team-vault protocol_version=1.0 config={}")
      yield* client.shutdown
    }).pipe(Effect.scoped, Effect.provide(live)))

  it.live("the old params (config only) are refused by the same plugin: the fixture really checks", () =>
    Effect.gen(function*() {
      const client = yield* PluginClient.make(source, {
        policy: serial,
        handshake: Handshake.make({ method: "secret_source.init", params: { config: {} } })
      })
      const error = yield* client.request("secret_source.get", { reference: "x" }).pipe(Effect.flip)
      assert.strictEqual(error.reason._tag, "InitFailed")
      assert.include(error.message, "missing source_name")
      yield* client.shutdown
    }).pipe(Effect.scoped, Effect.provide(live)))
})

describe("Paperclip dialect: initialize params, stderr at warn (real process)", () => {
  const worker = { name: "linear-sync", version: "2.3.0", executable: node, args: [fixture("paperclip-worker.mjs")] }
  const eager = LifetimePolicy.makeUnsafe({ ...LifetimePolicy.alwaysOn, shutdownGrace: "1 second", drainTimeout: "1 second" })

  it.live("the manager's default handshake sends {manifest, config, instanceInfo, apiVersion}; stderr is logged at Warn", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const manager = yield* PluginManager.PluginManager
      yield* manager.register(worker, { policy: eager })
      yield* manager.start("linear-sync")
      const params = yield* manager.call("linear-sync", "getData", { key: "initialize-params", params: {} })
      assert.deepStrictEqual(params, {
        manifest: {
          id: "linear-sync",
          apiVersion: 1,
          version: "2.3.0",
          displayName: "linear-sync",
          entrypoints: { worker: node }
        },
        config: {},
        instanceInfo: (params as { instanceInfo: Handshake.InstanceInfo }).instanceInfo,
        apiVersion: 1
      })
      const info = (params as { instanceInfo: Handshake.InstanceInfo }).instanceInfo
      assert.match(info.instanceId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
      assert.strictEqual(info.hostVersion, "0.1.0")
      assert.deepStrictEqual((yield* manager.get("linear-sync").pipe(Effect.flatMap((c) => c.health))).supportedMethods, ["health", "shutdown"])
      assert.isTrue(yield* eventually(() => logs.lines.some((l) => l.message.includes("initialized linear-sync"))))
      const stderr = logs.lines.filter((l) => l.stream === "stderr")
      assert.deepStrictEqual(stderr.map((l) => [l.level, l.message]), [["Warn", "paperclip-worker booting"], ["Warn", "initialized linear-sync"]])
      yield* manager.stop("linear-sync")
    }).pipe(Effect.provide(PluginManager.layer()), Effect.provide(logs.layer), Effect.provide(live))
  })

  it.live("the preset takes its own manifest, config and instance info; stderrLogLevel overrides Warn", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const instanceInfo = { instanceId: "00000000-0000-4000-8000-000000000001", hostVersion: "9.9.9" }
      const client = yield* PluginClient.make(worker, {
        handshake: Handshake.paperclip({ manifest: { id: "acme.linear" }, config: { team: "core" }, instanceInfo, apiVersion: 2 }),
        stderrLogLevel: "Info"
      })
      assert.deepStrictEqual(yield* client.request("getData", { key: "initialize-params", params: {} }), {
        manifest: { id: "acme.linear" },
        config: { team: "core" },
        instanceInfo,
        apiVersion: 2
      })
      assert.isTrue(yield* eventually(() => logs.lines.some((l) => l.message === "initialized acme.linear")))
      assert.deepStrictEqual([...new Set(logs.lines.filter((l) => l.stream === "stderr").map((l) => l.level))], ["Info"])
      yield* client.shutdown
    }).pipe(Effect.scoped, Effect.provide(logs.layer), Effect.provide(live))
  })

  it.live("the worker SDK's bare initialize (no params) fails against a Paperclip worker, as it did before", () =>
    Effect.gen(function*() {
      const client = yield* PluginClient.make(worker, { handshake: Handshake.initialize() })
      const error = yield* client.request("health").pipe(Effect.flip)
      assert.strictEqual(error.reason._tag, "InitFailed")
      yield* client.shutdown
    }).pipe(Effect.scoped, Effect.provide(Logger.layer([])), Effect.provide(live)))

  it.live("a generic client still logs stderr at Debug", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* PluginClient.make(worker)
      assert.deepStrictEqual(yield* client.request("health"), { status: "ok" })
      assert.isTrue(yield* eventually(() => logs.lines.some((l) => l.stream === "stderr")))
      assert.deepStrictEqual([...new Set(logs.lines.filter((l) => l.stream === "stderr").map((l) => l.level))], ["Debug"])
      yield* client.shutdown
    }).pipe(Effect.scoped, Effect.provide(logs.layer), Effect.provide(live))
  })
})

describe("nexo dialect: ephemeral pollers (real processes)", () => {
  const manifest = PluginManifest.make({
    name: "rss",
    version: "1.0.0",
    executable: "python3",
    args: [fixture("nexo-ephemeral-poller.py")],
    poller: { kinds: ["rss"], lifecycle: "ephemeral", maxConcurrentTicks: 1, tickTimeout: Duration.seconds(10) }
  })

  it.live("an existing nexo poller runs unchanged: NEXO_POLLER_* variables and the poll_tick envelope", () =>
    Effect.gen(function*() {
      const router = yield* PollerRouter.make
      yield* router.register(manifest, { hostEnv: {} })
      const ack = yield* router.tick("rss", tickInput({}, bytes("page-2")))
      assert.strictEqual(text(ack.nextCursor), "rss|job-1|page-2+")
      assert.strictEqual(Duration.toSeconds(ack.nextIntervalHint ?? Duration.zero), 60)
      assert.deepStrictEqual(ack.metrics, { itemsSeen: 1, itemsDispatched: 1 })
      const error = yield* router.tick("rss", tickInput({ fail: "permanent" })).pipe(Effect.flip)
      assert.instanceOf(error.reason, Poller.Permanent)
    }).pipe(Effect.provide(live)))

  it.live("the jsonrpc dialect (POLLER_* names) does not start a nexo poller in ephemeral mode", () =>
    Effect.gen(function*() {
      const router = yield* PollerRouter.make
      yield* router.register(manifest, { hostEnv: {}, dialect: "jsonrpc" })
      const error = yield* router.tick("rss", tickInput()).pipe(Effect.flip)
      assert.instanceOf(error.reason, Poller.Transient)
      assert.include(error.message, "NEXO_POLLER_EPHEMERAL is not 1")
    }).pipe(Effect.provide(live)))
})

describe.skipIf(skipNats)("nexo dialect: long-lived pollers over NATS (real nats-server and poller)", () => {
  const calendar = PluginManifest.make({
    name: "calendar",
    version: "1.0.0",
    executable: "/not/spawned/over/a/broker",
    poller: {
      kinds: ["calendar"],
      lifecycle: "long_lived",
      brokerTopicPrefix: "plugin.poller.calendar",
      maxConcurrentTicks: 1,
      tickTimeout: Duration.seconds(5)
    }
  })

  it.live("the broker payload is nexo's {method, params} envelope, so a nexo poller answers it", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const poller = yield* spawnNode(fixture("nexo-broker-poller.mjs"), { NATS_URL: server.url, POLLER_PREFIX: "plugin.poller.calendar" })
      yield* poller.waitForStderr("subscribed", 10_000)
      const broker = yield* NatsBroker.make({ servers: server.url })
      const router = yield* PollerRouter.make.pipe(Effect.provideService(Broker.Broker, broker))
      yield* router.register(calendar)
      const ack = yield* router.tick("calendar", tickInput({}, bytes("evt-8")))
      assert.strictEqual(text(ack.nextCursor), "job-1|evt-8+")
      assert.deepStrictEqual(ack.metrics, { itemsSeen: 2, itemsDispatched: 2 })
      const permanent = yield* router.tick("calendar", tickInput({ fail: "permanent" })).pipe(Effect.flip)
      assert.instanceOf(permanent.reason, Poller.Permanent)

      yield* router.register(calendar, { dialect: "jsonrpc" })
      const bare = yield* router.tick("calendar", tickInput()).pipe(Effect.flip)
      assert.instanceOf(bare.reason, Poller.Config, "bare params are not nexo's envelope: the poller says malformed")
      assert.include(bare.message, "malformed TickRequest")
    }).pipe(Effect.scoped, Effect.provide(Logger.layer([])), Effect.provide(live)))
})
