import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Handshake from "../src/Handshake.ts"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginWorker from "../src/PluginWorker.ts"
import * as RpcPeer from "../src/RpcPeer.ts"
import { eventually, fixture, launchers, liveChildren, liveWith, node } from "./support/processes.ts"

/** Lets forked fibers reach their next suspension without real time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/**
 * A host connection and a worker served over an in-memory pipe, in the test's context (its
 * TestClock drives both). `workerLines` are the lines the worker wrote, parsed.
 */
const connected = (
  worker: Omit<PluginWorker.ServeOptions, "name">,
  host?: RpcPeer.Options
) =>
  Effect.gen(function*() {
    const toWorker = yield* Queue.unbounded<Uint8Array>()
    const toHost = yield* Queue.unbounded<Uint8Array>()
    const encoder = new TextEncoder()
    const workerLines: Array<{ readonly method?: string; readonly id?: unknown; readonly params?: unknown; readonly error?: unknown }> = []
    const side = (name: string, incoming: Queue.Queue<Uint8Array>, outgoing: Queue.Queue<Uint8Array>, onLine?: (line: string) => void): RpcPeer.Transport => ({
      name,
      incoming: Stream.fromQueue(incoming),
      writeLine: (line) => {
        onLine?.(line)
        Queue.offerUnsafe(outgoing, encoder.encode(line + "\n"))
        return true
      },
      closed: Effect.never
    })
    yield* PluginWorker.serveTransport(side("worker", toWorker, toHost, (line) => void workerLines.push(JSON.parse(line))), {
      name: "worker",
      ...worker
    }).pipe(Effect.forkScoped)
    const peer = yield* RpcPeer.make(side("host", toHost, toWorker), host)
    return { peer, workerLines }
  })

/** A worker handler that runs until interrupted, and says so. */
const hanging = Effect.gen(function*() {
  const started = yield* Deferred.make<void>()
  const interrupted = yield* Deferred.make<void>()
  const handler: PluginWorker.Handler = () =>
    Deferred.succeed(started, undefined).pipe(
      Effect.andThen(Effect.never),
      Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
    )
  return { handler, started, interrupted }
})

describe("PluginWorker cancellation and progress (TestClock, in-memory host)", () => {
  it.effect("a host call that times out interrupts the handler; over LSP the worker answers -32800, counted late", () =>
    Effect.gen(function*() {
      const h = yield* hanging
      const { peer, workerLines } = yield* connected({ handlers: { hang: h.handler } }, { cancellation: "lsp" })
      const call = yield* peer.request("hang", {}, { timeout: "2 seconds" }).pipe(Effect.flip, Effect.forkChild)
      yield* Deferred.await(h.started)
      yield* TestClock.adjust("2 seconds")
      assert.instanceOf((yield* Fiber.join(call)).reason, PluginClientError.Timeout)
      yield* Deferred.await(h.interrupted)
      yield* settle
      assert.deepStrictEqual(workerLines.map((l) => l.error), [{ code: -32800, message: "request cancelled: hang" }])
      const stats = yield* peer.stats
      assert.strictEqual(stats.cancelsSent, 1)
      assert.strictEqual(stats.lateResponses, 1)
    }).pipe(Effect.scoped))

  it.effect("over MCP an interrupted host call interrupts the handler and the worker sends no reply", () =>
    Effect.gen(function*() {
      const h = yield* hanging
      const { peer, workerLines } = yield* connected({ handlers: { hang: h.handler } }, { cancellation: "mcp" })
      const call = yield* peer.request("hang").pipe(Effect.forkChild)
      yield* Deferred.await(h.started)
      yield* Fiber.interrupt(call)
      yield* Deferred.await(h.interrupted)
      yield* settle
      assert.deepStrictEqual(workerLines, [])
      assert.strictEqual((yield* peer.stats).lateResponses, 0)
    }).pipe(Effect.scoped))

  it.effect("PluginWorker.progress reaches the host's onProgress and keeps a long call alive past its timeout", () =>
    Effect.gen(function*() {
      const { peer } = yield* connected({
        handlers: {
          steps: () =>
            Effect.gen(function*() {
              for (let i = 1; i <= 3; i++) {
                yield* Effect.sleep("8 seconds")
                yield* PluginWorker.progress({ progress: i, total: 3, message: `step ${i}` })
              }
              yield* Effect.sleep("8 seconds")
              return "done"
            })
        }
      })
      const seen: Array<unknown> = []
      const call = yield* peer.request("steps", {}, {
        timeout: "10 seconds",
        onProgress: (value) => Effect.sync(() => void seen.push(value))
      }).pipe(Effect.forkChild)
      for (let i = 0; i < 4; i++) {
        yield* settle
        yield* TestClock.adjust("8 seconds")
      }
      assert.strictEqual(yield* Fiber.join(call), "done", "32 s of work under a 10 s timeout")
      assert.deepStrictEqual(seen, [1, 2, 3].map((i) => ({ progress: i, total: 3, message: `step ${i}` })))
    }).pipe(Effect.scoped))

  it.effect("over LSP the worker reports $/progress with the value unchanged", () =>
    Effect.gen(function*() {
      const { peer, workerLines } = yield* connected(
        { handlers: { once: () => Effect.as(PluginWorker.progress(42), "ok") } },
        { cancellation: "lsp" }
      )
      const seen: Array<unknown> = []
      const result = yield* peer.request("once", {}, { onProgress: (value) => Effect.sync(() => void seen.push(value)) })
      yield* settle
      assert.strictEqual(result, "ok")
      assert.deepStrictEqual(seen, [42])
      assert.strictEqual(workerLines[0]?.method, "$/progress")
    }).pipe(Effect.scoped))

  it.effect("progress in a handler whose caller did not ask for it sends nothing", () =>
    Effect.gen(function*() {
      const { peer, workerLines } = yield* connected({ handlers: { once: () => Effect.as(PluginWorker.progress(1), "ok") } })
      assert.strictEqual(yield* peer.request("once", { a: 1 }), "ok")
      yield* settle
      assert.deepStrictEqual(workerLines.map((l) => l.method), [undefined], "only the reply")
    }).pipe(Effect.scoped))

  it.effect("a worker host call that times out is cancelled at the host, whose handler is interrupted", () =>
    Effect.gen(function*() {
      const hostInterrupted = yield* Deferred.make<void>()
      const { peer } = yield* connected(
        {
          cancellation: "mcp",
          handlers: {
            ask: () => PluginWorker.callHost("host.wait", {}, { timeout: "1 second" }).pipe(Effect.flip, Effect.map((e) => e.reason._tag))
          }
        },
        {
          hostHandlers: {
            "host.wait": () => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(hostInterrupted, undefined)))
          }
        }
      )
      const call = yield* peer.request("ask").pipe(Effect.forkChild)
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(call), "Timeout")
      yield* Deferred.await(hostInterrupted)
      const stats = yield* peer.stats
      assert.strictEqual(stats.handlersCancelled, 1)
    }).pipe(Effect.scoped))
})

for (const launcher of launchers) {
  describe(`PluginWorker cancellation and progress (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    it.live("a timed-out call interrupts the worker's handler, progress keeps a long call alive, and a worker's cancel reaches the host", () =>
      Effect.gen(function*() {
        const notified: Array<unknown> = []
        const hostInterrupted = yield* Deferred.make<void>()
        const client = yield* PluginClient.make(
          { name: "cancel-worker", executable: node, args: [fixture("cancel-worker.ts")] },
          {
            handshake: Handshake.initialize(),
            policy: LifetimePolicy.makeUnsafe({ shutdownGrace: "1 second", cancellation: "lsp", maxRequestTimeout: "1 minute" }),
            onNotification: (n) => Effect.sync(() => void notified.push(n.method)),
            hostHandlers: {
              "host.wait": () => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(hostInterrupted, undefined)))
            }
          }
        )
        // Cancel host → plugin: the handler's finalizer tells the host it ran.
        const timedOut = yield* client.request("hang", {}, { timeout: "300 millis" }).pipe(Effect.flip)
        assert.instanceOf(timedOut.reason, PluginClientError.Timeout)
        assert.isTrue(yield* eventually(() => notified.includes("hangInterrupted"), 5_000), "the handler was not interrupted")

        // Progress: 5 steps of 500 ms under a 2 s timeout; each step well inside it.
        const seen: Array<unknown> = []
        const result = yield* client.request("steps", { count: 5, everyMs: 500 }, {
          timeout: "2 seconds",
          onProgress: (value) => Effect.sync(() => void seen.push(value))
        })
        assert.strictEqual(result, "done")
        assert.deepStrictEqual(seen, [1, 2, 3, 4, 5].map((progress) => ({ progress, total: 5 })))

        // Cancel plugin → host: the worker gives up its host call after 300 ms.
        assert.strictEqual(yield* client.request("askHost", { ms: 300 }), "Timeout")
        yield* Deferred.await(hostInterrupted).pipe(Effect.timeout("5 seconds"))
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 30_000)
  })
}
