/**
 * Protocol negotiation, both ways: `initialize` carries the protocol version and each side's
 * capabilities; a major version the other side does not speak fails the start, naming both.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Handshake from "../src/Handshake.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { connected } from "./support/workerPair.ts"

describe("protocol negotiation (TestClock, in-memory)", () => {
  it.effect("the worker answers initialize with its protocol version and capabilities", () =>
    Effect.gen(function*() {
      const { peer } = yield* connected({ handlers: { echo: (params) => Effect.succeed(params) } })
      const result = yield* peer.request("initialize", { protocolVersion: "1.0", capabilities: {} })
      assert.deepStrictEqual(result, {
        ok: true,
        supportedMethods: ["echo"],
        protocolVersion: "1.0",
        capabilities: { cancellation: ["lsp", "mcp"], progress: true, notifications: true }
      })
    }).pipe(Effect.scoped))

  it.effect("the worker refuses a host that speaks another major version, naming both", () =>
    Effect.gen(function*() {
      const { peer } = yield* connected({ handlers: {} })
      const error = yield* peer.request("initialize", { protocolVersion: "2.0" }).pipe(Effect.flip)
      const reason = error.reason
      assert.instanceOf(reason, PluginClientError.PluginError)
      assert.include(reason.message, "1.0")
      assert.include(reason.message, "2.0")
    }).pipe(Effect.scoped))

  it.effect("the host refuses a plugin that answers another major version: the start fails with InitFailed naming both", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({ plugin: InMemorySpawner.echo({ initializeResult: { ok: true, protocolVersion: "2.1" } }) })
      const client = yield* PluginClient.make({ name: "future", executable: "plugin" }, { handshake: Handshake.initialize() }).pipe(
        Effect.provide(fake.layer)
      )
      const error = yield* client.start.pipe(Effect.flip)
      assert.instanceOf(error.reason, PluginClientError.InitFailed)
      assert.include(error.message, "protocol version mismatch")
      assert.include(error.message, "2.1")
      const spawns = yield* fake.spawns
      assert.deepStrictEqual(spawns.map((spawn) => spawn.running), [false], "the refused plugin was stopped")
    }).pipe(Effect.scoped))
})
