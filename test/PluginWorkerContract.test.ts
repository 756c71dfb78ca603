/**
 * Typed contracts on both sides: the worker serves the same `PluginMethod` the host calls
 * (params decoded with its Schema, bad params answered with -32602 and the Schema's message, the
 * result encoded with its Schema, an encoding failure answered with -32603), a contract groups
 * methods for host and plugin, and its wire form exports as JSON Schema.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as JsonRpc from "../src/JsonRpc.ts"
import * as PluginClient from "../src/PluginClient.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginContract from "../src/PluginContract.ts"
import * as PluginMethod from "../src/PluginMethod.ts"
import * as PluginWorker from "../src/PluginWorker.ts"
import { Add, Divide, MathContract } from "./fixtures/mathContract.ts"
import { eventually, fixture, launchers, liveChildren, liveWith, node } from "./support/processes.ts"
import { connected } from "./support/workerPair.ts"

/** The error object the worker answered with, from a failed host request. */
const errorObject = <A>(exit: Exit.Exit<A, PluginClientError.PluginClientError>) => {
  assert.isTrue(Exit.isFailure(exit), "the request failed")
  const error = Exit.isFailure(exit) ? exit.cause.reasons.find((reason) => reason._tag === "Fail")?.error : undefined
  const reason = error?.reason
  assert.strictEqual(reason?._tag, "PluginError")
  return reason?._tag === "PluginError" ? reason : undefined
}

describe("PluginWorker.handle (TestClock, in-memory host)", () => {
  it.effect("decodes the params and encodes the result with the method's Schemas", () =>
    Effect.gen(function*() {
      const seen: Array<unknown> = []
      const { peer } = yield* connected({
        handlers: PluginWorker.handlers(
          PluginWorker.handle(Add, (params) => Effect.sync(() => seen.push(params)).pipe(Effect.as({ sum: params.a + params.b })))
        )
      })
      assert.deepStrictEqual(yield* peer.request("math.add", { a: "2", b: 3 }), { sum: "5" })
      assert.deepStrictEqual(seen, [{ a: 2, b: 3 }], "the implementation gets decoded params")
    }))

  it.effect("bad params are answered with -32602 carrying the Schema's message, and the implementation does not run", () =>
    Effect.gen(function*() {
      let ran = 0
      const { peer } = yield* connected({
        handlers: PluginWorker.handlers(PluginWorker.handle(Add, () => Effect.sync(() => ran++).pipe(Effect.as({ sum: 0 }))))
      })
      const bad = { a: "2", b: "three" }
      const expected = Schema.decodeUnknownExit(Add.params)(bad)
      assert.isTrue(Exit.isFailure(expected))
      const schemaMessage = Exit.isFailure(expected)
        ? String(expected.cause.reasons.find((reason) => reason._tag === "Fail")?.error.message)
        : ""
      const error = errorObject(yield* Effect.exit(peer.request("math.add", bad)))
      assert.strictEqual(error?.code, JsonRpc.ErrorCode.InvalidParams)
      assert.strictEqual(error?.message, schemaMessage)
      assert.include(schemaMessage, '["b"]', "the message says where")
      assert.strictEqual(ran, 0)
    }))

  it.effect("a result its Schema cannot encode is answered with -32603 naming the method", () =>
    Effect.gen(function*() {
      const Half = PluginMethod.make("half", { params: Schema.Number, result: Schema.Int })
      const { peer } = yield* connected({
        handlers: PluginWorker.handlers(PluginWorker.handle(Half, (n) => Effect.succeed(n / 2)))
      })
      assert.strictEqual(yield* peer.request("half", 4), 2)
      const error = errorObject(yield* Effect.exit(peer.request("half", 3)))
      assert.strictEqual(error?.code, JsonRpc.ErrorCode.InternalError)
      assert.include(error?.message, "the result of `half` does not match its Schema")
    }))

  it.effect("the implementation's typed error is answered as any handler's (-32002 with its tag)", () =>
    Effect.gen(function*() {
      class Nope extends Schema.TaggedError<Nope>()("Nope", {}) {}
      const { peer } = yield* connected({
        handlers: PluginWorker.handlers(PluginWorker.handle(Divide, () => Effect.fail(new Nope())))
      })
      const error = errorObject(yield* Effect.exit(peer.request("math.divide", { a: 1, b: 0 })))
      assert.strictEqual(error?.code, JsonRpc.ErrorCode.WorkerError)
      assert.deepStrictEqual(error?.data, { _tag: "Nope" })
    }))

  it.effect("typed and untyped handlers mix in one table, and initialize lists them all", () =>
    Effect.gen(function*() {
      const { peer } = yield* connected({
        handlers: {
          ...PluginWorker.handlers(PluginWorker.handle(Add, ({ a, b }) => Effect.succeed({ sum: a + b }))),
          echo: (params) => Effect.succeed(params)
        }
      })
      assert.strictEqual(yield* peer.request("echo", "x"), "x")
      const init = Schema.decodeUnknownSync(Schema.Struct({ supportedMethods: Schema.Array(Schema.String) }))(
        yield* peer.request("initialize", {})
      )
      assert.sameMembers([...init.supportedMethods], ["math.add", "echo"])
    }))

  it("a method handled twice is refused when the table is built", () => {
    const add = PluginWorker.handle(Add, ({ a, b }) => Effect.succeed({ sum: a + b }))
    assert.throws(() => PluginWorker.handlers(add, add), /`math.add` is handled twice/)
  })
})

describe("PluginContract", () => {
  it("implement requires every method of the contract, and nothing else (type-level)", () => {
    const impls = {
      "math.add": ({ a, b }: { readonly a: number; readonly b: number }) => Effect.succeed({ sum: a + b }),
      "math.divide": ({ a, b }: { readonly a: number; readonly b: number }) => Effect.succeed(a / b)
    }
    assert.sameMembers(Object.keys(PluginWorker.implement(MathContract, impls)), ["math.add", "math.divide"])
    // @ts-expect-error: `math.divide` has no implementation
    void (() => PluginWorker.implement(MathContract, { "math.add": impls["math.add"] }))
    // @ts-expect-error: the implementation must return the method's result type
    void (() => PluginWorker.implement(MathContract, { ...impls, "math.divide": () => Effect.succeed("one") }))
    // @ts-expect-error: a method the contract does not declare
    void (() => PluginWorker.implement(MathContract, { ...impls, "math.sub": () => Effect.succeed(0) }))
  })

  it("a contract with two methods of one name is refused when it is made", () => {
    assert.throws(() => PluginContract.make(Add, Add), /`math.add` is declared twice/)
  })

  it("toJsonSchema exports each method's wire form: params and result as JSON", () => {
    const exported = PluginContract.toJsonSchema(MathContract)
    assert.sameMembers(Object.keys(exported.methods), ["math.add", "math.divide"])
    const add = exported.methods["math.add"]
    assert.strictEqual(add?.params["$schema"], "https://json-schema.org/draft/2020-12/schema")
    assert.strictEqual(add?.params["type"], "object")
    assert.deepStrictEqual(add?.params["required"], ["a", "b"])
    const properties = add?.params["properties"] as Record<string, Record<string, unknown>> | undefined
    assert.strictEqual(properties?.["a"]?.["type"], "string", "NumberFromString travels as a string")
    assert.strictEqual(properties?.["b"]?.["type"], "number")
    const sum = (add?.result["properties"] as Record<string, Record<string, unknown>> | undefined)?.["sum"]
    assert.strictEqual(sum?.["type"], "string")
    assert.strictEqual(exported.methods["math.divide"]?.result["type"], "number")
    assert.doesNotThrow(() => JSON.parse(JSON.stringify(exported)))
  })
})

for (const launcher of launchers) {
  describe(`a contract served and called across a real process (${launcher.name} launcher)`, () => {
    afterEach(async () => {
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    it.live("the host calls the worker's contract with client.call and through the typed view", () =>
      Effect.gen(function*() {
        const client = yield* PluginClient.make({ name: "contract-worker", executable: node, args: [fixture("contract-worker.ts")] })
        assert.deepStrictEqual(yield* client.call(Add, { a: 2, b: 3 }), { sum: 5 })
        const math = PluginContract.client(MathContract, client)
        assert.strictEqual(yield* math["math.divide"]({ a: 6, b: 3 }), 2)
        const failed = yield* Effect.flip(math["math.divide"]({ a: 1, b: 0 }))
        assert.strictEqual(failed.reason._tag, "PluginError")
        assert.include(failed.message, "division by zero")
        // Params the contract does not accept, sent untyped, are refused by the worker's Schema.
        const refused = yield* Effect.flip(client.request("math.add", { a: 2, b: 3 }))
        assert.strictEqual(refused.reason._tag === "PluginError" ? refused.reason.code : undefined, JsonRpc.ErrorCode.InvalidParams)
      }).pipe(Effect.scoped, Effect.provide(liveWith(launcher))), 30_000)
  })
}
