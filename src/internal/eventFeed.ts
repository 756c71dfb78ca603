/**
 * A client's events, fanned out to its listeners without ever waiting for one.
 *
 * Every subscriber (the `onEvent` listener, each running `events` stream) has a queue of its
 * own; publishing only enqueues, so it never blocks a transition, a call or a stop, and a slow
 * subscriber delays nobody but itself. A host that makes the client on its own behalf (the
 * `PluginManager`) may instead observe every event synchronously as it is published: an
 * observer that only records or re-publishes needs no queue and no fiber of its own, which a
 * host with a thousand idle plugins would otherwise keep parked, one per plugin. Memory stays bounded: what the plugin says (logs,
 * notifications, stream values) is dropped for a subscriber `backlog` events behind, and counted;
 * the events of the plugin's life (a few per spawn) are always queued.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/** The fan-out of one client's events. */
export interface EventFeed<A> {
  /** Enqueues `event` for every subscriber, now; never waits. */
  readonly publish: (event: A) => void
  /** A queue of every event published from now on, until the feed ends. */
  readonly attach: Effect.Effect<Queue.Dequeue<A, Cause.Done>>
  /** The events published from the moment the stream starts, until the feed ends. */
  readonly subscribe: Stream.Stream<A>
  /** Events dropped for subscribers that fell too far behind, since the feed began. */
  readonly dropped: () => number
  /** Ends every subscription once it has taken what was published before. */
  readonly end: Effect.Effect<void>
}

/**
 * Makes a feed. `droppable` says which events a subscriber `backlog` behind may lose; `onDrop`
 * is told the running total at each drop (to warn at 1, 10, 100…). `observer`, if any, is
 * called with every event as it is published, before the subscribers get it, and never loses
 * one: it must return at once and never throw (it runs inside whatever published).
 */
export const make = <A>(options: {
  readonly backlog: number
  readonly droppable: (event: A) => boolean
  readonly onDrop: (total: number) => void
  readonly observer?: ((event: A) => void) | undefined
}): Effect.Effect<EventFeed<A>> =>
  Effect.sync(() => {
    const subscribers = new Set<Queue.Queue<A, Cause.Done>>()
    const counter = { dropped: 0 }
    const observer = options.observer
    const publish = (event: A): void => {
      if (observer !== undefined) observer(event)
      for (const queue of subscribers) {
        if (Queue.sizeUnsafe(queue) < options.backlog || !options.droppable(event)) {
          Queue.offerUnsafe(queue, event)
        } else {
          counter.dropped++
          options.onDrop(counter.dropped)
        }
      }
    }
    const attach = Effect.map(Queue.unbounded<A, Cause.Done>(), (queue) => {
      subscribers.add(queue)
      return queue
    })
    const subscribe: Stream.Stream<A> = Stream.unwrap(
      Effect.acquireRelease(attach, (queue) => Effect.sync(() => subscribers.delete(queue))).pipe(Effect.map(Stream.fromQueue))
    )
    const end = Effect.suspend(() => Effect.forEach([...subscribers], (queue) => Queue.end(queue), { discard: true }))
    return { publish, attach, subscribe, dropped: () => counter.dropped, end }
  })

/**
 * Runs `listener` on every event of `feed` from now on, in order, on a fiber `scope` owns. A listener that
 * fails is reported with `onFailure` and keeps receiving; an interrupt ends it.
 */
export const listen = <A>(
  feed: EventFeed<A>,
  listener: (event: A) => Effect.Effect<void>,
  onFailure: (cause: Cause.Cause<never>) => Effect.Effect<void>,
  scope: Scope.Scope
): Effect.Effect<void> =>
  Effect.flatMap(feed.attach, (queue) =>
    Stream.fromQueue(queue).pipe(
      Stream.runForEach((event) =>
        listener(event).pipe(Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : onFailure(cause)))
      ),
      Effect.forkIn(scope),
      Effect.asVoid
    ))
