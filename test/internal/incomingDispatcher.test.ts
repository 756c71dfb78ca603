import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { type Call, CallTable } from "../../src/internal/callTable.ts"
import { ConnectionEnd } from "../../src/internal/connectionEnd.ts"
import { IncomingDispatcher } from "../../src/internal/incomingDispatcher.ts"
import { OutgoingQueue } from "../../src/internal/outgoingQueue.ts"
import type * as JsonRpc from "../../src/JsonRpc.ts"
import * as PluginClientError from "../../src/PluginClientError.ts"

type CallExit = Exit.Exit<unknown, PluginClientError.PluginClientError>

const encoder = new TextEncoder()
const bytes = (text: string) => encoder.encode(text)

/**
 * A dispatcher over a call table (its lines go nowhere), recording the requests it hands to the
 * server, the notifications (with their line lengths) and the log lines.
 */
const dispatcherWith = (options: { readonly maxConcurrent: number; readonly lenient?: boolean; readonly maxLineBytes?: number }) =>
  Effect.gen(function*() {
    const fork = Effect.runForkWith(yield* Effect.context<never>())
    const fail = (reason: PluginClientError.Reason) => PluginClientError.make("test", reason)
    const end: ConnectionEnd = new ConnectionEnd({ fork, onClose: () => calls.failAll(() => fail(end.reason())) })
    const outgoing = new OutgoingQueue({ output: { writeLine: () => true }, maxQueuedBytes: 1024, end, compactAt: 16 })
    const calls: CallTable = new CallTable({
      maxConcurrent: options.maxConcurrent,
      clock: yield* Clock.Clock,
      fork,
      outgoing,
      end,
      fail,
      cancellation: "none",
      maxTimeoutMillis: 300_000
    })
    const requests: Array<JsonRpc.Request> = []
    const notifications: Array<readonly [unknown, number]> = []
    let logged = 0
    const incoming = new IncomingDispatcher({
      serial: options.maxConcurrent === 1,
      lenient: options.lenient === true,
      maxLineBytes: options.maxLineBytes,
      calls,
      end,
      serve: (request) => void requests.push(request),
      cancel: () => {},
      notify: (notification, size) => void notifications.push([notification.params, size]),
      log: () => void logged++
    })
    /** Makes a call (ids count from 1); its exit, once it has one, is `exit()`. */
    const call = () => {
      let exit: CallExit | undefined
      const timeout = Duration.seconds(30)
      const entry: Call = {
        method: "m",
        params: null,
        timeout,
        timeoutMillis: 30_000,
        resume: (result) => void (exit = result),
        id: 0,
        deadline: 0,
        cancelled: false,
        line: undefined,
        progress: undefined,
        cap: 0
      }
      calls.submit(entry)
      return { entry, exit: () => exit }
    }
    return { incoming, calls, end, requests, notifications, call, logged: () => logged }
  })

const endReason = (end: ConnectionEnd) => {
  assert.isTrue(end.isOver)
  return end.reason()
}

describe("IncomingDispatcher (what the other side sends, where it goes)", () => {
  it.effect("lines split anywhere reach their place: replies their calls, requests the server, notifications the inbox", () =>
    Effect.gen(function*() {
      const { incoming, requests, notifications, call } = yield* dispatcherWith({ maxConcurrent: 4 })
      const answered = call()
      const text = `{"jsonrpc":"2.0","id":1,"result":"one"}\n{"jsonrpc":"2.0","id":7,"method":"host.add","params":[1]}\n` +
        `{"jsonrpc":"2.0","method":"log","params":"hi"}\n`
      for (const piece of [text.slice(0, 5), text.slice(5, 60), text.slice(60)]) incoming.push(bytes(piece))
      assert.deepStrictEqual(answered.exit(), Exit.succeed("one"))
      assert.deepStrictEqual(requests.map((request) => [request.id, request.method]), [[7, "host.add"]])
      assert.deepStrictEqual(notifications, [["hi", `{"jsonrpc":"2.0","method":"log","params":"hi"}`.length]])
      assert.strictEqual(incoming.notificationsReceived, 1)
    }))

  it.effect("concurrent mode: lines that are not messages and replies to unknown ids are counted and logged, never fatal", () =>
    Effect.gen(function*() {
      const { incoming, end, call, logged } = yield* dispatcherWith({ maxConcurrent: 4 })
      const pending = call()
      incoming.push(bytes(`not json\n{"jsonrpc":"2.0","id":99,"result":1}\n{"jsonrpc":"2.0","id":1,"result":"ok"}\n`))
      assert.isFalse(end.isOver)
      assert.strictEqual(incoming.invalidLines, 1)
      assert.strictEqual(incoming.unknownResponses, 1)
      assert.strictEqual(logged(), 2)
      assert.deepStrictEqual(pending.exit(), Exit.succeed("ok"))
    }))

  it.effect("a reply to a call already given up counts as late, not unknown", () =>
    Effect.gen(function*() {
      const { incoming, calls, call } = yield* dispatcherWith({ maxConcurrent: 4 })
      const given = call()
      calls.cancel(given.entry)
      incoming.push(bytes(`{"jsonrpc":"2.0","id":1,"result":"too late"}\n`))
      assert.strictEqual(incoming.lateResponses, 1)
      assert.strictEqual(incoming.unknownResponses, 0)
      assert.isUndefined(given.exit())
    }))

  it.effect("serial mode: a reply with another id than the call in flight ends the connection with IdMismatch", () =>
    Effect.gen(function*() {
      const { incoming, end, call } = yield* dispatcherWith({ maxConcurrent: 1 })
      const inFlight = call()
      incoming.push(bytes(`{"jsonrpc":"2.0","id":5,"result":1}\n`))
      const reason = endReason(end)
      assert.instanceOf(reason, PluginClientError.IdMismatch)
      assert.strictEqual(reason.expected, 1)
      assert.strictEqual(reason.got, 5)
      assert.isTrue(Exit.isFailure(inFlight.exit()!))
    }))

  it.effect("serial mode: a line that is not a message while a call is in flight ends the connection with MalformedResponse and its excerpt", () =>
    Effect.gen(function*() {
      const { incoming, end, call } = yield* dispatcherWith({ maxConcurrent: 1 })
      call()
      incoming.push(bytes("panic: oops\n"))
      const reason = endReason(end)
      assert.instanceOf(reason, PluginClientError.MalformedResponse)
      assert.strictEqual(reason.line, "panic: oops")
    }))

  it.effect("serial mode: a line that is not a message with no call in flight is only counted", () =>
    Effect.gen(function*() {
      const { incoming, end } = yield* dispatcherWith({ maxConcurrent: 1 })
      incoming.push(bytes("banner\n"))
      assert.isFalse(end.isOver)
      assert.strictEqual(incoming.invalidLines, 1)
    }))

  it.effect("serial mode: an error reply without an id belongs to the call in flight; lenient, a bare result does too", () =>
    Effect.gen(function*() {
      const strict = yield* dispatcherWith({ maxConcurrent: 1 })
      const failed = strict.call()
      strict.incoming.push(bytes(`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}\n`))
      assert.isFalse(strict.end.isOver)
      assert.isTrue(Exit.isFailure(failed.exit()!))

      const lenient = yield* dispatcherWith({ maxConcurrent: 1, lenient: true })
      const answered = lenient.call()
      lenient.incoming.push(bytes(`{"result":42}\n`))
      assert.deepStrictEqual(answered.exit(), Exit.succeed(42))
    }))

  it.effect("a line over maxLineBytes ends the connection with MalformedResponse", () =>
    Effect.gen(function*() {
      const { incoming, end } = yield* dispatcherWith({ maxConcurrent: 4, maxLineBytes: 64 })
      incoming.push(bytes(`{"jsonrpc":"2.0","method":"log","params":"${"x".repeat(100)}"}\n`))
      const reason = endReason(end)
      assert.instanceOf(reason, PluginClientError.MalformedResponse)
      assert.include(reason.detail, "maxLineBytes (64 bytes)")
    }))

  it.effect("a failed read ends the connection with Io naming it; nothing pushed after the end is read", () =>
    Effect.gen(function*() {
      const { incoming, end, notifications } = yield* dispatcherWith({ maxConcurrent: 4 })
      incoming.push(bytes(`{"jsonrpc":"2.0","method":"log","params":1}\n{"jsonrpc":"2.0","method":"log","params":2}`))
      incoming.finish("EIO")
      incoming.push(bytes(`\n{"jsonrpc":"2.0","method":"log","params":3}\n`))
      const reason = endReason(end)
      assert.instanceOf(reason, PluginClientError.Io)
      assert.strictEqual(reason.detail, "reading failed: EIO")
      assert.deepStrictEqual(notifications.map(([params]) => params), [1])
    }))

  it.effect("the end of the bytes delivers a last line without its newline", () =>
    Effect.gen(function*() {
      const { incoming, end, notifications } = yield* dispatcherWith({ maxConcurrent: 4 })
      incoming.push(bytes(`{"jsonrpc":"2.0","method":"log","params":1}`))
      assert.deepStrictEqual(notifications, [])
      incoming.finish()
      assert.deepStrictEqual(notifications.map(([params]) => params), [1])
      assert.isFalse(end.isOver)
    }))
})
