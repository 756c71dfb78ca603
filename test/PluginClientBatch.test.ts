/**
 * A broken connection is a crash, not a stop: a write the plugin refuses (its stdin closed or
 * the process died) ends the incarnation with the end's own reason (`Exited` with the stderr
 * excerpt, or `Io`), never `Closed`, which only means the host stopped it; and a batch that
 * outlives one crash loses only the calls in flight at the crash.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as RpcPeer from "../src/RpcPeer.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { eventually, fixture, live, liveChildren, node } from "./support/processes.ts"

/** A transport that takes `accepted` lines, then refuses every write; it ends when the test says. */
const refusing = (accepted: number) => {
  const gone = Deferred.makeUnsafe<RpcPeer.EndReason>()
  const written: Array<string> = []
  let offered = 0
  const transport: RpcPeer.Transport = {
    name: "refusing",
    // No output to drain: the end breaks the connection as soon as it is known.
    incoming: Stream.empty,
    writeLine: (line) => {
      offered++
      if (written.length >= accepted) return false
      written.push(JSON.parse(line).method)
      return true
    },
    closed: Deferred.await(gone)
  }
  return { transport, written, offered: () => offered, end: (reason: PluginClientError.Reason) => Deferred.succeed(gone, reason) }
}

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

describe("RpcPeer: a refused write", () => {
  it.effect("waits for the connection's end and fails with its reason (the exit and stderr), not Closed; later lines are not tried", () =>
    Effect.gen(function*() {
      const t = refusing(1)
      const peer = yield* RpcPeer.make(t.transport)
      const first = yield* peer.request("first").pipe(Effect.flip, Effect.forkChild)
      const refused = yield* peer.request("refused").pipe(Effect.flip, Effect.forkChild)
      const notified = yield* peer.notify("note").pipe(Effect.flip, Effect.forkChild)
      const later = yield* peer.request("later").pipe(Effect.flip, Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(t.written, ["first"])
      assert.strictEqual(t.offered(), 2, "after one refusal, nothing more is offered to the transport")
      for (const fiber of [first, refused, notified, later]) assert.isUndefined(fiber.pollUnsafe(), "nothing fails before the end is known")
      yield* t.end(new PluginClientError.Exited({ code: 3, signal: null, requested: false, stderrExcerpt: "panic: out of disk" }))
      for (const fiber of [first, refused, notified, later]) {
        const error = yield* Fiber.join(fiber)
        assert.strictEqual(error.plugin, "refusing")
        assert.instanceOf(error.reason, PluginClientError.Exited)
        assert.include(error.message, "panic: out of disk")
      }
      assert.strictEqual(yield* peer.pending, 0)
    }).pipe(Effect.scoped))

  it.effect("a broken input without an exit fails them with Io", () =>
    Effect.gen(function*() {
      const t = refusing(0)
      const peer = yield* RpcPeer.make(t.transport)
      const call = yield* peer.request("x").pipe(Effect.flip, Effect.forkChild)
      yield* settle
      assert.isUndefined(call.pollUnsafe())
      yield* t.end(new PluginClientError.Io({ detail: "writing stdin failed: EPIPE" }))
      assert.instanceOf((yield* Fiber.join(call)).reason, PluginClientError.Io)
    }).pipe(Effect.scoped))
})

describe("PluginClient: a dead plugin under a caller's loop (TestClock, in-memory spawner)", () => {
  it.effect("calls after the crash never fail with Closed: the crash is recorded once and the next calls respawn (lazy)", () =>
    Effect.gen(function*() {
      const fake = yield* InMemorySpawner.make({
        plugin: InMemorySpawner.sequence(InMemorySpawner.crashMidCall({ afterCalls: 1, code: 70, stderr: "segfault\n" }), InMemorySpawner.echo())
      })
      const client = yield* PluginClient.make({ name: "fake", executable: "plugin" }).pipe(Effect.provide(fake.layer))
      assert.strictEqual(yield* client.request("echo", 0), 0)
      const failures: Array<PluginClientError.PluginClientError> = []
      let ok = 0
      // A tight loop: the second call kills the plugin, the next ones are written into its dead stdin.
      const loop = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => client.request("echo", i).pipe(Effect.match({ onSuccess: () => void ok++, onFailure: (e) => void failures.push(e) })),
        { discard: true }
      ).pipe(Effect.forkChild)
      for (let i = 0; i < 10 && loop.pollUnsafe() === undefined; i++) {
        yield* settle
        yield* TestClock.adjust("100 millis")
      }
      yield* Fiber.join(loop)
      assert.deepStrictEqual(failures.map((e) => e.reason._tag), ["Exited"], failures.map((e) => e.message).join("\n"))
      assert.include(failures[0]!.message, "segfault")
      assert.strictEqual(ok, 199)
      const health = yield* client.health
      assert.strictEqual(health.totalCrashes, 1)
      assert.strictEqual(health.spawns, 2)
    }))
})

describe("PluginClient: one crash in a batch (real processes)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 5_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  it.live("a plugin that exits in the middle of 20k calls (concurrency 64) fails only the calls in flight; the crash is recorded and the next calls respawn it", () =>
    Effect.gen(function*() {
      const total = 20_000
      const crashAt = total / 2
      const client = yield* PluginClient.make({ name: "rpc", executable: node, args: [fixture("rpc-plugin.mjs")] })
      const failures: Array<PluginClientError.PluginClientError> = []
      let ok = 0
      const started = performance.now()
      yield* Effect.forEach(
        Array.from({ length: total }, (_, i) => i),
        (i) =>
          (i === crashAt ? client.request("crash", { code: 3, stderr: "boom: mid-batch\n" }) : client.request("echo", i)).pipe(
            Effect.match({ onSuccess: () => void ok++, onFailure: (error) => void failures.push(error) })
          ),
        { concurrency: 64, discard: true }
      )
      const elapsed = performance.now() - started
      assert.isAtLeast(ok, total * 0.99, `${total - ok} of ${total} calls failed`)
      // Only calls in flight at the crash (at most the 64 slots) fail, each with the exit.
      assert.isAtMost(failures.length, 64)
      for (const error of failures) {
        assert.strictEqual(error.plugin, "rpc")
        assert.instanceOf(error.reason, PluginClientError.Exited, error.message)
        assert.include(error.message, "boom: mid-batch")
      }
      const health = yield* client.health
      assert.strictEqual(health.totalCrashes, 1)
      assert.strictEqual(health.spawns, 2)
      assert.strictEqual(health.state._tag, "Running")
      // Generous: the batch takes well under ten seconds on a loaded machine.
      assert.isBelow(elapsed, 60_000)
    }).pipe(Effect.scoped, Effect.provide(live)), 120_000)
})
