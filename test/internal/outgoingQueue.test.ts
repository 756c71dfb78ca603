import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { ConnectionEnd } from "../../src/internal/connectionEnd.ts"
import { OutgoingQueue, type Parked } from "../../src/internal/outgoingQueue.ts"
import * as JsonRpc from "../../src/JsonRpc.ts"
import * as PluginClientError from "../../src/PluginClientError.ts"

/**
 * A queue over an output whose reader the test plays: written lines count as queued until
 * `read` takes them (and tells the queue bytes went out); `refuse` makes the output refuse lines.
 */
const queueWith = (maxQueuedBytes: number) => {
  const written: Array<string> = []
  let queued = 0
  let refusing = false
  const end = new ConnectionEnd({ onClose: () => {}, fork: Effect.runFork })
  const queue = new OutgoingQueue({
    output: {
      writeLine: (line) => {
        if (refusing) return false
        written.push(line)
        queued += line.length + 1
        return true
      },
      queuedBytes: () => queued
    },
    maxQueuedBytes,
    end,
    compactAt: 4
  })
  return {
    queue,
    end,
    written,
    read: () => {
      queued = 0
      queue.onWritten()
    },
    refuse: () => void (refusing = true)
  }
}

const call = (): Parked => ({ line: undefined })
/** A line of `n` characters (`n + 1` bytes queued with its newline). */
const line = (name: string, n: number) => name.padEnd(n, ".")

describe("OutgoingQueue (lines to the other side, bounded by bytes)", () => {
  it("a call's line goes out at once while it fits, and is counted", () => {
    const { queue, written } = queueWith(100)
    queue.sendCall(call(), line("a", 49))
    queue.sendCall(call(), line("b", 49))
    assert.deepStrictEqual(written, [line("a", 49), line("b", 49)])
    assert.strictEqual(queue.requestsSent, 2)
    assert.isFalse(queue.isBlocked)
  })

  it("a call's line that would pass the cap is parked; parked lines go out in order as the other side reads", () => {
    const { queue, written, read } = queueWith(100)
    queue.sendCall(call(), line("a", 79))
    const b = call()
    queue.sendCall(b, line("b", 79))
    // Behind a parked line, even a small one waits its turn.
    queue.sendCall(call(), line("c", 9))
    assert.deepStrictEqual(written, [line("a", 79)])
    assert.strictEqual(b.line, line("b", 79))
    assert.isTrue(queue.isBlocked)
    read()
    assert.deepStrictEqual(written, [line("a", 79), line("b", 79), line("c", 9)])
    assert.isUndefined(b.line)
    assert.isFalse(queue.isBlocked)
    assert.strictEqual(queue.requestsSent, 3)
  })

  it("a parked call given up (its line cleared by its owner) is skipped, never written", () => {
    const { queue, written, read } = queueWith(10)
    queue.sendCall(call(), line("a", 9))
    const given = call()
    queue.sendCall(given, line("b", 9))
    queue.sendCall(call(), line("c", 9))
    given.line = undefined
    read()
    assert.deepStrictEqual(written, [line("a", 9), line("c", 9)])
    read()
    assert.isFalse(queue.isBlocked)
  })

  it("a thousand calls given up while parked never reach the other side; the call parked after them does", () => {
    const { queue, written, read } = queueWith(10)
    queue.sendCall(call(), line("first", 9))
    for (let i = 0; i < 1000; i++) {
      const given = call()
      queue.sendCall(given, line(`given${i}`, 9))
      given.line = undefined
    }
    queue.sendCall(call(), line("last", 9))
    read()
    assert.deepStrictEqual(written, [line("first", 9), line("last", 9)])
  })

  it("alone in the queue, a line larger than the cap goes out", () => {
    const { queue, written } = queueWith(10)
    queue.sendCall(call(), line("huge", 1000))
    assert.deepStrictEqual(written, [line("huge", 1000)])
    // Behind it, nothing fits until the other side reads.
    assert.isFalse(queue.fits(1, 10))
  })

  it("a notification has room only while no call's line waits and the queue is under the cap", () => {
    const { queue, read } = queueWith(100)
    assert.isTrue(queue.hasRoom())
    queue.sendCall(call(), line("a", 99))
    assert.isFalse(queue.hasRoom())
    read()
    queue.sendCall(call(), line("a", 49))
    queue.sendCall(call(), line("b", 79))
    assert.isTrue(queue.isBlocked)
    assert.isFalse(queue.hasRoom())
    const refusal = queue.refuseNotification()
    assert.instanceOf(refusal, PluginClientError.Backpressure)
    assert.strictEqual(refusal.queuedBytes, 50)
    assert.strictEqual(refusal.limit, 100)
    assert.strictEqual(queue.notificationsRefused, 1)
  })

  it("once the output refuses a line, later lines are not even tried", () => {
    const { queue, written, refuse } = queueWith(100)
    refuse()
    assert.isFalse(queue.write("a"))
    queue.sendCall(call(), "b")
    assert.isFalse(queue.write("c"))
    assert.deepStrictEqual(written, [])
    assert.strictEqual(queue.requestsSent, 0)
  })

  it("a reply may fill the queue to twice the cap; one beyond ends the connection with Backpressure, and no reply goes out after", () => {
    const { queue, written, end } = queueWith(100)
    const reply = (id: number) => JsonRpc.success(id, "x".repeat(20))
    for (let id = 1; id <= 3; id++) queue.reply(reply(id))
    assert.strictEqual(written.length, 3)
    assert.isFalse(end.isOver)
    queue.reply(reply(4))
    assert.strictEqual(written.length, 3)
    const reason = end.reason()
    assert.instanceOf(reason, PluginClientError.Backpressure)
    assert.strictEqual(reason.limit, 200)
    queue.reply(reply(5))
    assert.strictEqual(written.length, 3)
  })

  it("after any other end, replies of handlers still running go out", () => {
    const { queue, written, end } = queueWith(100)
    end.close(new PluginClientError.Closed({ detail: "stdin closed" }))
    queue.reply(JsonRpc.success(1, "late"))
    assert.strictEqual(written.length, 1)
  })

  it("after the end, parked lines are forgotten and never written", () => {
    const { queue, written, read, end } = queueWith(10)
    queue.sendCall(call(), line("a", 9))
    queue.sendCall(call(), line("b", 9))
    end.close(new PluginClientError.Closed({ detail: "connection closed" }))
    queue.close()
    read()
    assert.deepStrictEqual(written, [line("a", 9)])
    assert.isFalse(queue.isBlocked)
  })
})
