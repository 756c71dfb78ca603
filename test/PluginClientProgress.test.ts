import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginMethod from "../src/PluginMethod.ts"
import type * as RpcPeer from "../src/RpcPeer.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { fixture, launchers, liveWith, node } from "./support/processes.ts"

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const field = (value: unknown, key: string): unknown => typeof value === "object" && value !== null ? Reflect.get(value, key) : undefined

/**
 * A plugin whose `work {steps, fail?}` reports a progress every 1.5 s (MCP's
 * `notifications/progress` with the request's token), then answers `"done"` (or an error).
 */
const progressing: InMemorySpawner.Behaviour = (proc) =>
  proc.lines.pipe(
    Stream.runForEach((line) => {
      const message: unknown = JSON.parse(line)
      if (field(message, "method") !== "work") return Effect.void
      const params = field(message, "params")
      const token = field(field(params, "_meta"), "progressToken")
      const steps = Number(field(params, "steps"))
      const reply = field(params, "fail") === true
        ? { jsonrpc: "2.0", id: field(message, "id"), error: { code: -32000, message: "gave up" } }
        : { jsonrpc: "2.0", id: field(message, "id"), result: "done" }
      return Effect.gen(function*() {
        for (let i = 1; i <= steps; i++) {
          yield* Effect.sleep("1500 millis")
          yield* proc.write(JSON.stringify({ jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: token, progress: i, total: steps } }))
        }
        yield* proc.write(JSON.stringify(reply))
      }).pipe(Effect.forkChild, Effect.asVoid)
    }),
    Effect.as(0)
  )

const fakeClient = (policy?: LifetimePolicy.Input) =>
  Effect.gen(function*() {
    const fake = yield* InMemorySpawner.make({ plugin: progressing })
    const client = yield* PluginClient.make({ name: "fake", executable: "plugin" }, {
      policy: LifetimePolicy.makeUnsafe({ ...policy })
    }).pipe(Effect.provide(fake.layer))
    return { fake, client }
  })

const progress = (value: unknown): RpcPeer.CallUpdate<never> => ({ _tag: "Progress", value })

describe("PluginClient.requestWithProgress (TestClock, in-memory spawner)", () => {
  it.effect("streams each progress as it comes, then the result, past a timeout that progress keeps extending", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient()
      const seen: Array<RpcPeer.CallUpdate<unknown>> = []
      const fiber = yield* client.requestWithProgress("work", { steps: 3 }, { timeout: "2 seconds" }).pipe(
        Stream.runForEach((update) => Effect.sync(() => seen.push(update))),
        Effect.forkChild
      )
      yield* settle
      assert.deepStrictEqual(seen, [])
      yield* TestClock.adjust("1500 millis")
      yield* settle
      assert.deepStrictEqual(seen, [progress({ progress: 1, total: 3 })])
      // 4.5 s in all, under a 2 s timeout: each progress gave the call 2 s more.
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(seen, [
        progress({ progress: 1, total: 3 }),
        progress({ progress: 2, total: 3 }),
        progress({ progress: 3, total: 3 }),
        { _tag: "Result", value: "done" }
      ])
    }))

  it.effect("a call that fails fails the stream after the progress it reported", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient()
      const seen: Array<RpcPeer.CallUpdate<unknown>> = []
      const fiber = yield* client.requestWithProgress("work", { steps: 1, fail: true }).pipe(
        Stream.runForEach((update) => Effect.sync(() => seen.push(update))),
        Effect.flip,
        Effect.forkChild
      )
      yield* settle
      yield* TestClock.adjust("1500 millis")
      const error = yield* Fiber.join(fiber)
      assert.instanceOf(error.reason, PluginClientError.PluginError)
      assert.deepStrictEqual(seen, [progress({ progress: 1, total: 1 })])
    }))

  it.effect("without progress before the timeout, the stream fails with Timeout", () =>
    Effect.gen(function*() {
      const { client } = yield* fakeClient()
      const fiber = yield* client.requestWithProgress("work", { steps: 1 }, { timeout: "1 second" }).pipe(
        Stream.runCollect,
        Effect.flip,
        Effect.forkChild
      )
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.instanceOf((yield* Fiber.join(fiber)).reason, PluginClientError.Timeout)
    }))

  it.effect("a consumer that stops after the first progress cancels the call at the plugin", () =>
    Effect.gen(function*() {
      const { fake, client } = yield* fakeClient({ cancellation: "mcp" })
      const fiber = yield* client.requestWithProgress("work", { steps: 3 }).pipe(Stream.take(1), Stream.runCollect, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1500 millis")
      assert.deepStrictEqual(yield* Fiber.join(fiber), [progress({ progress: 1, total: 3 })])
      yield* settle
      const lines = ((yield* fake.spawns)[0]?.stdinLines ?? []).map((line) => JSON.parse(line))
      assert.deepStrictEqual(lines.map((line) => line.method), ["work", "notifications/cancelled"])
      assert.strictEqual(lines[1].params.requestId, lines[0].id)
      assert.strictEqual((yield* client.health).pendingRequests, 0)
    }))
})

const Steps = PluginMethod.make("steps", {
  params: Schema.Struct({ count: Schema.Int, everyMs: Schema.Int }),
  result: Schema.Literal("done")
})

for (const launcher of launchers) {
  describe(`PluginClient.callWithProgress (real processes, ${launcher.name} launcher)`, () => {
    it.live("streams the worker's progress reports, then its typed result", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make({ name: "cancel", executable: node, args: [fixture("cancel-worker.ts")] }, {
          policy: LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds", drainTimeout: "1 second" })
        })
        const updates = yield* client.callWithProgress(Steps, { count: 3, everyMs: 50 }, { timeout: "10 seconds" }).pipe(Stream.runCollect)
        assert.deepStrictEqual(updates, [
          progress({ progress: 1, total: 3 }),
          progress({ progress: 2, total: 3 }),
          progress({ progress: 3, total: 3 }),
          { _tag: "Result", value: "done" }
        ])
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))))
  })
}
