/**
 * The notifications a connection has read and its handler has not taken yet, delivered in order
 * and bounded by count and by bytes (`RpcPeer`'s `maxQueuedNotifications` and
 * `maxQueuedNotificationBytes`).
 *
 * A notification read while no handler runs is handed over at once, in the read callback: a
 * handler that returns at once is over before the next line is read, and nothing is queued. One
 * that suspends makes the later notifications queue behind it, and the fiber that runs it
 * delivers them in order; beyond the bounds they are dropped (the owner counts them). A consumer
 * fiber woken once per turn of the event loop instead saw a few hundred notifications per turn
 * while a read burst brought tens of thousands, and dropped 95 % of a flood even with a handler
 * that returned at once.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as JsonRpc from "../JsonRpc.ts"

/** A notification waiting for the handler, with the length of its line. */
interface Queued {
  readonly message: JsonRpc.Notification
  readonly bytes: number
}

/**
 * Where a connection puts the notifications it reads.
 */
export interface NotificationInbox {
  /** Hands over one notification; `bytes` is the length of its line. */
  readonly offer: (message: JsonRpc.Notification, bytes: number) => void
  /** Bytes of the notifications waiting for the handler. */
  readonly queuedBytes: () => number
}

/**
 * An inbox delivering to `handler`. `run` starts an effect at once (the connection's own fibers,
 * interrupted with it); `onDrop` hears of every notification dropped.
 */
export const make = (options: {
  readonly handler: (notification: JsonRpc.Notification) => Effect.Effect<void>
  readonly maxCount: number
  readonly maxBytes: number
  readonly run: (effect: Effect.Effect<void>) => void
  readonly onDrop: () => void
}): NotificationInbox => {
  const { handler, maxBytes, maxCount } = options
  // Waiting notifications from `head` on; `delivering` while a handler runs (or its fiber
  // delivers the backlog).
  let backlog: Array<Queued | undefined> = []
  let head = 0
  let bytes = 0
  let delivering = false

  const handle = (n: JsonRpc.Notification) =>
    Effect.suspend(() => handler(n)).pipe(
      Effect.catchCause((cause) => Effect.logWarning(`notification handler for ${n.method} failed`, Cause.pretty(cause)))
    )
  const deliverBacklog: Effect.Effect<void> = Effect.suspend(() => {
    const next = backlog[head]
    if (next === undefined) {
      backlog = []
      head = 0
      delivering = false
      return Effect.void
    }
    backlog[head++] = undefined
    bytes -= next.bytes
    return Effect.andThen(handle(next.message), deliverBacklog)
  })

  const offer = (message: JsonRpc.Notification, size: number) => {
    if (!delivering) {
      delivering = true
      return options.run(Effect.andThen(handle(message), deliverBacklog))
    }
    const queued = backlog.length - head
    // One waiting notification is always allowed, however large: the bound is on what piles up.
    if (queued >= maxCount || (queued > 0 && bytes + size > maxBytes)) return options.onDrop()
    backlog.push({ message, bytes: size })
    bytes += size
  }

  return { offer, queuedBytes: () => bytes }
}
