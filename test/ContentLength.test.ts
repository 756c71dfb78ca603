import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { TestClock } from "effect/testing"
import * as Queue from "effect/Queue"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginManager from "../src/PluginManager.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { fixture, launchers, liveWith, node } from "./support/processes.ts"

const lspPeer = { name: "lsp", executable: node, args: [fixture("lsp-peer.mjs")] }
const framedPolicy = (input?: LifetimePolicy.Input) =>
  LifetimePolicy.makeUnsafe({ framing: "content-length", shutdownGrace: "2 seconds", drainTimeout: "1 second", ...input })

/** A client of the Content-Length peer whose notifications land in a queue. */
const peerClient = (options?: PluginClient.Options, policy?: LifetimePolicy.Input) =>
  Effect.gen(function*() {
    const notifications = yield* Queue.unbounded<JsonRpc.Notification>()
    const client = yield* PluginClient.make(lspPeer, {
      policy: framedPolicy(policy),
      hostHandlers: { "host/greet": (params) => Effect.succeed({ hello: params }) },
      onNotification: (notification) => Effect.asVoid(Queue.offer(notifications, notification)),
      ...options
    })
    return { client, notifications }
  })

const malformedDetail = (error: PluginClientError.PluginClientError): string => {
  assert.strictEqual(error.plugin, "lsp")
  assert.instanceOf(error.reason, PluginClientError.MalformedResponse)
  return error.reason._tag === "MalformedResponse" ? error.reason.detail : ""
}

for (const launcher of launchers) {
  describe(`Content-Length framing (real processes, ${launcher.name} launcher)`, () => {
    it.live("hosts a Content-Length peer: calls both ways, notifications both ways, multi-byte bodies", () =>
      Effect.gen(function*() {
        const { client, notifications } = yield* peerClient()
        const init = yield* client.request("initialize", { processId: null, capabilities: {} })
        assert.deepStrictEqual(init, { capabilities: { hoverProvider: true }, serverInfo: { name: "lsp-peer" } })
        assert.deepStrictEqual(yield* client.request("echo", { text: "é€😀\r\n" }), { text: "é€😀\r\n" })
        // Many calls at once: the host batches them into one write, the peer answers split.
        const many = yield* Effect.all(Array.from({ length: 40 }, (_, i) => client.request("echo", i)), { concurrency: "unbounded" })
        assert.deepStrictEqual(many, Array.from({ length: 40 }, (_, i) => i))
        assert.deepStrictEqual(yield* client.request("askHost", { who: "peer" }), { fromHost: { hello: { who: "peer" } } })
        assert.strictEqual(yield* client.request("notifyMe"), "notified")
        const logged = yield* Queue.take(notifications)
        assert.deepStrictEqual([logged.method, logged.params], ["window/logMessage", { type: 3, message: "from the peer: é€😀" }])
        yield* client.notify("workspace/didChangeConfiguration", { settings: { a: 1 } })
        const seen = yield* Queue.take(notifications)
        assert.deepStrictEqual(seen.params, { method: "workspace/didChangeConfiguration", params: { settings: { a: 1 } } })
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))))

    it.live("a malformed header ends the connection with a typed error naming the plugin; the next call gets a new process", () =>
      Effect.gen(function*() {
        const { client } = yield* peerClient()
        const firstPid = (yield* client.health).pid
        const error = yield* client.request("sendMalformed").pipe(Effect.flip)
        assert.include(malformedDetail(error), "malformed Content-Length header: Content-Length is not a byte count")
        assert.deepStrictEqual(yield* client.request("echo", "again"), "again")
        assert.notStrictEqual((yield* client.health).pid, firstPid)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))))

    it.live("a body over maxLineBytes ends the connection with a typed error; one within it is read", () =>
      Effect.gen(function*() {
        const { client } = yield* peerClient(undefined, { maxLineBytes: 2048 })
        assert.strictEqual(String(yield* client.request("sendHuge", { bytes: 1500 })).length, 1500)
        const error = yield* client.request("sendHuge", { bytes: 4096 }).pipe(Effect.flip)
        assert.match(malformedDetail(error), /message body of \d+ bytes longer than maxLineBytes \(2048 bytes\)/)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))))

    it.live("a manifest declaring content-length framing and LSP cancellation: a timed-out call is cancelled with $/cancelRequest", () =>
      Effect.gen(function*() {
        const cancelled = yield* Deferred.make<unknown>()
        const manager = yield* PluginManager.make()
        const manifest = PluginManifest.make({ ...lspPeer, version: "1", framing: "content-length", cancellation: "lsp" })
        yield* manager.register(manifest, {
          // The host's policy says NDJSON and no cancellation: the manifest's wire wins.
          policy: LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds", drainTimeout: "1 second" }),
          onNotification: (n) => n.method === "cancelled" ? Deferred.succeed(cancelled, n.params).pipe(Effect.asVoid) : Effect.void
        })
        assert.strictEqual(yield* manager.call("lsp", "echo", "hi"), "hi")
        const error = yield* manager.call("lsp", "hang", {}, { timeout: "300 millis" }).pipe(Effect.flip)
        assert.strictEqual(error._tag === "PluginClientError" ? error.reason._tag : error._tag, "Timeout")
        const params = yield* Deferred.await(cancelled).pipe(Effect.timeout("5 seconds"))
        assert.deepStrictEqual(params, { id: 2 })
        const client = yield* manager.get("lsp")
        assert.strictEqual(yield* client.request("echo", "still up"), "still up")
        const [diagnosis] = yield* manager.diagnostics
        assert.include(diagnosis?.envVarNames ?? [], "PLUGIN_HOST_FRAMING", "the doctor lists the variable the host passes")
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))))

    it.live("a worker on the SDK hosted with content-length framing speaks it (PLUGIN_HOST_FRAMING), calls back into the host", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make({ name: "echo", executable: node, args: [fixture("echo-worker.ts")] }, {
          policy: framedPolicy(),
          hostHandlers: {
            "host.add": (params) =>
              Effect.succeed(Array.isArray(params) ? params.reduce((sum: number, n) => sum + Number(n), 0) : 0)
          }
        })
        assert.deepStrictEqual(yield* client.request("echo", { deep: ["é€😀", 1] }), { deep: ["é€😀", 1] })
        assert.strictEqual(yield* client.request("askHost", [1, 2, 3]), 6)
        assert.strictEqual(yield* client.request("logSomething"), "logged")
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))))
  })
}

describe("Content-Length framing (TestClock, in-memory spawner)", () => {
  it.effect("the fake plugin reads and writes framed messages; a call's timeout holds to the millisecond", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.echo() })
      const client = yield* PluginClient.make({ name: "framed", executable: "plugin" }, {
        policy: LifetimePolicy.makeUnsafe({ framing: "content-length", requestTimeout: "3 seconds" })
      }).pipe(Effect.provide(fake.layer))
      assert.strictEqual(yield* client.request("echo", "é€"), "é€")
      const late = yield* client.request("sleep", { ms: 3_001, value: 1 }).pipe(Effect.flip, Effect.forkChild)
      const inTime = yield* client.request("sleep", { ms: 2_999, value: 2 }).pipe(Effect.forkChild)
      // Let both requests reach the plugin, and its sleeps start, before time moves.
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow
      yield* TestClock.adjust("2999 millis")
      assert.strictEqual(yield* Fiber.join(inTime), 2)
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(late)
      assert.strictEqual(error.reason._tag, "Timeout")
      const [spawn] = yield* fake.spawns
      assert.strictEqual(spawn?.env["PLUGIN_HOST_FRAMING"], "content-length")
      // The plugin saw messages, never a header line.
      assert.isTrue((spawn?.stdinLines ?? []).length >= 3)
      assert.isTrue((spawn?.stdinLines ?? []).every((line) => line.startsWith("{")), "only JSON messages reached the plugin")
    }).pipe(Effect.scoped))
})

describe("the worker SDK's framing", () => {
  it("a worker told an unknown framing in PLUGIN_HOST_FRAMING exits 1 naming the variable, instead of guessing", () => {
    const result = spawnSync(node, [fixture("echo-worker.ts")], {
      input: "",
      encoding: "utf8",
      timeout: 15_000,
      env: { ...process.env, PLUGIN_HOST_FRAMING: "lines" }
    })
    assert.strictEqual(result.status, 1)
    assert.include(result.stderr, "PLUGIN_HOST_FRAMING")
    assert.include(result.stderr, "\"ndjson\" | \"content-length\"")
  })
})
