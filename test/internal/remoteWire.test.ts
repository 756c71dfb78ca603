import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import * as JsonRpc from "../../src/JsonRpc.ts"
import * as RemoteWire from "../../src/internal/remoteWire.ts"

describe("remoteWire", () => {
  it("a host's call is a JSON-RPC request that also carries its route; a bare request has none", () => {
    const line = Result.getOrThrow(RemoteWire.encodeCall({ inbox: "_PLUGIN_HOST.abc", call: "_PLUGIN_HOST.abc.7.1" }, 7, "echo", [1]))
    const payload: unknown = JSON.parse(line)
    assert.deepStrictEqual(payload, { jsonrpc: "2.0", id: 7, method: "echo", params: [1], host: { inbox: "_PLUGIN_HOST.abc", call: "_PLUGIN_HOST.abc.7.1" } })
    assert.deepStrictEqual(RemoteWire.routeOf(payload), { inbox: "_PLUGIN_HOST.abc", call: "_PLUGIN_HOST.abc.7.1" })
    assert.deepStrictEqual(Result.getOrThrow(JsonRpc.decodeLine(line)), JsonRpc.request(7, "echo", [1]))
    assert.isUndefined(RemoteWire.routeOf({ jsonrpc: "2.0", id: 1, method: "echo" }))
    assert.isUndefined(RemoteWire.routeOf({ host: { inbox: "", call: "k" } }))
    const notification: unknown = JSON.parse(Result.getOrThrow(RemoteWire.encodeCall({ inbox: "i", call: "c" }, undefined, "ping", undefined)))
    assert.deepStrictEqual(notification, { jsonrpc: "2.0", method: "ping", host: { inbox: "i", call: "c" } })
    assert.isTrue(Result.isFailure(RemoteWire.encodeCall({ inbox: "i", call: "c" }, 1, "big", { n: 1n })))
  })

  it("a call's text is what JSON.stringify makes of the request object, whatever the params", () => {
    const route = { inbox: "_PLUGIN_HOST.\"q\"", call: "k.1\u2028" }
    for (const params of [undefined, null, 0, "x\"y\\z\n", [1, { a: undefined }], { n: 1, text: "é" }, () => 1, new Date(0)]) {
      for (const id of [undefined, 12]) {
        const expected = JSON.stringify({ jsonrpc: "2.0", ...(id === undefined ? {} : { id }), method: "m\"ethod", params, host: route })
        assert.strictEqual(Result.getOrThrow(RemoteWire.encodeCall(route, id, "m\"ethod", params)), expected)
      }
    }
  })

  it("inbox messages round-trip requests and notifications, and refuse responses and strangers", () => {
    const request = JsonRpc.request(3, "host.add", [1, 2])
    const line = Result.getOrThrow(RemoteWire.encodeInbox("k", "instance-1", request))
    assert.deepStrictEqual(Result.getOrThrow(RemoteWire.decodeInbox(JSON.parse(line))), { call: "k", instance: "instance-1", message: request })
    const note = JsonRpc.notification("log", { message: "hi" })
    const noteLine = Result.getOrThrow(RemoteWire.encodeInbox("k", "i", note))
    assert.deepStrictEqual(Result.getOrThrow(RemoteWire.decodeInbox(JSON.parse(noteLine))).message, note)
    assert.isTrue(Result.isFailure(RemoteWire.decodeInbox({ call: "k", message: { jsonrpc: "2.0", id: 1, result: 2 } })))
    assert.isTrue(Result.isFailure(RemoteWire.decodeInbox({ message: { jsonrpc: "2.0", method: "x" } })))
    assert.isTrue(Result.isFailure(RemoteWire.decodeInbox("nope")))
  })

  it("cancel and held name a call; only a known state is an answer", () => {
    assert.strictEqual(RemoteWire.callKeyOf(JSON.parse(RemoteWire.encodeCallKey("k.1"))), "k.1")
    assert.isUndefined(RemoteWire.callKeyOf({}))
    assert.deepStrictEqual(RemoteWire.heldOf(JSON.parse(RemoteWire.encodeHeld("running", "i1"))), { state: "running", instance: "i1" })
    assert.isUndefined(RemoteWire.heldOf({ state: "maybe", instance: "i1" }))
    assert.deepStrictEqual(RemoteWire.subjects("plugins.cal"), {
      call: "plugins.cal.call",
      tick: "plugins.cal.tick",
      notify: "plugins.cal.notify",
      cancel: "plugins.cal.cancel",
      held: "plugins.cal.held"
    })
  })
})
