/**
 * The message broker long-lived plugins are reached through: subject-addressed request/reply,
 * publish/subscribe and queue-group serving, as a service with two implementations.
 *
 * This module owns the `Broker` service contract, its error family (`BrokerError` with a
 * `reason` union) and the in-process implementation `layerMemory`. The subject rules are those
 * of NATS: subjects are `.`-separated tokens, a subscription may use `*` (exactly one token)
 * and `>` (one or more trailing tokens), and subscribers that share a queue group receive each
 * message once between them. The NATS implementation lives in `NatsBroker` (subpath export
 * `effect-plugin-host/nats`) so that this module, and everything built on it, never loads a
 * network client.
 *
 * Payloads are bytes; `requestJson` is the JSON convenience the poller router uses.
 * `requestMany` is scatter-gather: one request, every reply that arrives before its limits
 * (the NATS micro-services discovery asks all instances of a service this way).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { formatDuration } from "./internal/formatDuration.ts"
import * as ReplyGathering from "./internal/replyGathering.ts"

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

/**
 * A request found nobody subscribed to its subject.
 *
 * @category reasons
 */
export class NoResponders extends Schema.TaggedError<NoResponders>()("NoResponders", {
  subject: Schema.String
}) {
  override get message() {
    return `no responders for \`${this.subject}\``
  }
}

/**
 * A request got no reply within its timeout.
 *
 * @category reasons
 */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  subject: Schema.String,
  timeout: Schema.Duration
}) {
  override get message() {
    return `request to \`${this.subject}\` timed out after ${formatDuration(this.timeout)}`
  }
}

/**
 * The broker could not be reached (connecting failed, or the client reported an error).
 *
 * @category reasons
 */
export class Connection extends Schema.TaggedError<Connection>()("Connection", {
  detail: Schema.String
}) {
  override get message() {
    return `broker connection failed: ${this.detail}`
  }
}

/**
 * A reply arrived but is not what the caller expects (for `requestJson`: not JSON).
 *
 * @category reasons
 */
export class BadReply extends Schema.TaggedError<BadReply>()("BadReply", {
  subject: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `bad reply from \`${this.subject}\`: ${this.detail}`
  }
}

/**
 * The broker is closed (its layer was released, or the connection was closed or is draining).
 *
 * @category reasons
 */
export class Closed extends Schema.TaggedError<Closed>()("Closed", {
  detail: Schema.String
}) {
  override get message() {
    return `broker is closed: ${this.detail}`
  }
}

/**
 * Every reason a broker operation can fail.
 *
 * @category models
 */
export const Reason = Schema.Union([NoResponders, Timeout, Connection, BadReply, Closed])
export type Reason = typeof Reason.Type

/**
 * A failed broker operation. Handle one reason with
 * `Effect.catchReason("BrokerError", "NoResponders", …)`.
 *
 * @category errors
 */
export class BrokerError extends Schema.TaggedError<BrokerError>()("BrokerError", {
  reason: Reason
}) {
  override get message() {
    return this.reason.message
  }
}

/**
 * Builds a {@link BrokerError}.
 *
 * @category constructors
 */
export const make = (reason: Reason): BrokerError => new BrokerError({ reason })

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * A message received by a subscription. `reply` is present when the sender waits for an
 * answer (a request); only the first reply to a request counts.
 *
 * @category models
 */
export interface BrokerMessage {
  readonly subject: string
  readonly data: Uint8Array
  readonly reply: ((data: Uint8Array) => Effect.Effect<void, BrokerError>) | undefined
}

/**
 * Options of a subscription: subscribers with the same `queue` share the messages (each
 * message goes to one of them).
 *
 * @category models
 */
export interface SubscribeOptions {
  readonly queue?: string | undefined
}

/**
 * When a scatter-gather request (`requestMany`) stops collecting replies: at the first of
 * `maxWait` after the request was sent, `maxReplies` replies, or `quiet` without a reply after
 * the latest one (only once a reply has arrived). The NATS client's `requestMany` strategies
 * (`timer`, `count`, `stall`), combined.
 *
 * @category models
 */
export interface RequestManyOptions {
  readonly maxWait: Duration.Input
  readonly maxReplies?: number | undefined
  readonly quiet?: Duration.Input | undefined
}

/**
 * The broker service.
 *
 * - `request` sends `data` to `subject` and waits for the first reply; it fails with
 *   `NoResponders` when nobody is subscribed and `Timeout` after `timeout`.
 * - `requestMany` sends `data` to `subject` and streams every reply (each subscriber answers;
 *   one member of each queue group) until the limits of {@link RequestManyOptions}; it fails
 *   with `NoResponders` when nobody is subscribed. Running out of time is not an error: the
 *   stream just ends.
 * - `publish` sends without waiting (nobody subscribed is not an error).
 * - `subscribe` streams the messages of a subject pattern while the stream runs.
 * - `serve` answers requests on a subject pattern with `handler`, concurrently, until the
 *   current Scope closes; the handler owns its failures (it must produce the reply bytes), a
 *   handler that dies sends no reply and is logged.
 *
 * @category models
 */
export class Broker extends Context.Service<Broker, {
  readonly request: (subject: string, data: Uint8Array, timeout: Duration.Input) => Effect.Effect<Uint8Array, BrokerError>
  readonly requestMany: (subject: string, data: Uint8Array, options: RequestManyOptions) => Stream.Stream<Uint8Array, BrokerError>
  readonly publish: (subject: string, data: Uint8Array) => Effect.Effect<void, BrokerError>
  readonly subscribe: (subject: string, options?: SubscribeOptions) => Stream.Stream<BrokerMessage, BrokerError>
  readonly serve: (
    subject: string,
    handler: (data: Uint8Array) => Effect.Effect<Uint8Array>,
    options?: SubscribeOptions
  ) => Effect.Effect<void, BrokerError, Scope.Scope>
}>()("effect-plugin-host/Broker") {}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/**
 * Encodes a value as UTF-8 JSON (`undefined` as `null`). A value JSON cannot represent (a
 * `BigInt`, a cycle) is a defect: it is a programming error, not a broker failure.
 *
 * @category JSON
 */
export const encodeJson = (value: unknown): Effect.Effect<Uint8Array> =>
  Effect.try({
    try: () => encoder.encode(JSON.stringify(value) ?? "null"),
    catch: (cause) => cause
  }).pipe(Effect.orDie)

/**
 * Decodes UTF-8 JSON bytes; the failure is a human-readable reason.
 *
 * @category JSON
 */
export const decodeJson = (data: Uint8Array): Effect.Effect<unknown, string> =>
  Effect.try({
    try: (): unknown => JSON.parse(decoder.decode(data)),
    catch: (cause) => (cause instanceof Error ? cause.message : String(cause))
  })

/**
 * Sends `value` as JSON to `subject` and parses the reply as JSON. A reply that is not JSON
 * fails with a `BadReply` reason (quoting the start of the reply).
 *
 * @category JSON
 */
export const requestJson = (
  subject: string,
  value: unknown,
  timeout: Duration.Input
): Effect.Effect<unknown, BrokerError, Broker> =>
  Effect.gen(function*() {
    const broker = yield* Broker
    const payload = yield* encodeJson(value)
    const reply = yield* broker.request(subject, payload, timeout)
    return yield* decodeJson(reply).pipe(
      Effect.mapError((detail) =>
        make(new BadReply({ subject, detail: `reply is not JSON (${detail}): ${excerpt(reply)}` }))
      )
    )
  })

const excerpt = (data: Uint8Array): string => {
  const text = new TextDecoder().decode(data.subarray(0, 200))
  return data.length > 200 ? `${text}…` : text
}

// ---------------------------------------------------------------------------------------------
// subjects
// ---------------------------------------------------------------------------------------------

/**
 * Whether a subscription pattern (with NATS wildcards `*` and `>`) matches a subject.
 *
 * @category subjects
 */
export const subjectMatches = (pattern: string, subject: string): boolean =>
  tokensMatch(pattern.split("."), subject.split("."))

const tokensMatch = (pattern: ReadonlyArray<string>, subject: ReadonlyArray<string>): boolean => {
  for (let i = 0; i < pattern.length; i++) {
    const token = pattern[i]
    if (token === ">" && i === pattern.length - 1) return subject.length > i
    if (i >= subject.length) return false
    if (token !== "*" && token !== subject[i]) return false
  }
  return pattern.length === subject.length
}

// ---------------------------------------------------------------------------------------------
// in-memory implementation
// ---------------------------------------------------------------------------------------------

interface Subscriber {
  readonly pattern: ReadonlyArray<string>
  readonly queue: string | undefined
  readonly deliver: (message: BrokerMessage) => void
  readonly close: (error: BrokerError) => void
}

/** One in-memory broker: its subscribers, the requests and gatherings waiting on it. */
interface Memory {
  readonly subscribers: Map<number, Subscriber>
  readonly pendingRequests: Set<Deferred.Deferred<Uint8Array, BrokerError>>
  readonly gatherings: Set<Queue.Queue<Uint8Array, BrokerError | Cause.Done>>
  readonly queueCursors: Map<string, number>
  nextId: number
  closed: boolean
}

const closedError = () => make(new Closed({ detail: "the in-memory broker was released" }))

/** Fails everything still waiting on the broker, which takes no more work. */
const release = (memory: Memory) => {
  memory.closed = true
  const error = closedError()
  for (const subscriber of memory.subscribers.values()) subscriber.close(error)
  memory.subscribers.clear()
  for (const deferred of memory.pendingRequests) Deferred.doneUnsafe(deferred, Exit.fail(error))
  memory.pendingRequests.clear()
  for (const inbox of memory.gatherings) Queue.failCauseUnsafe(inbox, Cause.fail(error))
  memory.gatherings.clear()
}

const register = (memory: Memory, subscriber: Subscriber): number => {
  const id = memory.nextId++
  memory.subscribers.set(id, subscriber)
  return id
}

/** The subscribers a message to `subject` goes to: every plain one, one per queue group. */
const route = (memory: Memory, subject: string): Array<Subscriber> => {
  const tokens = subject.split(".")
  const targets: Array<Subscriber> = []
  const groups = new Map<string, Array<Subscriber>>()
  for (const subscriber of memory.subscribers.values()) {
    if (!tokensMatch(subscriber.pattern, tokens)) continue
    if (subscriber.queue === undefined) {
      targets.push(subscriber)
    } else {
      const members = groups.get(subscriber.queue)
      if (members === undefined) groups.set(subscriber.queue, [subscriber])
      else members.push(subscriber)
    }
  }
  for (const [queue, members] of groups) {
    const cursor = memory.queueCursors.get(queue) ?? 0
    memory.queueCursors.set(queue, cursor + 1)
    const member = members[cursor % members.length]
    if (member !== undefined) targets.push(member)
  }
  return targets
}

const dispatch = (targets: ReadonlyArray<Subscriber>, message: BrokerMessage) => {
  for (const target of targets) target.deliver(message)
}

const memoryRequest = (memory: Memory): Broker["Service"]["request"] => (subject, data, timeout) =>
  Effect.suspend(() => {
    if (memory.closed) return Effect.fail(closedError())
    const targets = route(memory, subject)
    if (targets.length === 0) return Effect.fail(make(new NoResponders({ subject })))
    const duration = Duration.fromInputUnsafe(timeout)
    const deferred = Deferred.makeUnsafe<Uint8Array, BrokerError>()
    memory.pendingRequests.add(deferred)
    const reply = (bytes: Uint8Array) =>
      Effect.sync(() => {
        Deferred.doneUnsafe(deferred, Exit.succeed(bytes.slice()))
      })
    dispatch(targets, { subject, data: data.slice(), reply })
    return Deferred.await(deferred).pipe(
      Effect.timeoutOrElse({
        duration,
        orElse: () => Effect.fail(make(new Timeout({ subject, timeout: duration })))
      }),
      Effect.ensuring(Effect.sync(() => memory.pendingRequests.delete(deferred)))
    )
  })

/** A reply inbox for `requestMany`, closed with the stream (or failed with the broker). */
const openMemoryInbox = (memory: Memory, subject: string, data: Uint8Array) =>
  Effect.gen(function*() {
    if (memory.closed) return yield* Effect.fail(closedError())
    const targets = route(memory, subject)
    if (targets.length === 0) return yield* Effect.fail(make(new NoResponders({ subject })))
    const inbox = yield* Effect.acquireRelease(
      Queue.unbounded<Uint8Array, BrokerError | Cause.Done>().pipe(Effect.tap((queue) => Effect.sync(() => memory.gatherings.add(queue)))),
      (queue) => Effect.sync(() => memory.gatherings.delete(queue))
    )
    const reply = (bytes: Uint8Array) => Effect.sync(() => void Queue.offerUnsafe(inbox, bytes.slice()))
    dispatch(targets, { subject, data: data.slice(), reply })
    return inbox
  })

const memoryPublish = (memory: Memory): Broker["Service"]["publish"] => (subject, data) =>
  Effect.suspend(() => {
    if (memory.closed) return Effect.fail(closedError())
    dispatch(route(memory, subject), { subject, data: data.slice(), reply: undefined })
    return Effect.void
  })

const memorySubscribe = (memory: Memory): Broker["Service"]["subscribe"] => (subject, options) =>
  Stream.callback<BrokerMessage, BrokerError>((queue) =>
    Effect.suspend(() => {
      if (memory.closed) return Effect.fail(closedError())
      return Effect.acquireRelease(
        Effect.sync(() =>
          register(memory, {
            pattern: subject.split("."),
            queue: options?.queue,
            deliver: (message) => void Queue.offerUnsafe(queue, message),
            close: (error) => void Queue.failCauseUnsafe(queue, Cause.fail(error))
          })
        ),
        (id) => Effect.sync(() => memory.subscribers.delete(id))
      )
    })
  )

const memoryServe = (memory: Memory): Broker["Service"]["serve"] => (subject, handler, options) =>
  Effect.gen(function*() {
    if (memory.closed) return yield* Effect.fail(closedError())
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const id = register(memory, {
      pattern: subject.split("."),
      queue: options?.queue,
      deliver: (message) =>
        void run(
          Effect.suspend(() => handler(message.data)).pipe(
            Effect.flatMap((bytes) => message.reply === undefined ? Effect.void : message.reply(bytes)),
            Effect.catchCause((cause) =>
              Cause.hasInterruptsOnly(cause)
                ? Effect.void
                : Effect.logError(`broker handler for \`${message.subject}\` failed; no reply sent`, cause)
            )
          )
        ),
      close: () => undefined
    })
    // Registered after the FiberSet, so released before it: no new work, then interrupt.
    yield* Effect.addFinalizer(() => Effect.sync(() => memory.subscribers.delete(id)))
  })

/**
 * Builds an in-process broker living in the current Scope (see {@link layerMemory}).
 *
 * @category constructors
 */
export const makeMemory: Effect.Effect<Broker["Service"], never, Scope.Scope> = Effect.gen(function*() {
  const memory: Memory = {
    subscribers: new Map(),
    pendingRequests: new Set(),
    gatherings: new Set(),
    queueCursors: new Map(),
    nextId: 0,
    closed: false
  }
  yield* Effect.addFinalizer(() => Effect.sync(() => release(memory)))
  return Broker.of({
    request: memoryRequest(memory),
    requestMany: (subject, data, options) => ReplyGathering.gather(openMemoryInbox(memory, subject, data), options),
    publish: memoryPublish(memory),
    subscribe: memorySubscribe(memory),
    serve: memoryServe(memory)
  })
})

/**
 * An in-process broker: exact subjects plus the NATS wildcards `*` and `>`; queue groups
 * deliver each message to one member, round robin; a request nobody serves fails at once with
 * `NoResponders`; request timeouts and the limits of `requestMany` run on the Effect Clock (so
 * `TestClock` drives them).
 * Releasing the layer fails waiting requests and running subscriptions with `Closed`.
 *
 * @category layers
 */
export const layerMemory: Layer.Layer<Broker> = Layer.effect(Broker, makeMemory)
