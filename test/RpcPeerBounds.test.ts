/**
 * The connection's memory is bounded by bytes in both directions: what is queued for a plugin
 * that does not read (notifications refused, calls waiting for room within their timeout, unread
 * replies ending the connection), and notifications waiting for a slow handler (dropped and
 * counted), while a handler that keeps up receives every notification of a flood.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import * as RpcPeer from "../src/RpcPeer.ts"
import { eventually, fixture, launchers, liveChildren, liveWith, node } from "./support/processes.ts"

const reasonOf = (error: PluginClientError.PluginClientError) => error.reason
const KiB = 1024
const MiB = 1024 * KiB

const rpcPlugin = (args: ReadonlyArray<string>, options?: RpcPeer.Options) =>
  Effect.gen(function*() {
    const proc = yield* PluginProcess.make({ name: "rpc", executable: node, args: [fixture("rpc-plugin.mjs"), ...args] }, { shutdownGrace: "1 second" })
    const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc), options)
    return { proc, peer }
  })

for (const launcher of launchers) {
  describe(`RpcPeer bounded by bytes (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    it.live("notifications to a plugin that never reads fail with Backpressure once maxQueuedBytes are queued, and the queue stays under it", () =>
      Effect.gen(function*() {
        const cap = 1 * MiB
        const { peer, proc } = yield* rpcPlugin(["--no-read"], { maxQueuedBytes: cap })
        const payload = "x".repeat(64 * KiB)
        let sent = 0
        let refused: PluginClientError.Reason | undefined
        let highest = 0
        const rssBefore = process.memoryUsage().rss
        // 2 000 × 64 KiB = 125 MiB offered: without the cap all of it would sit in the host.
        for (let i = 0; i < 2_000; i++) {
          const result = yield* Effect.result(peer.notify("n", payload))
          if (result._tag === "Success") sent++
          else refused ??= reasonOf(result.failure)
          highest = Math.max(highest, proc.queuedInputBytes())
          if (i % 100 === 0) yield* Effect.sleep("1 millis")
        }
        assert.instanceOf(refused, PluginClientError.Backpressure)
        assert.strictEqual(refused.limit, cap)
        assert.isAtMost(highest, cap)
        // What the cap allows, plus what the pipe took (64 KiB on Linux, a little more in flight).
        assert.isAtMost(sent, cap / (64 * KiB) + 4)
        const stats = yield* peer.stats
        assert.strictEqual(stats.notificationsRefused, 2_000 - sent)
        assert.isAtMost(stats.queuedBytes, cap)
        assert.isBelow(process.memoryUsage().rss - rssBefore, 64 * MiB)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 30_000)

    it.live("a plugin that sends requests and never reads the replies loses its connection with Backpressure", () =>
      Effect.gen(function*() {
        const cap = 1 * MiB
        const { peer, proc } = yield* rpcPlugin(["--no-read", "--flood-requests=100000", "--flood-bytes=65536"], {
          maxQueuedBytes: cap,
          hostHandlers: { flood: (params) => Effect.succeed("x".repeat((params as { bytes: number }).bytes)) }
        })
        const reason = yield* peer.closed.pipe(Effect.timeout("20 seconds"))
        assert.instanceOf(reason, PluginClientError.Backpressure)
        assert.strictEqual(reason.limit, 2 * cap, "replies may take the queue to twice the cap")
        assert.isAtMost(proc.queuedInputBytes(), 2 * cap)
        // Nothing more is written for it: the queue does not grow while it keeps asking.
        const after = proc.queuedInputBytes()
        yield* Effect.sleep("300 millis")
        assert.strictEqual(proc.queuedInputBytes(), after)
        assert.instanceOf(reasonOf(yield* peer.request("echo", 1).pipe(Effect.flip)), PluginClientError.Backpressure)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 30_000)

    it.live("a handler that returns at once receives every notification of a 100k flood", () =>
      Effect.gen(function*() {
        let handled = 0
        let inOrder = true
        const { peer } = yield* rpcPlugin([], {
          onNotification: (n) =>
            Effect.sync(() => {
              const { n: index } = n.params as { n: number }
              if (index !== handled + 1) inOrder = false
              handled++
            })
        })
        const count = 100_000
        assert.deepStrictEqual(yield* peer.request("flood", { count, bytes: 0 }, { timeout: "60 seconds" }), { sent: count })
        assert.isTrue(yield* eventually(() => handled === count, 5_000), `handled ${handled} of ${count}`)
        assert.isTrue(inOrder)
        assert.strictEqual((yield* peer.stats).notificationsDropped, 0)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 60_000)

    it.live("notifications waiting for a stuck handler stay under maxQueuedNotificationBytes; the rest are dropped and counted", () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        let handled = 0
        const cap = 1 * MiB
        const { peer } = yield* rpcPlugin([], {
          maxQueuedNotificationBytes: cap,
          onNotification: () => Deferred.await(gate).pipe(Effect.andThen(Effect.sync(() => void handled++)))
        })
        // 300 × 100 KB: about 10 fit behind the first, stuck one.
        yield* peer.request("flood", { count: 300, bytes: 100_000 }, { timeout: "60 seconds" })
        const stats = yield* peer.stats
        assert.isAtMost(stats.queuedNotificationBytes, cap)
        assert.isAtLeast(stats.notificationsDropped, 300 - 1 - Math.ceil(cap / 100_000))
        assert.strictEqual(stats.notificationsReceived, 300)
        yield* Deferred.succeed(gate, undefined)
        const delivered = 300 - stats.notificationsDropped
        assert.isTrue(yield* eventually(() => handled === delivered), `handled ${handled} of ${delivered}`)
        assert.strictEqual((yield* peer.stats).queuedNotificationBytes, 0)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 30_000)
  })
}

describe("RpcPeer bounded by bytes (TestClock, a transport whose reader the test controls)", () => {
  /**
   * A transport that counts what is written as queued until the test says the other side read
   * it (`read`), and delivers the lines the test pushes as the other side's output.
   */
  const metered = Effect.gen(function*() {
    const output = yield* Queue.unbounded<Uint8Array>()
    const written: Array<{ readonly method?: string; readonly id?: number }> = []
    let queued = 0
    let listener: (() => void) | undefined
    const transport: RpcPeer.Transport = {
      name: "metered",
      incoming: Stream.fromQueue(output),
      writeLine: (line) => {
        written.push(JSON.parse(line))
        queued += line.length + 1
        return true
      },
      queuedBytes: () => queued,
      listenWritten: (onWritten) => Effect.sync(() => void (listener = onWritten)),
      closed: Effect.never
    }
    const read = () => {
      queued = 0
      listener?.()
    }
    const reply = (id: number, result: unknown) =>
      Queue.offer(output, new TextEncoder().encode(JSON.stringify({ jsonrpc: "2.0", id, result }) + "\n"))
    return { transport, written, read, reply, queued: () => queued }
  })
  const settle = Effect.gen(function*() {
    for (let i = 0; i < 50; i++) yield* Effect.yieldNow
  })
  const big = "x".repeat(900)

  it.effect("a call waits for room within its own timeout and is sent, in order, once the other side reads", () =>
    Effect.gen(function*() {
      const t = yield* metered
      const peer = yield* RpcPeer.make(t.transport, { maxQueuedBytes: 1_000 })
      yield* peer.notify("fill", big)
      const call = yield* peer.request("waits", null, { timeout: "5 seconds" }).pipe(Effect.forkChild)
      const second = yield* peer.request("after", null, { timeout: "5 seconds" }).pipe(Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(t.written.map((m) => m.method), ["fill"], "no room: nothing more is written")
      assert.strictEqual(yield* peer.pending, 2)
      // Calls waiting for room are ahead of any notification: it is refused, not reordered.
      const refused = reasonOf(yield* peer.notify("small").pipe(Effect.flip))
      assert.instanceOf(refused, PluginClientError.Backpressure)
      assert.strictEqual(refused.limit, 1_000)
      yield* TestClock.adjust("4 seconds")
      t.read()
      assert.deepStrictEqual(t.written.map((m) => m.method), ["fill", "waits", "after"])
      yield* t.reply(t.written[1]!.id!, "done")
      yield* t.reply(t.written[2]!.id!, "done too")
      assert.strictEqual(yield* Fiber.join(call), "done")
      assert.strictEqual(yield* Fiber.join(second), "done too")
      assert.strictEqual((yield* peer.stats).requestsSent, 2)
    }).pipe(Effect.scoped))

  it.effect("a call that finds no room within its timeout fails with Timeout and is never written", () =>
    Effect.gen(function*() {
      const t = yield* metered
      const peer = yield* RpcPeer.make(t.transport, { maxQueuedBytes: 1_000 })
      yield* peer.notify("fill", big)
      const call = yield* peer.request("waits", null, { timeout: "2 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("1999 millis")
      assert.isUndefined(call.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const reason = reasonOf(yield* Fiber.join(call))
      assert.instanceOf(reason, PluginClientError.Timeout)
      assert.strictEqual(yield* peer.pending, 0)
      t.read()
      assert.deepStrictEqual(t.written.map((m) => m.method), ["fill"], "a call given up on is not sent later")
      // The queue moved: the next notification goes out.
      yield* peer.notify("next")
      assert.deepStrictEqual(t.written.map((m) => m.method), ["fill", "next"])
    }).pipe(Effect.scoped))

  it.effect("a line larger than the cap goes out when nothing is queued", () =>
    Effect.gen(function*() {
      const t = yield* metered
      const peer = yield* RpcPeer.make(t.transport, { maxQueuedBytes: 1_000 })
      yield* peer.notify("huge", "x".repeat(5_000))
      assert.isAbove(t.queued(), 5_000)
      assert.instanceOf(reasonOf(yield* peer.notify("more").pipe(Effect.flip)), PluginClientError.Backpressure)
      assert.isTrue(Option.isNone(yield* peer.closeReason))
    }).pipe(Effect.scoped))
})
