import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as NotificationInbox from "../../src/internal/notificationInbox.ts"
import type * as JsonRpc from "../../src/JsonRpc.ts"

const notification = (n: number): JsonRpc.Notification => ({ _tag: "Notification", method: "n", params: n })

/** An inbox whose `run` forks into the test's fiber context, with what it handed over and dropped. */
const inboxWith = (handler: (n: number) => Effect.Effect<void>, bounds: { readonly maxCount: number; readonly maxBytes: number }) =>
  Effect.map(Effect.context<never>(), (context) => {
    const fork = Effect.runForkWith(context)
    let dropped = 0
    const inbox = NotificationInbox.make({
      handler: (message) => handler(message.params as number),
      ...bounds,
      run: (effect) => void fork(effect),
      onDrop: () => void dropped++
    })
    return { inbox, dropped: () => dropped }
  })

describe("NotificationInbox (notifications read and not yet handled)", () => {
  it.effect("a handler that returns at once gets each notification as it is offered, and nothing is queued", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      const { inbox, dropped } = yield* inboxWith((n) => Effect.sync(() => void seen.push(n)), { maxCount: 1, maxBytes: 1 })
      for (let n = 1; n <= 10_000; n++) {
        inbox.offer(notification(n), 100)
        assert.strictEqual(seen.length, n)
      }
      assert.strictEqual(dropped(), 0)
      assert.strictEqual(inbox.queuedBytes(), 0)
    }))

  it.effect("behind a suspended handler notifications queue in order up to the bytes bound; the rest are dropped", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const seen: Array<number> = []
      const { inbox, dropped } = yield* inboxWith(
        (n) => (n === 1 ? Deferred.await(gate) : Effect.void).pipe(Effect.andThen(Effect.sync(() => void seen.push(n)))),
        { maxCount: 100, maxBytes: 250 }
      )
      for (let n = 1; n <= 6; n++) inbox.offer(notification(n), 100)
      // 1 runs; 2 and 3 wait (200 bytes); 4, 5 and 6 would take it past 250.
      assert.strictEqual(inbox.queuedBytes(), 200)
      assert.strictEqual(dropped(), 3)
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.yieldNow
      assert.deepStrictEqual(seen, [1, 2, 3])
      assert.strictEqual(inbox.queuedBytes(), 0)
      // Delivered: the next one is handed over at once again.
      inbox.offer(notification(7), 100)
      assert.deepStrictEqual(seen, [1, 2, 3, 7])
    }))

  it.effect("the count bound holds for small notifications; one waiting notification is allowed whatever its size", () =>
    Effect.gen(function*() {
      const { inbox, dropped } = yield* inboxWith(() => Effect.never, { maxCount: 2, maxBytes: 10 })
      inbox.offer(notification(1), 1)
      inbox.offer(notification(2), 1_000)
      assert.strictEqual(dropped(), 0, "a single large one still waits")
      inbox.offer(notification(3), 1)
      assert.strictEqual(dropped(), 1, "over the bytes bound")
      const small = yield* inboxWith(() => Effect.never, { maxCount: 2, maxBytes: 1_000 })
      for (let n = 1; n <= 5; n++) small.inbox.offer(notification(n), 1)
      assert.strictEqual(small.dropped(), 2, "one runs, two wait, two are dropped")
    }))
})
