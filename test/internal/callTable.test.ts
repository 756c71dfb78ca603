import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { TestClock } from "effect/testing"
import { type Call, CallTable } from "../../src/internal/callTable.ts"
import { ConnectionEnd } from "../../src/internal/connectionEnd.ts"
import { OutgoingQueue } from "../../src/internal/outgoingQueue.ts"
import * as JsonRpc from "../../src/JsonRpc.ts"
import * as PluginClientError from "../../src/PluginClientError.ts"

type CallExit = Exit.Exit<unknown, PluginClientError.PluginClientError>

/** Lets the sweeper reach its sleep without time passing. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/**
 * A table over an output that takes every line (the ids it was sent are in `sent`) and reports
 * `backlog.bytes` queued (under a cap of 1024), in the test's context (its TestClock), ended
 * like a connection: the table fails what is left.
 */
const tableWith = (maxConcurrent: number) =>
  Effect.gen(function*() {
    const fork = Effect.runForkWith(yield* Effect.context<never>())
    const sent: Array<number> = []
    const backlog = { bytes: 0 }
    const fail = (reason: PluginClientError.Reason) => PluginClientError.make("test", reason)
    const end: ConnectionEnd = new ConnectionEnd({ fork, onClose: () => table.failAll(() => fail(end.reason())) })
    const outgoing = new OutgoingQueue({
      output: {
        writeLine: (line) => sent.push((JSON.parse(line) as { id: number }).id) > 0,
        queuedBytes: () => backlog.bytes
      },
      maxQueuedBytes: 1024,
      end,
      compactAt: 16
    })
    const table: CallTable = new CallTable({ maxConcurrent, clock: yield* Clock.Clock, fork, outgoing, end, fail, cancellation: "none", maxTimeoutMillis: 300_000 })
    /** Makes a call with `timeout`; its exit, once it has one, is `exit()`. */
    const call = (method: string, params: unknown = null, timeout: Duration.Input = "30 seconds") => {
      let exit: CallExit | undefined
      const duration = Duration.fromInputUnsafe(timeout)
      const entry: Call = {
        method,
        params,
        timeout: duration,
        timeoutMillis: Duration.toMillis(duration),
        resume: (result) => {
          assert.isUndefined(exit, `${method} resumed twice`)
          exit = result
        },
        id: 0,
        deadline: 0,
        cancelled: false,
        line: undefined,
        progress: undefined,
        cap: 0
      }
      const problem = table.submit(entry)
      return { entry, problem, exit: () => exit }
    }
    const reply = (id: number, result: unknown) => table.settle(table.get(id)!, JsonRpc.success(id, result))
    /** The other side read everything. */
    const read = () => {
      backlog.bytes = 0
      outgoing.onWritten()
    }
    return { table, end, sent, call, reply, backlog, read }
  })

const reasonOf = (exit: CallExit | undefined) => {
  assert.isDefined(exit)
  assert.isTrue(Exit.isFailure(exit))
  if (!Exit.isFailure(exit)) throw new Error("not a failure")
  const error = exit.cause.reasons[0]
  if (error?._tag !== "Fail") throw new Error("not a typed failure")
  return error.error.reason
}

describe("CallTable (the calls a connection makes, their slots and timeouts)", () => {
  it.effect("a reply settles its call with the result; an error reply with a PluginError keeping the error object whole", () =>
    Effect.gen(function*() {
      const { table, call, sent } = yield* tableWith(4)
      const ok = call("ok")
      const bad = call("bad")
      assert.deepStrictEqual(sent, [1, 2])
      assert.strictEqual(table.size, 2)
      table.settle(table.get(1)!, JsonRpc.success(1, { n: 1 }))
      table.settle(table.get(2)!, JsonRpc.failure(2, { kind: "needs-credential" }))
      assert.deepStrictEqual(ok.exit(), Exit.succeed({ n: 1 }))
      const reason = reasonOf(bad.exit())
      assert.instanceOf(reason, PluginClientError.PluginError)
      assert.deepStrictEqual(reason.data, { kind: "needs-credential" })
      assert.strictEqual(table.size, 0)
      assert.strictEqual(table.responsesReceived, 2)
      assert.isUndefined(table.get(1))
    }))

  it.effect("calls beyond maxConcurrent wait in arrival order and are sent as slots free up; a given-up waiter is skipped", () =>
    Effect.gen(function*() {
      const { table, call, sent, reply } = yield* tableWith(2)
      const calls = ["a", "b", "c", "d", "e"].map((method) => call(method))
      assert.deepStrictEqual(sent, [1, 2])
      assert.strictEqual(calls[2]!.entry.id, 0)
      table.cancel(calls[2]!.entry)
      reply(1, "a")
      assert.deepStrictEqual(sent, [1, 2, 3])
      assert.strictEqual(calls[3]!.entry.id, 3)
      reply(2, "b")
      reply(3, "d")
      assert.deepStrictEqual(sent, [1, 2, 3, 4])
      assert.strictEqual(calls[4]!.entry.id, 4)
      assert.isUndefined(calls[2]!.exit())
      assert.deepStrictEqual(calls[3]!.exit(), Exit.succeed("d"))
    }))

  it.effect("a call given up after it was sent frees its slot, and a reply to it is recognised as late", () =>
    Effect.gen(function*() {
      const { table, call, sent } = yield* tableWith(1)
      const first = call("first")
      const second = call("second")
      table.cancel(first.entry)
      assert.deepStrictEqual(sent, [1, 2])
      assert.isUndefined(table.get(1))
      assert.isTrue(table.isAbandoned(1))
      assert.isFalse(table.isAbandoned(2))
      assert.strictEqual(second.entry.id, 2)
    }))

  it.effect("a call times out at its deadline and its slot goes to the next waiter, whose timeout starts when it is sent", () =>
    Effect.gen(function*() {
      const { table, call, sent } = yield* tableWith(1)
      const first = call("first", null, "10 seconds")
      const second = call("second", null, "10 seconds")
      yield* settle
      yield* TestClock.adjust("10 seconds")
      const reason = reasonOf(first.exit())
      assert.instanceOf(reason, PluginClientError.Timeout)
      assert.strictEqual(Duration.toMillis(reason.timeout), 10_000)
      assert.strictEqual(table.timeouts, 1)
      assert.isTrue(table.isAbandoned(1))
      assert.deepStrictEqual(sent, [1, 2])
      yield* TestClock.adjust("9999 millis")
      assert.isUndefined(second.exit())
      yield* TestClock.adjust("1 millis")
      assert.instanceOf(reasonOf(second.exit()), PluginClientError.Timeout)
      assert.strictEqual(table.size, 0)
    }))

  it.effect("a call whose line waits for room times out all the same, and its line is never written", () =>
    Effect.gen(function*() {
      const { call, sent, backlog, read } = yield* tableWith(4)
      backlog.bytes = 1024
      const blocked = call("blocked", null, "1 second")
      const behind = call("behind", null, "1 minute")
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.instanceOf(reasonOf(blocked.exit()), PluginClientError.Timeout)
      read()
      assert.deepStrictEqual(sent, [behind.entry.id])
    }))

  it.effect("serial mode tracks the call in flight until it is over", () =>
    Effect.gen(function*() {
      const { table, call, reply } = yield* tableWith(1)
      assert.isUndefined(table.inFlight)
      call("a")
      call("b")
      assert.strictEqual(table.inFlight, 1)
      reply(1, "a")
      assert.strictEqual(table.inFlight, 2)
      reply(2, "b")
      assert.isUndefined(table.inFlight)
    }))

  it.effect("params JSON cannot hold are refused with InvalidParams: nothing is sent and no slot is taken", () =>
    Effect.gen(function*() {
      const { table, call, sent } = yield* tableWith(1)
      const refused = call("big", { n: 1n })
      assert.instanceOf(refused.problem, PluginClientError.InvalidParams)
      assert.deepStrictEqual(sent, [])
      assert.strictEqual(table.size, 0)
      call("next")
      assert.strictEqual(table.size, 1)
    }))

  it.effect("the end fails sent and waiting calls alike with its reason, and no timeout fires after", () =>
    Effect.gen(function*() {
      const { table, end, call } = yield* tableWith(1)
      const sentCall = call("sent")
      const waiting = call("waiting")
      const given = call("given up")
      table.cancel(given.entry)
      yield* settle
      end.close(new PluginClientError.Exited({ code: 9, signal: null, requested: false, stderrExcerpt: "" }))
      assert.instanceOf(reasonOf(sentCall.exit()), PluginClientError.Exited)
      assert.instanceOf(reasonOf(waiting.exit()), PluginClientError.Exited)
      assert.isUndefined(given.exit())
      assert.strictEqual(table.size, 0)
      assert.isUndefined(table.inFlight)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(table.timeouts, 0)
    }))

  it.effect("an end with no call left builds no error", () =>
    Effect.gen(function*() {
      const { table } = yield* tableWith(4)
      table.failAll(() => assert.fail("the error was built"))
    }))
})
