import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { type Handler, RequestServer } from "../../src/internal/requestServer.ts"
import * as JsonRpc from "../../src/JsonRpc.ts"

/** A server running its handlers in the test's context, with the replies it wrote. */
const serverWith = (handlers: Record<string, Handler<never>>, maxHandlers = 8) =>
  Effect.map(Effect.context<never>(), (context) => {
    const fork = Effect.runForkWith(context)
    const replies: Array<JsonRpc.Success | JsonRpc.Failure> = []
    const started = { fibers: 0 }
    const server = new RequestServer<never>({
      handlers,
      maxHandlers,
      run: (effect) => {
        started.fibers++
        return fork(effect)
      },
      reply: (message) => void replies.push(message)
    })
    const request = (id: number, method: string, params?: unknown) => server.serve(JsonRpc.request(id, method, params))
    return { server, replies, request, started }
  })

const errorCode = (message: JsonRpc.Success | JsonRpc.Failure | undefined) =>
  message?._tag === "Failure" ? (message.error as JsonRpc.ErrorObject).code : undefined

describe("RequestServer (requests from the other side, served by handlers)", () => {
  it.effect("a handler's result is the reply; a method nobody serves, Object.prototype's included, gets -32601", () =>
    Effect.gen(function*() {
      const { server, replies, request } = yield* serverWith({ add: (params) => Effect.succeed((params as Array<number>).reduce((a, b) => a + b, 0)) })
      request(1, "add", [2, 3])
      request(2, "nope")
      request(3, "toString")
      assert.deepStrictEqual(replies[0], JsonRpc.success(1, 5))
      assert.strictEqual(errorCode(replies[1]), JsonRpc.ErrorCode.MethodNotFound)
      assert.strictEqual(errorCode(replies[2]), JsonRpc.ErrorCode.MethodNotFound)
      assert.strictEqual(server.served, 3)
    }))

  it.effect("a handler's JsonRpcError is the error reply; a defect becomes -32603", () =>
    Effect.gen(function*() {
      const { replies, request } = yield* serverWith({
        refuse: () => Effect.fail(JsonRpc.error(-32010, "refused", { why: "policy" })),
        explode: () => Effect.die(new Error("host bug"))
      })
      request(1, "refuse")
      request(2, "explode")
      assert.deepStrictEqual(replies[0], JsonRpc.failure(1, { code: -32010, message: "refused", data: { why: "policy" } }))
      assert.strictEqual(errorCode(replies[1]), -32603)
    }))

  it.effect("a handler whose effect is already over is answered before serve returns, without a fiber; one that throws gets -32603", () =>
    Effect.gen(function*() {
      const { replies, request, started, server } = yield* serverWith({
        echo: (params) => Effect.succeed(params),
        refuse: () => Effect.fail(JsonRpc.error(-32010, "refused")),
        throws: () => {
          throw new Error("not an effect")
        },
        later: (params) => Effect.sync(() => params)
      })
      request(1, "echo", { n: 1 })
      request(2, "refuse")
      request(3, "throws")
      assert.deepStrictEqual(replies.slice(0, 2), [JsonRpc.success(1, { n: 1 }), JsonRpc.failure(2, { code: -32010, message: "refused" })])
      assert.strictEqual(errorCode(replies[2]), -32603)
      assert.strictEqual(started.fibers, 0)
      request(4, "later", "x")
      assert.strictEqual(started.fibers, 1)
      assert.deepStrictEqual(replies[3], JsonRpc.success(4, "x"))
      yield* server.idle
    }))

  it.effect("beyond maxHandlers being served, a request is refused at once with -32000 and counted", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { server, replies, request } = yield* serverWith({ wait: () => Deferred.await(gate) }, 2)
      request(1, "wait")
      request(2, "wait")
      request(3, "wait")
      assert.deepStrictEqual(replies.map((reply) => reply.id), [3])
      assert.strictEqual(errorCode(replies[0]), JsonRpc.ErrorCode.WorkerUnavailable)
      assert.strictEqual(server.refused, 1)
      yield* Deferred.succeed(gate, undefined)
      yield* server.idle
      assert.deepStrictEqual(replies.map((reply) => reply.id).sort(), [1, 2, 3])
    }))

  it.effect("idle waits until the last running handler's reply is written", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { server, replies, request } = yield* serverWith({ wait: () => Deferred.await(gate) })
      yield* server.idle
      request(1, "wait")
      const idle = yield* Effect.forkChild(server.idle)
      yield* Effect.yieldNow
      assert.isUndefined(idle.pollUnsafe())
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(idle)
      assert.strictEqual(replies.length, 1)
    }))
})
