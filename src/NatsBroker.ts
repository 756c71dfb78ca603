/**
 * The `Broker` service on a real NATS server (subpath export `effect-plugin-host/nats`).
 *
 * This module owns the NATS connection: it connects with `@nats-io/transport-node` (an optional
 * peer dependency, loaded only by programs that import this module), lets the client's own
 * reconnect logic ride out server restarts (logging disconnects and reconnects), and drains the
 * connection when its Scope closes (bounded; it falls back to `close()`). Client errors become
 * `BrokerError` reasons: a connect failure is `Connection` (naming the servers), a 503
 * "no responders" is `NoResponders`, a request timeout is `Timeout`, a closed or draining
 * connection is `Closed`. `request` is the client's request/reply done on one reply subscription
 * per connection, with the timeouts on the Effect `Clock` (see `makeRequests`). `serve` handles
 * each message in its own fiber, so one slow request never holds up the others. `requestMany`
 * subscribes its own inbox and publishes the request with it as the reply subject (the
 * server's 503 status there is `NoResponders`); the stop
 * rules are `Broker`'s, on the Effect Clock, rather than the client's `requestMany`, whose
 * strategies cannot be combined (a `stall` wait no longer honours `maxWait`).
 *
 * It is a transport and nothing more: serving a plugin worker over NATS is `PluginWorker`'s
 * business (`PluginWorker.mainBroker` loads this module when it runs; this one imports no
 * worker code).
 *
 * @since 0.1.0
 */
import {
  ClosedConnectionError,
  connect,
  createInbox,
  DrainingConnectionError,
  type Msg,
  PermissionViolationError,
  type NatsConnection,
  type NodeConnectionOptions,
  type Status,
  type Subscription
} from "@nats-io/transport-node"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Broker from "./Broker.ts"
import { formatDuration } from "./internal/formatDuration.ts"
import * as ReplyGathering from "./internal/replyGathering.ts"
import { TimeoutSweeper } from "./internal/timeoutSweeper.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * How to reach the NATS server(s).
 *
 * @category models
 */
export interface Options {
  /** `host:port` or `nats://host:port`, one or several (the client picks one, fails over to the others). */
  readonly servers: string | ReadonlyArray<string>
  /** The connection's name, shown by the server's monitoring. */
  readonly name?: string | undefined
  /** Bound on establishing the connection (per server). Default 10 s. */
  readonly timeout?: Duration.Input | undefined
  /** Bound on draining the connection when the Scope closes; then it is closed. Default 5 s. */
  readonly drainTimeout?: Duration.Input | undefined
  /** Reconnect attempts per server after a drop; `-1` (the default) retries forever. */
  readonly maxReconnectAttempts?: number | undefined
}

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error && cause.cause.message !== cause.message ? ` (${cause.cause.message})` : ""
    return `${cause.message}${inner}`
  }
  return String(cause)
}

/** A client error outside a request: closed/draining connection, or anything else. */
const clientError = (cause: unknown): Broker.BrokerError => {
  if (cause instanceof ClosedConnectionError || cause instanceof DrainingConnectionError) {
    return Broker.make(new Broker.Closed({ detail: describe(cause) }))
  }
  return Broker.make(new Broker.Connection({ detail: describe(cause) }))
}

/** setTimeout's range: a longer (or infinite) timeout would fire at once. */
const maxTimerMillis = 2_147_483_647

const toTimerMillis = (duration: Duration.Duration): number =>
  Math.min(maxTimerMillis, Math.max(1, Math.ceil(Duration.toMillis(duration))))

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

const toMessage = (msg: Msg): Broker.BrokerMessage => ({
  subject: msg.subject,
  data: msg.data,
  reply: msg.reply === undefined || msg.reply === ""
    ? undefined
    : (data) =>
      Effect.try({
        try: () => {
          msg.respond(data)
        },
        catch: clientError
      })
})

const unsubscribeQuietly = (subscription: Subscription) => {
  try {
    if (!subscription.isClosed()) subscription.unsubscribe()
  } catch {
    // The connection is already closed: so is the subscription.
  }
}

const logStatus = (status: Status): Effect.Effect<void> => {
  switch (status.type) {
    case "disconnect":
      return Effect.logWarning(`NATS disconnected from ${status.server}; reconnecting`)
    case "reconnect":
      return Effect.logInfo(`NATS reconnected to ${status.server}`)
    case "error":
      return Effect.logWarning(`NATS server error: ${describe(status.error)}`)
    case "slowConsumer":
      return Effect.logWarning(`NATS slow consumer on \`${status.sub.getSubject()}\` (${status.pending} pending)`)
    case "staleConnection":
      return Effect.logWarning("NATS connection is stale; reconnecting")
    default:
      return Effect.logDebug(`NATS status: ${status.type}`)
  }
}

/** Drains the connection (bounded by `drainTimeout`), else closes it. */
const closeConnection = (nc: NatsConnection, drainTimeout: Duration.Duration) =>
  Effect.tryPromise(() => nc.drain()).pipe(
    Effect.timeoutOption(drainTimeout),
    Effect.flatMap(Option.match({
      onNone: () => Effect.fail(`drain did not finish within ${formatDuration(drainTimeout)}`),
      onSome: () => Effect.void
    })),
    Effect.catch((problem) =>
      nc.isClosed()
        ? Effect.void
        : Effect.logWarning(`NATS drain failed (${typeof problem === "string" ? problem : describe(problem)}); closing`).pipe(
          Effect.andThen(Effect.tryPromise(() => nc.close()).pipe(Effect.timeoutOption("1 second"), Effect.ignore))
        )
    )
  )

/** A request waiting for its reply. */
interface Waiting {
  readonly subject: string
  readonly timeout: Duration.Duration
  readonly deadlineAt: number
  readonly resume: (effect: Effect.Effect<Uint8Array, Broker.BrokerError>) => void
}

/**
 * The requests of one connection, as the NATS client's own request/reply does them but without
 * its per-request promise, timer and error objects (two stack traces per request): one wildcard
 * reply subscription (`<inbox>.*`, made by the first request), the waiting requests by token,
 * and one sweeper on the Effect `Clock` for their timeouts. A reply resumes its request from the
 * client's message callback; the server's 503 status on it is `NoResponders`.
 */
const makeRequests = (nc: NatsConnection, clock: Clock.Clock, fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>) => {
  const waiting = new Map<number, Waiting>()
  let nextToken = 0
  /** `<inbox>.` while the reply subscription is open. */
  let base: string | undefined

  const failAll = (error: Broker.BrokerError) => {
    const failed = Effect.fail(error)
    for (const pending of waiting.values()) pending.resume(failed)
    waiting.clear()
  }

  const expireDue = (now: number): number => {
    let earliest = Number.POSITIVE_INFINITY
    for (const [token, pending] of waiting) {
      if (now >= pending.deadlineAt) {
        waiting.delete(token)
        pending.resume(Effect.fail(Broker.make(new Broker.Timeout({ subject: pending.subject, timeout: pending.timeout }))))
      } else if (pending.deadlineAt < earliest) earliest = pending.deadlineAt
    }
    return earliest
  }
  const sweeper = new TimeoutSweeper({ clock, fork, isOver: () => false, expireDue })

  const onReply = (error: Error | null, msg: Msg): void => {
    if (error !== null) return failAll(clientError(error))
    const prefix = base
    if (prefix === undefined) return
    const token = Number(msg.subject.slice(prefix.length))
    const pending = waiting.get(token)
    if (pending === undefined) return
    waiting.delete(token)
    const data = msg.data
    pending.resume(
      data.length === 0 && msg.headers?.code === 503
        ? Effect.fail(Broker.make(new Broker.NoResponders({ subject: pending.subject })))
        : Exit.succeed(data)
    )
  }

  /** The reply subscription, subscribed on first use (and again if the old one has closed). */
  const replyBase = (): string => {
    if (base !== undefined) return base
    const inbox = createInbox()
    const subscription = nc.subscribe(`${inbox}.*`, { callback: onReply })
    const opened = `${inbox}.`
    base = opened
    void subscription.closed.then((error) => {
      if (base === opened) base = undefined
      failAll(error instanceof Error ? clientError(error) : Broker.make(new Broker.Closed({ detail: "connection closed" })))
    })
    return opened
  }

  const request: Broker.Broker["Service"]["request"] = (subject, data, timeout) =>
    Effect.callback<Uint8Array, Broker.BrokerError>((resume) => {
      if (nc.isClosed() || nc.isDraining()) {
        resume(Effect.fail(Broker.make(new Broker.Closed({ detail: nc.isClosed() ? "connection closed" : "connection draining" }))))
        return
      }
      const token = ++nextToken
      const duration = Duration.fromInputUnsafe(timeout)
      const now = clock.currentTimeMillisUnsafe()
      const inMillis = Duration.toMillis(duration)
      try {
        nc.publish(subject, data, { reply: replyBase() + token })
      } catch (cause) {
        resume(Effect.fail(clientError(cause)))
        return
      }
      waiting.set(token, { subject, timeout: duration, deadlineAt: now + inMillis, resume })
      sweeper.watch(now + inMillis, inMillis)
      return Effect.sync(() => void waiting.delete(token))
    })

  /** The server refused to let this connection publish to `subject`: the first request sent there fails. */
  const publishRefused = (subject: string, cause: PermissionViolationError) => {
    for (const [token, pending] of waiting) {
      if (pending.subject !== subject) continue
      waiting.delete(token)
      pending.resume(Effect.fail(clientError(cause)))
      return
    }
  }

  return { request, publishRefused }
}

/** A private inbox for one `requestMany`, subscribed before the request is published. */
const openInbox = (nc: NatsConnection, subject: string, data: Uint8Array) =>
  Effect.gen(function*() {
    const replies = yield* Queue.unbounded<Uint8Array, Broker.BrokerError | Cause.Done>()
    const inbox = createInbox()
    yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          nc.subscribe(inbox, {
            callback: (error, msg) => {
              if (error !== null) Queue.failCauseUnsafe(replies, Cause.fail(clientError(error)))
              else if (msg.headers?.code === 503) {
                Queue.failCauseUnsafe(replies, Cause.fail(Broker.make(new Broker.NoResponders({ subject }))))
              } else Queue.offerUnsafe(replies, msg.data)
            }
          }),
        catch: clientError
      }),
      (subscription) => Effect.sync(() => unsubscribeQuietly(subscription))
    )
    yield* Effect.try({ try: () => nc.publish(subject, data, { reply: inbox }), catch: clientError })
    return replies
  })

const requestMany = (nc: NatsConnection): Broker.Broker["Service"]["requestMany"] => (subject, data, options) =>
  ReplyGathering.gather(openInbox(nc, subject, data), options)

const publish = (nc: NatsConnection): Broker.Broker["Service"]["publish"] => (subject, data) =>
  Effect.try({
    try: () => nc.publish(subject, data),
    catch: clientError
  })

const subscribe = (nc: NatsConnection): Broker.Broker["Service"]["subscribe"] => (subject, options) =>
  Stream.callback<Broker.BrokerMessage, Broker.BrokerError>((queue) =>
    Effect.acquireRelease(
      Effect.try({
        try: () =>
          nc.subscribe(subject, {
            ...(options?.queue === undefined ? {} : { queue: options.queue }),
            callback: (error, msg) => {
              if (error !== null) Queue.failCauseUnsafe(queue, Cause.fail(clientError(error)))
              else Queue.offerUnsafe(queue, toMessage(msg))
            }
          }),
        catch: clientError
      }),
      (subscription) => Effect.sync(() => unsubscribeQuietly(subscription))
    ).pipe(
      Effect.tap((subscription) =>
        Effect.sync(() => {
          // Ends the stream when the connection closes under it.
          void subscription.closed.then((error) => {
            Queue.failCauseUnsafe(
              queue,
              Cause.fail(error instanceof Error ? clientError(error) : Broker.make(new Broker.Closed({ detail: "subscription closed" })))
            )
          })
        })
      )
    )
  )

/** A served request's reply sent; a send that fails is logged (the requester times out). */
const respond = (msg: Msg, bytes: Uint8Array): Effect.Effect<void> => {
  try {
    msg.respond(bytes)
    return Effect.void
  } catch (cause) {
    return Effect.logError(`broker reply to \`${msg.subject}\` failed`, Cause.fail(clientError(cause)))
  }
}

const serve = (nc: NatsConnection): Broker.Broker["Service"]["serve"] => (subject, handler, options) =>
  Effect.gen(function*() {
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    // One frame per request around the handler: its reply is sent, or its failure logged.
    const handle = (msg: Msg): Effect.Effect<void> =>
      Effect.matchCauseEffect(Effect.suspend(() => handler(msg.data)), {
        onSuccess: (bytes) => msg.reply === undefined || msg.reply === "" ? Effect.void : Effect.suspend(() => respond(msg, bytes)),
        onFailure: (cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void
            : Effect.logError(`broker handler for \`${msg.subject}\` failed; no reply sent`, cause)
      })
    const subscription = yield* Effect.try({
      try: () =>
        nc.subscribe(subject, {
          ...(options?.queue === undefined ? {} : { queue: options.queue }),
          callback: (error, msg) => {
            if (error !== null) {
              run(Effect.logError(`NATS subscription to \`${subject}\` failed: ${describe(error)}`))
            } else {
              run(handle(msg))
            }
          }
        }),
      catch: clientError
    })
    // Added after the FiberSet, so it runs first: stop taking work, then interrupt the rest.
    yield* Effect.addFinalizer(() => Effect.sync(() => unsubscribeQuietly(subscription)))
    // Once flushed, the server knows the subscription: requests sent from now on reach it.
    yield* Effect.tryPromise({ try: () => nc.flush(), catch: clientError })
  })

/**
 * Connects to NATS and builds the `Broker` service on the connection, which lives in the current
 * Scope (drained, then closed, when it ends).
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(
  options: Options
): Effect.fn.Return<Broker.Broker["Service"], Broker.BrokerError, Scope.Scope> {
  const servers = typeof options.servers === "string" ? [options.servers] : [...options.servers]
  const connectTimeout = Duration.fromInputUnsafe(options.timeout ?? "10 seconds")
  const drainTimeout = Duration.fromInputUnsafe(options.drainTimeout ?? "5 seconds")
  const connectOptions: NodeConnectionOptions = {
    servers,
    timeout: toTimerMillis(connectTimeout),
    maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
    ...(options.name === undefined ? {} : { name: options.name })
  }
  const nc = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => connect(connectOptions),
      catch: (cause) =>
        Broker.make(new Broker.Connection({ detail: `cannot connect to NATS at ${servers.join(", ")}: ${describe(cause)}` }))
    }),
    (nc) => closeConnection(nc, drainTimeout)
  )
  const requests = makeRequests(nc, yield* Clock.Clock, yield* FiberSet.makeRuntime<never, void, never>())
  yield* Stream.fromAsyncIterable(nc.status(), (cause) => cause).pipe(
    Stream.runForEach((status) => {
      if (status.type === "error" && status.error instanceof PermissionViolationError && status.error.operation === "publish") {
        requests.publishRefused(status.error.subject, status.error)
      }
      return logStatus(status)
    }),
    Effect.ignore,
    Effect.forkScoped
  )
  return Broker.Broker.of({
    request: requests.request,
    requestMany: requestMany(nc),
    publish: publish(nc),
    subscribe: subscribe(nc),
    serve: serve(nc)
  })
})

/**
 * The `Broker` service on a NATS connection (see {@link make}). Building the layer fails with
 * a `Connection` reason, naming the servers, when no server can be reached.
 *
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Broker.Broker, Broker.BrokerError> =>
  Layer.effect(Broker.Broker, make(options))
