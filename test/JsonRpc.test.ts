import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as fc from "fast-check"
import * as Framing from "../src/Framing.ts"
import * as JsonRpc from "../src/JsonRpc.ts"

const decode = (line: string, lenient = false) => JsonRpc.decodeLine(line, { lenient })
const ok = (line: string, lenient = false): JsonRpc.Message => {
  const r = decode(line, lenient)
  if (Result.isFailure(r)) throw new Error(`expected a message, got ${r.failure._tag}: ${r.failure.detail}`)
  return r.success
}
const issue = (line: string, lenient = false): JsonRpc.LineIssue => {
  const r = decode(line, lenient)
  if (Result.isSuccess(r)) throw new Error(`expected an issue, got ${r.success._tag}`)
  return r.failure
}

describe("JsonRpc", () => {
  it("round-trips every message kind through encode and decode", () => {
    const messages: Array<JsonRpc.Message> = [
      JsonRpc.request(1, "echo", [1, "two", { three: 3 }]),
      JsonRpc.request("abc", "noParams"),
      JsonRpc.notification("log", { level: "info", message: "hi" }),
      JsonRpc.notification("ping"),
      JsonRpc.success(7, { ok: true }),
      JsonRpc.success("s1", null),
      JsonRpc.failure(3, { code: -32601, message: "Method not found" }),
      JsonRpc.failure(null, { code: -32700, message: "Parse error" })
    ]
    for (const message of messages) {
      const line = Result.getOrThrow(JsonRpc.encode(message))
      assert.notInclude(line, "\n")
      assert.deepStrictEqual(ok(line), message)
    }
  })

  it("accepts numeric and string ids", () => {
    assert.deepStrictEqual(ok(`{"jsonrpc":"2.0","id":"x-1","result":1}`), JsonRpc.success("x-1", 1))
    assert.deepStrictEqual(ok(`{"jsonrpc":"2.0","id":42,"result":1}`), JsonRpc.success(42, 1))
  })

  it("keeps error objects that are not {code, message} whole", () => {
    const m = ok(`{"jsonrpc":"2.0","id":1,"error":{"kind":"needs-credential","detail":"vault is locked"}}`)
    assert.deepStrictEqual(m, JsonRpc.failure(1, { kind: "needs-credential", detail: "vault is locked" }))
    const parts = JsonRpc.errorParts({ kind: "needs-credential", detail: "vault is locked" })
    assert.strictEqual(parts.code, undefined)
    assert.strictEqual(parts.message, "needs-credential: vault is locked")
    assert.deepStrictEqual(parts.data, { kind: "needs-credential", detail: "vault is locked" })
    const standard = JsonRpc.errorParts({ code: -32010, message: "nope", data: { a: 1 } })
    assert.deepStrictEqual(standard, { code: -32010, message: "nope", data: { a: 1 } })
  })

  it("classifies every malformed line and never throws", () => {
    assert.strictEqual(issue("not json")._tag, "NotJson")
    assert.strictEqual(issue("{\"jsonrpc\":\"2.0\",")._tag, "NotJson")
    assert.strictEqual(issue("42")._tag, "NotAnObject")
    assert.strictEqual(issue("null")._tag, "NotAnObject")
    assert.strictEqual(issue("\"string\"")._tag, "NotAnObject")
    assert.include(issue("[1,2]").detail, "batch")
    assert.strictEqual(issue(`{"jsonrpc":"2.0"}`)._tag, "InvalidMessage")
    assert.strictEqual(issue(`{"jsonrpc":"2.0","id":1,"method":42}`)._tag, "InvalidMessage")
    assert.strictEqual(issue(`{"jsonrpc":"1.0","id":1,"result":1}`)._tag, "InvalidMessage")
    assert.strictEqual(issue(`{"jsonrpc":"2.0","id":{"x":1},"result":1}`)._tag, "InvalidMessage")
    assert.strictEqual(issue(`{"result":1}`)._tag, "InvalidMessage")
    assert.strictEqual(issue(`{"error":{"code":1,"message":"m"}}`)._tag, "InvalidMessage")
  })

  it("quotes at most 200 characters of a bad line", () => {
    const bad = issue("x".repeat(10_000))
    assert.isAtMost(bad.excerpt.length, 200)
    assert.isTrue(bad.excerpt.startsWith("xxx"))
  })

  it("lenient mode accepts bare one-shot replies", () => {
    assert.deepStrictEqual(ok(`{"result":{"next_cursor":"abc"}}`, true), JsonRpc.success(null, { next_cursor: "abc" }))
    assert.deepStrictEqual(ok(`{"error":{"code":-32002,"message":"gone"}}`, true), JsonRpc.failure(null, { code: -32002, message: "gone" }))
    assert.deepStrictEqual(ok(`{"id":5,"result":1}`, true), JsonRpc.success(5, 1))
  })

  it("refuses to encode values JSON cannot hold, without throwing", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    assert.isTrue(Result.isFailure(JsonRpc.encode(JsonRpc.request(1, "x", cyclic))))
    assert.isTrue(Result.isFailure(JsonRpc.encode(JsonRpc.request(1, "x", { n: 1n }))))
  })

  it("encodeResponse answers a result JSON cannot hold with -32603 under the same id, in both forms", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const full = JSON.parse(JsonRpc.encodeResponse(JsonRpc.success(7, { n: 1n })))
    assert.strictEqual(full.jsonrpc, "2.0")
    assert.strictEqual(full.id, 7)
    assert.strictEqual(full.error.code, JsonRpc.ErrorCode.InternalError)
    assert.include(full.error.message, "the reply could not be encoded as JSON")
    const bare = JSON.parse(JsonRpc.encodeResponse(JsonRpc.success(null, cyclic), { bare: true }))
    assert.deepStrictEqual(Object.keys(bare), ["error"])
    assert.strictEqual(bare.error.code, JsonRpc.ErrorCode.InternalError)
    const failure = JSON.parse(JsonRpc.encodeResponse(JsonRpc.failure("a", { code: 1, message: "m", data: cyclic })))
    assert.deepStrictEqual([failure.id, failure.error.code], ["a", JsonRpc.ErrorCode.InternalError])
  })

  it("encodeResponse writes what it can as is: undefined results as null, the bare form without jsonrpc and id", () => {
    assert.strictEqual(JsonRpc.encodeResponse(JsonRpc.success(1, undefined)), `{"jsonrpc":"2.0","id":1,"result":null}`)
    assert.strictEqual(JsonRpc.encodeResponse(JsonRpc.success(1, [1]), { bare: true }), `{"result":[1]}`)
    assert.strictEqual(
      JsonRpc.encodeResponse(JsonRpc.failure(null, { code: -32601, message: "x" }), { bare: true }),
      `{"error":{"code":-32601,"message":"x"}}`
    )
  })

  it("JsonRpcError carries its wire form", () => {
    const e = JsonRpc.error(-32602, "bad", { field: "x" })
    assert.deepStrictEqual(e.toErrorObject(), { code: -32602, message: "bad", data: { field: "x" } })
    assert.deepStrictEqual(JsonRpc.error(-32601, "m").toErrorObject(), { code: -32601, message: "m" })
  })

  describe("properties", () => {
    it("random bytes never throw and never decode to a message", () => {
      fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 16 }), (chunks) => {
        const decoder = Framing.makeLineDecoder({ maxLineBytes: 128 })
        const onFrame = (frame: Framing.Frame) => {
          if (typeof frame === "string") JsonRpc.decodeLine(frame)
        }
        for (const chunk of chunks) decoder.push(chunk, onFrame)
        decoder.end(onFrame)
      }), { numRuns: 500 })
    })

    const arbitraryMessage: fc.Arbitrary<JsonRpc.Message> = fc.oneof(
      fc.record({ id: fc.nat(), method: fc.string({ minLength: 1 }), params: fc.jsonValue() })
        .map(({ id, method, params }) => JsonRpc.request(id, method, params)),
      fc.record({ method: fc.string({ minLength: 1 }), params: fc.jsonValue() })
        .map(({ method, params }) => JsonRpc.notification(method, params)),
      fc.record({ id: fc.oneof(fc.nat(), fc.string()), result: fc.jsonValue() })
        .map(({ id, result }) => JsonRpc.success(id, result)),
      fc.record({ id: fc.nat(), code: fc.integer(), message: fc.string() })
        .map(({ id, code, message }) => JsonRpc.failure(id, { code, message }))
    )

    it("messages split at random points among garbage lines come out exactly as sent", () => {
      const garbage = fc.oneof(
        fc.string().filter((s) => !s.includes("\n")),
        fc.constantFrom("not json", "[1,2]", "{\"jsonrpc\":\"2.0\"}", "null", "{}", "\r")
      ).filter((s) => Result.isFailure(JsonRpc.decodeLine(s)))
      fc.assert(fc.property(
        fc.array(fc.tuple(arbitraryMessage, fc.array(garbage, { maxLength: 2 })), { maxLength: 12 }),
        fc.array(fc.nat({ max: 4096 }), { maxLength: 8 }),
        (items, cuts) => {
          const sent = items.map(([m]) => m)
          const text = items.map(([m, junk]) => [...junk, Result.getOrThrow(JsonRpc.encode(m))].join("\n")).join("\r\n") + "\n"
          const bytes = new TextEncoder().encode(text)
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
          const received: Array<JsonRpc.Message> = []
          const decoder = Framing.makeLineDecoder()
          const onFrame = (frame: Framing.Frame) => {
            if (typeof frame !== "string") throw new Error("unexpected overflow")
            const r = JsonRpc.decodeLine(frame)
            if (Result.isSuccess(r)) received.push(r.success)
          }
          let at = 0
          for (const p of [...points, bytes.length]) {
            decoder.push(bytes.subarray(at, p), onFrame)
            at = p
          }
          decoder.end(onFrame)
          const normalize = (m: JsonRpc.Message) => JSON.parse(Result.getOrThrow(JsonRpc.encode(m)))
          assert.deepStrictEqual(received.map(normalize), sent.map(normalize))
        }
      ), { numRuns: 300 })
    })
  })
})
