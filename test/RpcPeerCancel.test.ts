import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as RpcPeer from "../src/RpcPeer.ts"

/** A line as the other side read it. */
interface Wire {
  readonly jsonrpc?: string
  readonly id?: number | string
  readonly method?: string
  readonly params?: Readonly<Record<string, unknown>>
  readonly result?: unknown
  readonly error?: { readonly code: number; readonly message: string }
}

/**
 * A transport whose other side is the test: `written` holds what the connection wrote (parsed),
 * `send` delivers a message as the other side's output. With `queued`, the transport reports
 * that many bytes as not yet read (lines then wait for room under `maxQueuedBytes`).
 */
const scripted = Effect.gen(function*() {
  const output = yield* Queue.unbounded<Uint8Array>()
  const written: Array<Wire> = []
  const backlog = { bytes: 0 }
  const transport: RpcPeer.Transport = {
    name: "scripted",
    incoming: Stream.fromQueue(output),
    writeLine: (line) => {
      written.push(JSON.parse(line))
      return true
    },
    queuedBytes: () => backlog.bytes,
    closed: Effect.never
  }
  const send = (message: object) =>
    Effect.andThen(Queue.offer(output, new TextEncoder().encode(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n")), settle)
  const methods = () => written.map((m) => m.method ?? `reply ${String(m.id)}`)
  return { transport, written, send, methods, backlog }
})

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const reasonOf = (error: PluginClientError.PluginClientError) => error.reason

describe("RpcPeer cancellation (TestClock, the other side played by the test)", () => {
  it.effect("a call that times out is cancelled with $/cancelRequest {id} in the lsp dialect", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { cancellation: "lsp" })
      const call = yield* peer.request("slow", { n: 1 }, { timeout: "5 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("5 seconds")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Timeout)
      assert.deepStrictEqual(t.written[1], { jsonrpc: "2.0", method: "$/cancelRequest", params: { id: t.written[0]!.id } })
      assert.strictEqual((yield* peer.stats).cancelsSent, 1)
    }).pipe(Effect.scoped))

  it.effect("a call that times out is cancelled with notifications/cancelled {requestId, reason} in the mcp dialect", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { cancellation: "mcp" })
      const call = yield* peer.request("slow", null, { timeout: "5 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(call)
      assert.deepStrictEqual(t.written[1], {
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        params: { requestId: t.written[0]!.id, reason: "timeout" }
      })
    }).pipe(Effect.scoped))

  it.effect("with cancellation \"none\" (the default) a timed-out call sends nothing more", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport)
      const call = yield* peer.request("slow", null, { timeout: "5 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("5 seconds")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Timeout)
      yield* peer.notify("after")
      assert.deepStrictEqual(t.methods(), ["slow", "after"])
      assert.strictEqual((yield* peer.stats).cancelsSent, 0)
    }).pipe(Effect.scoped))

  it.effect("interrupting the caller of a sent call cancels it; a caller still waiting for a slot sends nothing", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { cancellation: "mcp", maxConcurrentRequests: 1 })
      const sent = yield* peer.request("sent").pipe(Effect.forkChild)
      const waiting = yield* peer.request("waiting").pipe(Effect.forkChild)
      yield* settle
      yield* Fiber.interrupt(waiting)
      yield* Fiber.interrupt(sent)
      assert.deepStrictEqual(t.methods(), ["sent", "notifications/cancelled"])
      assert.deepStrictEqual(t.written[1]!.params, { requestId: t.written[0]!.id, reason: "interrupted" })
      assert.strictEqual(yield* peer.pending, 0)
    }).pipe(Effect.scoped))

  it.effect("in serial mode the cancel goes out before the next call takes the slot", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { cancellation: "lsp", maxConcurrentRequests: 1 })
      const first = yield* peer.request("first", null, { timeout: "1 second" }).pipe(Effect.flip, Effect.forkChild)
      const second = yield* peer.request("second").pipe(Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(first)
      assert.deepStrictEqual(t.methods(), ["first", "$/cancelRequest", "second"])
      yield* Fiber.interrupt(second)
    }).pipe(Effect.scoped))

  it.effect("a call given up while its line waits for room is never sent, and so never cancelled", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { cancellation: "lsp", maxQueuedBytes: 100 })
      t.backlog.bytes = 100
      const call = yield* peer.request("parked", null, { timeout: "1 second" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Timeout)
      assert.deepStrictEqual(t.written, [])
    }).pipe(Effect.scoped))

  it.effect("a reply after the cancel is counted as late, not an error; the connection carries on", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { cancellation: "lsp" })
      const call = yield* peer.request("slow", null, { timeout: "1 second" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(call)
      const id = t.written[0]!.id!
      // What an LSP server answers a cancelled request with.
      yield* t.send({ id, error: { code: JsonRpc.ErrorCode.RequestCancelled, message: "cancelled" } })
      const stats = yield* peer.stats
      assert.strictEqual(stats.lateResponses, 1)
      assert.strictEqual(stats.unknownResponses, 0)
      assert.isTrue((yield* peer.closeReason)._tag === "None")
      const next = yield* peer.request("next").pipe(Effect.forkChild)
      yield* settle
      yield* t.send({ id: t.written[2]!.id!, result: "fine" })
      assert.strictEqual(yield* Fiber.join(next), "fine")
    }).pipe(Effect.scoped))
})

describe("RpcPeer progress (TestClock)", () => {
  it.effect("a call with onProgress carries its id as MCP's _meta.progressToken, keeping the params and their _meta", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport)
      yield* peer.request("job", { a: 1, _meta: { trace: "x" } }, { onProgress: () => Effect.void }).pipe(Effect.forkChild)
      yield* peer.request("bare", undefined, { onProgress: () => Effect.void }).pipe(Effect.forkChild)
      yield* peer.request("plain", { a: 1 }).pipe(Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(t.written[0]!.params, { a: 1, _meta: { trace: "x", progressToken: t.written[0]!.id } })
      assert.deepStrictEqual(t.written[1]!.params, { _meta: { progressToken: t.written[1]!.id } })
      assert.deepStrictEqual(t.written[2]!.params, { a: 1 }, "no token without onProgress")
    }).pipe(Effect.scoped))

  it.effect("in the lsp dialect the token is params.workDoneToken", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { cancellation: "lsp" })
      yield* peer.request("job", { a: 1 }, { onProgress: () => Effect.void }).pipe(Effect.forkChild)
      yield* settle
      assert.deepStrictEqual(t.written[0]!.params, { a: 1, workDoneToken: t.written[0]!.id })
    }).pipe(Effect.scoped))

  it.effect("a call with onProgress and params that cannot carry a token fails with InvalidParams, unsent", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport)
      const error = yield* peer.request("job", [1, 2], { onProgress: () => Effect.void }).pipe(Effect.flip)
      assert.instanceOf(reasonOf(error), PluginClientError.InvalidParams)
      assert.include(error.message, "onProgress")
      assert.deepStrictEqual(t.written, [])
    }).pipe(Effect.scoped))

  it.effect("each progress reaches onProgress in order and gives the call a full timeout from then", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { maxRequestTimeout: "1 minute" })
      const seen: Array<unknown> = []
      const call = yield* peer.request("job", {}, {
        timeout: "10 seconds",
        onProgress: (value) => Effect.sync(() => void seen.push(value))
      }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      const token = t.written[0]!.id!
      yield* TestClock.adjust("8 seconds")
      yield* t.send({ method: "notifications/progress", params: { progressToken: token, progress: 1, total: 3, message: "one" } })
      yield* t.send({ method: "$/progress", params: { token, value: { kind: "report", percentage: 66 } } })
      // Deadline now 18 s after the start.
      yield* TestClock.adjust("9999 millis")
      assert.isUndefined(call.pollUnsafe(), "extended by progress")
      yield* TestClock.adjust("1 millis")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Timeout)
      assert.deepStrictEqual(seen, [{ progress: 1, total: 3, message: "one" }, { kind: "report", percentage: 66 }])
      assert.strictEqual((yield* peer.stats).progressReceived, 2)
    }).pipe(Effect.scoped))

  it.effect("progress never moves the deadline past maxRequestTimeout from the call's start", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { maxRequestTimeout: "30 seconds" })
      const call = yield* peer.request("job", {}, { timeout: "10 seconds", onProgress: () => Effect.void }).pipe(
        Effect.flip,
        Effect.forkChild
      )
      yield* settle
      const token = t.written[0]!.id!
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("8 seconds")
        yield* t.send({ method: "notifications/progress", params: { progressToken: token, progress: i } })
      }
      // 24 s in: the last progress would give until 34 s; the cap is 30 s.
      yield* TestClock.adjust("5999 millis")
      assert.isUndefined(call.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Timeout)
    }).pipe(Effect.scoped))

  it.effect("progress for a call that did not ask for it, or a token not ours, is an ordinary notification", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const notified: Array<string> = []
      const peer = yield* RpcPeer.make(t.transport, {
        onNotification: (n) => Effect.sync(() => void notified.push(n.method))
      })
      const call = yield* peer.request("plain", {}, { timeout: "10 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* settle
      yield* t.send({ method: "notifications/progress", params: { progressToken: t.written[0]!.id, progress: 1 } })
      yield* t.send({ method: "notifications/progress", params: { progressToken: "theirs", progress: 1 } })
      assert.deepStrictEqual(notified, ["notifications/progress", "notifications/progress"])
      yield* TestClock.adjust("10 seconds")
      assert.instanceOf(reasonOf(yield* Fiber.join(call)), PluginClientError.Timeout, "not extended")
      assert.strictEqual((yield* peer.stats).progressReceived, 0)
    }).pipe(Effect.scoped))
})

describe("RpcPeer cancels from the other side (TestClock)", () => {
  /** A host handler that runs until interrupted, and says so. */
  const hanging = Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    const interrupted = yield* Deferred.make<void>()
    const handler: RpcPeer.HostHandler = () =>
      Deferred.succeed(started, undefined).pipe(
        Effect.andThen(Effect.never),
        Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
      )
    return { handler, started, interrupted }
  })

  it.effect("$/cancelRequest interrupts the handler serving that request, which answers -32800", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const h = yield* hanging
      const notified: Array<string> = []
      const peer = yield* RpcPeer.make(t.transport, {
        hostHandlers: { "host.wait": h.handler },
        onNotification: (n) => Effect.sync(() => void notified.push(n.method))
      })
      yield* t.send({ id: "a", method: "host.wait" })
      yield* Deferred.await(h.started)
      yield* t.send({ method: "$/cancelRequest", params: { id: "a" } })
      yield* Deferred.await(h.interrupted)
      yield* settle
      assert.deepStrictEqual(t.written, [{
        jsonrpc: "2.0",
        id: "a",
        error: { code: JsonRpc.ErrorCode.RequestCancelled, message: "request cancelled: host.wait" }
      }])
      assert.deepStrictEqual(notified, [], "a cancel is the connection's own, never an ordinary notification")
      const stats = yield* peer.stats
      assert.strictEqual(stats.cancelsReceived, 1)
      assert.strictEqual(stats.handlersCancelled, 1)
      yield* peer.handlersIdle
    }).pipe(Effect.scoped))

  it.effect("notifications/cancelled interrupts the handler, which sends no reply", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const h = yield* hanging
      const peer = yield* RpcPeer.make(t.transport, { hostHandlers: { "host.wait": h.handler } })
      yield* t.send({ id: 7, method: "host.wait" })
      yield* Deferred.await(h.started)
      yield* t.send({ method: "notifications/cancelled", params: { requestId: 7, reason: "user gave up" } })
      yield* Deferred.await(h.interrupted)
      yield* peer.handlersIdle
      assert.deepStrictEqual(t.written, [])
    }).pipe(Effect.scoped))

  it.effect("a cancel for a request already answered, or never made, changes nothing", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, { hostHandlers: { "host.echo": (params) => Effect.succeed(params) } })
      yield* t.send({ id: 1, method: "host.echo", params: "x" })
      yield* t.send({ method: "$/cancelRequest", params: { id: 1 } })
      yield* t.send({ method: "notifications/cancelled", params: { requestId: 99 } })
      assert.deepStrictEqual(t.written, [{ jsonrpc: "2.0", id: 1, result: "x" }])
      const stats = yield* peer.stats
      assert.strictEqual(stats.cancelsReceived, 2)
      assert.strictEqual(stats.handlersCancelled, 0)
    }).pipe(Effect.scoped))

  it.effect("a handler that finishes before the cancel takes effect answers as usual", () =>
    Effect.gen(function*() {
      const t = yield* scripted
      const peer = yield* RpcPeer.make(t.transport, {
        hostHandlers: { "host.soon": () => Effect.as(Effect.sleep("1 second"), "done") }
      })
      yield* t.send({ id: 1, method: "host.soon" })
      yield* TestClock.adjust("1 second")
      yield* t.send({ method: "$/cancelRequest", params: { id: 1 } })
      assert.deepStrictEqual(t.written, [{ jsonrpc: "2.0", id: 1, result: "done" }])
      assert.strictEqual((yield* peer.stats).handlersCancelled, 0)
    }).pipe(Effect.scoped))
})
