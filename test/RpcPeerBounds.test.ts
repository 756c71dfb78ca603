/**
 * The connection's memory is bounded by bytes in both directions: what is queued for a plugin
 * that does not read (notifications refused, calls waiting for room within their timeout, its
 * output no longer read while replies fill the queue, and the connection ended if it never
 * reads them), and notifications waiting for a slow handler (dropped and
 * counted), while a handler that keeps up receives every notification of a flood.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import * as RpcPeer from "../src/RpcPeer.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
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

    it.live("a plugin that sends requests and never reads the replies is no longer read, then loses its connection with Backpressure", () =>
      Effect.gen(function*() {
        const cap = 1 * MiB
        const { peer, proc } = yield* rpcPlugin(["--no-read", "--flood-requests=100000", "--flood-bytes=65536"], {
          maxQueuedBytes: cap,
          requestTimeout: "2 seconds",
          hostHandlers: { flood: (params) => Effect.succeed("x".repeat((params as { bytes: number }).bytes)) }
        })
        // Reading pauses once replies fill the queue past the cap: the plugin blocks on its stdout.
        assert.isTrue(yield* eventually(() => Effect.runSync(peer.stats).readPauses === 1, 10_000), "reading paused")
        const served = (yield* peer.stats).hostRequestsServed
        assert.isBelow(served, 100)
        assert.isTrue(Option.isNone(yield* peer.closeReason), "still up while the pause is young")
        // Nothing went out for requestTimeout: the plugin does not read, the connection ends.
        const reason = yield* peer.closed.pipe(Effect.timeout("20 seconds"))
        assert.instanceOf(reason, PluginClientError.Backpressure)
        assert.strictEqual(reason.limit, cap, "the pause's threshold")
        assert.isAtMost(proc.queuedInputBytes(), 2 * cap, "replies never take the queue past twice the cap")
        assert.strictEqual((yield* peer.stats).hostRequestsServed, served, "nothing more was served while paused")
        // Nothing more is written for it: the queue does not grow.
        const after = proc.queuedInputBytes()
        yield* Effect.sleep("300 millis")
        assert.strictEqual(proc.queuedInputBytes(), after)
        assert.instanceOf(reasonOf(yield* peer.request("echo", 1).pipe(Effect.flip)), PluginClientError.Backpressure)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 30_000)

    it.live("a plugin that floods requests and reads the replies slowly gets every reply, and its connection stays up", () =>
      Effect.gen(function*() {
        const cap = 1 * MiB
        const count = 600
        const done = yield* Deferred.make<unknown>()
        const { peer } = yield* rpcPlugin([`--flood-requests=${count}`, "--flood-bytes=65536", "--slow-read=2"], {
          maxQueuedBytes: cap,
          requestTimeout: "10 seconds",
          hostHandlers: { flood: (params) => Effect.succeed("x".repeat((params as { bytes: number }).bytes)) },
          onNotification: (n) => n.method === "floodDone" ? Deferred.succeed(done, n.params).pipe(Effect.asVoid) : Effect.void
        })
        // 600 × 64 KiB = 37.5 MiB of replies through a 1 MiB queue, at the pace the plugin reads.
        const result = yield* Deferred.await(done).pipe(Effect.timeout("50 seconds"))
        assert.deepStrictEqual(result, { replies: count, ok: true })
        const stats = yield* peer.stats
        assert.strictEqual(stats.hostRequestsServed, count)
        assert.isAtLeast(stats.readPauses, 1, "reading paused while the queue was full")
        assert.isTrue(Option.isNone(yield* peer.closeReason))
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 60_000)

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
    const readSome = (bytes: number) => {
      queued = Math.max(0, queued - bytes)
      listener?.()
    }
    const reply = (id: number, result: unknown) =>
      Queue.offer(output, new TextEncoder().encode(JSON.stringify({ jsonrpc: "2.0", id, result }) + "\n"))
    return { transport, written, read, readSome, reply, output, queued: () => queued }
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

  describe("flow control: requests from the other side while their replies fill the queue", () => {
    const request = (id: number) => JSON.stringify({ jsonrpc: "2.0", id, method: "big" }) + "\n"
    const requests = (from: number, to: number) => {
      let text = ""
      for (let id = from; id <= to; id++) text += request(id)
      return new TextEncoder().encode(text)
    }
    // Each reply is about 950 bytes: three take a 2 000-byte queue past the cap.
    const options: RpcPeer.Options = { maxQueuedBytes: 2_000, requestTimeout: "10 seconds", hostHandlers: { big: () => Effect.succeed(big) } }
    const repliedIds = (t: { readonly written: ReadonlyArray<{ readonly id?: number }> }) => t.written.map((m) => m.id)

    it.effect("reading pauses once replies take the queue over the cap, and resumes when the other side has read it down to half", () =>
      Effect.gen(function*() {
        const t = yield* metered
        const peer = yield* RpcPeer.make(t.transport, options)
        // One chunk of five requests: the third reply takes the queue over the cap, so the rest
        // of the chunk is held, and the next chunk is not read.
        yield* Queue.offer(t.output, requests(1, 5))
        yield* settle
        yield* Queue.offer(t.output, requests(6, 6))
        yield* settle
        assert.deepStrictEqual(repliedIds(t), [1, 2, 3])
        let stats = yield* peer.stats
        assert.strictEqual(stats.readPauses, 1)
        assert.strictEqual(stats.hostRequestsServed, 3)
        // The other side read some, but the queue is still over half the cap: still paused.
        t.readSome(500)
        yield* settle
        assert.deepStrictEqual(repliedIds(t), [1, 2, 3])
        // Read down to half: the held requests are served, in order, then the next chunk is read
        // (its reply takes the queue over the cap again).
        t.read()
        yield* settle
        assert.deepStrictEqual(repliedIds(t), [1, 2, 3, 4, 5, 6])
        stats = yield* peer.stats
        assert.strictEqual(stats.hostRequestsServed, 6)
        assert.strictEqual(stats.readPauses, 2)
        assert.isTrue(Option.isNone(yield* peer.closeReason))
      }).pipe(Effect.scoped))

    it.effect("held requests that fill the queue again pause reading again, before anything more is read", () =>
      Effect.gen(function*() {
        const t = yield* metered
        const peer = yield* RpcPeer.make(t.transport, options)
        yield* Queue.offer(t.output, requests(1, 8))
        yield* Queue.offer(t.output, requests(9, 9))
        yield* settle
        assert.deepStrictEqual(repliedIds(t), [1, 2, 3])
        t.read()
        yield* settle
        assert.deepStrictEqual(repliedIds(t), [1, 2, 3, 4, 5, 6], "three held ones fill it again")
        assert.strictEqual((yield* peer.stats).readPauses, 2)
        t.read()
        yield* settle
        assert.deepStrictEqual(repliedIds(t), [1, 2, 3, 4, 5, 6, 7, 8, 9])
      }).pipe(Effect.scoped))

    it.effect("a side that never reads while paused loses its connection with Backpressure after requestTimeout; one that reads a little keeps it", () =>
      Effect.gen(function*() {
        const t = yield* metered
        const peer = yield* RpcPeer.make(t.transport, options)
        yield* Queue.offer(t.output, requests(1, 4))
        yield* settle
        assert.strictEqual((yield* peer.stats).readPauses, 1)
        // Some bytes go out 6 s in: the side is slow, not stuck, and the bound starts again.
        yield* TestClock.adjust("6 seconds")
        t.readSome(100)
        yield* TestClock.adjust("9999 millis")
        assert.isTrue(Option.isNone(yield* peer.closeReason), "10 s without progress have not passed")
        yield* TestClock.adjust("1 millis")
        const reason = yield* peer.closeReason
        assert.isTrue(Option.isSome(reason))
        const backpressure = Option.getOrThrow(reason)
        assert.instanceOf(backpressure, PluginClientError.Backpressure)
        assert.strictEqual(backpressure.limit, 2_000)
        // Nothing held is served after the end.
        t.read()
        yield* settle
        assert.deepStrictEqual(repliedIds(t), [1, 2, 3])
      }).pipe(Effect.scoped))

    it.effect("calls of this side waiting for room keep the other side's output read (their replies come on it)", () =>
      Effect.gen(function*() {
        const t = yield* metered
        const peer = yield* RpcPeer.make(t.transport, options)
        yield* peer.notify("fill", "x".repeat(1_980))
        const call = yield* peer.request("mine", null).pipe(Effect.forkChild)
        yield* settle
        assert.strictEqual(yield* peer.pending, 1)
        // Two replies take the queue over the cap (not past twice it), while "mine" waits.
        yield* Queue.offer(t.output, requests(1, 2))
        yield* settle
        assert.strictEqual((yield* peer.stats).readPauses, 0)
        assert.strictEqual((yield* peer.stats).hostRequestsServed, 2)
        assert.isAbove(t.queued(), 2_000)
        t.read()
        const mine = t.written.find((m) => m.method === "mine")!
        yield* t.reply(mine.id!, "ok")
        assert.strictEqual(yield* Fiber.join(call), "ok")
      }).pipe(Effect.scoped))
  })

  describe("flow control over in-memory pipes of 4 KiB (the spawner launcher)", () => {
    const flood = (count: number, counters: { sent: number; read: number }, readEvery?: Duration.Input): InMemorySpawner.Behaviour => (proc) =>
      Effect.gen(function*() {
        if (readEvery !== undefined) {
          // A slow reader: one line per `readEvery`.
          yield* Stream.runForEach(proc.lines, () => Effect.andThen(Effect.sleep(readEvery), Effect.sync(() => void counters.read++))).pipe(Effect.forkChild)
        }
        for (let n = 1; n <= count; n++) {
          yield* proc.write(JSON.stringify({ jsonrpc: "2.0", id: n, method: "big" }))
          counters.sent = n
        }
        return yield* Effect.never
      })
    const connect = (behaviour: InMemorySpawner.Behaviour) =>
      Effect.gen(function*() {
        const fake = yield* InMemorySpawner.make({ plugin: behaviour }, { pipeCapacity: 4 * KiB })
        const proc = yield* PluginProcess.make({ name: "fake", executable: "plugin" }).pipe(Effect.provide(fake.layer))
        return yield* RpcPeer.make(RpcPeer.fromProcess(proc), {
          maxQueuedBytes: 8 * KiB,
          requestTimeout: "5 seconds",
          hostHandlers: { big: () => Effect.succeed("x".repeat(KiB)) }
        })
      })

    it.effect("a plugin that floods requests and reads nothing blocks on its full stdout, and loses its connection after requestTimeout", () =>
      Effect.gen(function*() {
        const counters = { sent: 0, read: 0 }
        const peer = yield* connect(flood(10_000, counters))
        yield* settle
        yield* settle
        const stats = yield* peer.stats
        // Paused (again, once the first burst went into the pipe and the queue fell to half).
        assert.isAtLeast(stats.readPauses, 1)
        // What fills the host's queue (8 KiB of 1 KiB replies) and the pipe to the plugin, not 10 000.
        assert.isBelow(stats.hostRequestsServed, 20)
        // The plugin is stuck on its writes: at most a pipe's worth of requests beyond those read.
        const sent = counters.sent
        assert.isBelow(sent, 200)
        yield* settle
        assert.strictEqual(counters.sent, sent)
        yield* TestClock.adjust("4999 millis")
        assert.isTrue(Option.isNone(yield* peer.closeReason))
        yield* TestClock.adjust("1 millis")
        const reason = Option.getOrThrow(yield* peer.closeReason)
        assert.instanceOf(reason, PluginClientError.Backpressure)
        assert.strictEqual(reason.limit, 8 * KiB)
      }).pipe(Effect.scoped))

    it.effect("a plugin that reads one line per 10 ms gets every reply to its 500 requests, and its connection stays up", () =>
      Effect.gen(function*() {
        const counters = { sent: 0, read: 0 }
        const peer = yield* connect(flood(500, counters, "10 millis"))
        for (let step = 0; step < 600 && counters.read < 500; step++) {
          yield* settle
          yield* TestClock.adjust("10 millis")
        }
        assert.strictEqual(counters.read, 500)
        assert.strictEqual(counters.sent, 500)
        const stats = yield* peer.stats
        assert.strictEqual(stats.hostRequestsServed, 500)
        assert.isAtLeast(stats.readPauses, 1)
        assert.isTrue(Option.isNone(yield* peer.closeReason))
      }).pipe(Effect.scoped))
  })

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
