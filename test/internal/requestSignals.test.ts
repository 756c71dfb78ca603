import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as RequestSignals from "../../src/internal/requestSignals.ts"
import * as JsonRpc from "../../src/JsonRpc.ts"

const read = (method: string, params?: unknown) => RequestSignals.read(JsonRpc.notification(method, params))

describe("requestSignals (the cancel and progress notifications of both dialects)", () => {
  it("the cancel line of each dialect, and none for \"none\"", () => {
    assert.deepStrictEqual(JSON.parse(RequestSignals.cancelLine("lsp", 7, "timeout")!), {
      jsonrpc: "2.0",
      method: "$/cancelRequest",
      params: { id: 7 }
    })
    assert.deepStrictEqual(JSON.parse(RequestSignals.cancelLine("mcp", 7, "interrupted")!), {
      jsonrpc: "2.0",
      method: "notifications/cancelled",
      params: { requestId: 7, reason: "interrupted" }
    })
    assert.isUndefined(RequestSignals.cancelLine("none", 7, "timeout"))
  })

  it("reads both forms of cancel and progress; a malformed body is an ordinary notification", () => {
    assert.deepStrictEqual(read("$/cancelRequest", { id: "p1" }), { _tag: "Cancel", id: "p1", dialect: "lsp" })
    assert.deepStrictEqual(read("notifications/cancelled", { requestId: 3, reason: "x" }), { _tag: "Cancel", id: 3, dialect: "mcp" })
    assert.deepStrictEqual(read("$/progress", { token: 4, value: { percentage: 10 } }), { _tag: "Progress", token: 4, value: { percentage: 10 } })
    assert.deepStrictEqual(
      read("notifications/progress", { progressToken: 4, progress: 1, total: 2, message: "half" }),
      { _tag: "Progress", token: 4, value: { progress: 1, total: 2, message: "half" } }
    )
    for (const [method, params] of [
      ["$/cancelRequest", undefined],
      ["$/cancelRequest", { id: null }],
      ["notifications/cancelled", { id: 3 }],
      ["$/progress", { value: 1 }],
      ["notifications/progress", { progressToken: { nested: true }, progress: 1 }],
      ["notifications/message", { id: 1 }]
    ] as const) {
      assert.isUndefined(read(method, params), `${method} ${JSON.stringify(params)}`)
    }
  })

  it("a progress token goes in MCP's _meta (kept) or LSP's workDoneToken; only object params or none carry one", () => {
    assert.deepStrictEqual(RequestSignals.withProgressToken({ a: 1, _meta: { b: 2 } }, 9, "mcp"), Result.succeed({ a: 1, _meta: { b: 2, progressToken: 9 } }))
    assert.deepStrictEqual(RequestSignals.withProgressToken(undefined, 9, "none"), Result.succeed({ _meta: { progressToken: 9 } }))
    assert.deepStrictEqual(RequestSignals.withProgressToken({ a: 1 }, 9, "lsp"), Result.succeed({ a: 1, workDoneToken: 9 }))
    for (const params of [[1, 2], "text", 3, null]) {
      assert.isTrue(Result.isFailure(RequestSignals.withProgressToken(params, 9, "mcp")), JSON.stringify(params))
    }
  })

  it("a served request's token is found in either place, and reported in the form it came in", () => {
    const mcp = RequestSignals.progressTargetOf({ _meta: { progressToken: "t" } })
    const lsp = RequestSignals.progressTargetOf({ workDoneToken: 5 })
    assert.deepStrictEqual(mcp, { token: "t", dialect: "mcp" })
    assert.deepStrictEqual(lsp, { token: 5, dialect: "lsp" })
    assert.isUndefined(RequestSignals.progressTargetOf({ a: 1 }))
    assert.isUndefined(RequestSignals.progressTargetOf([1]))
    assert.deepStrictEqual(RequestSignals.progressNotification(mcp!, 3), {
      method: "notifications/progress",
      params: { progressToken: "t", progress: 3 }
    })
    assert.deepStrictEqual(RequestSignals.progressNotification(mcp!, { progress: 3, total: 4 }), {
      method: "notifications/progress",
      params: { progressToken: "t", progress: 3, total: 4 }
    })
    assert.deepStrictEqual(RequestSignals.progressNotification(lsp!, 3), { method: "$/progress", params: { token: 5, value: 3 } })
  })
})
