/**
 * The `Broker` service on a real NATS server (subpath export `effect-plugin-host/nats`).
 *
 * This module owns the NATS connection: it connects with `@nats-io/transport-node` (an optional
 * peer dependency, loaded only by programs that import this module), lets the client's own
 * reconnect logic ride out server restarts (logging disconnects and reconnects), and drains the
 * connection when its Scope closes (bounded; it falls back to `close()`). Client errors become
 * `BrokerError` reasons: a connect failure is `Connection` (naming the servers), a 503
 * "no responders" is `NoResponders`, a request timeout is `Timeout`, a closed or draining
 * connection is `Closed`. `serve` handles each message in its own fiber, so one slow request
 * never holds up the others. `requestMany` subscribes its own inbox and publishes the request
 * with it as the reply subject (the server's 503 status there is `NoResponders`); the stop
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
  type NatsConnection,
  type NodeConnectionOptions,
  NoRespondersError,
  RequestError,
  type Status,
  type Subscription,
  TimeoutError
} from "@nats-io/transport-node"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Broker from "./Broker.ts"
import { formatDuration } from "./internal/formatDuration.ts"
import * as ReplyGathering from "./internal/replyGathering.ts"

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
  // A request cut short by the connection's close is a bare `RequestError` (no cause, no code):
  // the client's message is all that tells it apart, and the connection's own state is set
  // only after the request has been failed.
  if (cause instanceof RequestError && cause.message === "connection closed") {
    return Broker.make(new Broker.Closed({ detail: describe(cause) }))
  }
  return Broker.make(new Broker.Connection({ detail: describe(cause) }))
}

const requestError = (subject: string, timeout: Duration.Duration, cause: unknown): Broker.BrokerError => {
  if (cause instanceof TimeoutError) return Broker.make(new Broker.Timeout({ subject, timeout }))
  if (cause instanceof NoRespondersError || (cause instanceof RequestError && cause.isNoResponders())) {
    return Broker.make(new Broker.NoResponders({ subject }))
  }
  return clientError(cause)
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

const request = (nc: NatsConnection): Broker.Broker["Service"]["request"] => (subject, data, timeout) =>
  Effect.suspend(() => {
    const duration = Duration.fromInputUnsafe(timeout)
    return Effect.tryPromise({
      try: () => nc.request(subject, data, { timeout: toTimerMillis(duration) }),
      catch: (cause) => requestError(subject, duration, cause)
    }).pipe(Effect.map((msg) => msg.data))
  })

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

const serve = (nc: NatsConnection): Broker.Broker["Service"]["serve"] => (subject, handler, options) =>
  Effect.gen(function*() {
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const handle = (msg: Msg) => {
      const message = toMessage(msg)
      return Effect.suspend(() => handler(message.data)).pipe(
        Effect.flatMap((bytes) => message.reply === undefined ? Effect.void : message.reply(bytes)),
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void
            : Effect.logError(`broker handler for \`${msg.subject}\` failed; no reply sent`, cause)
        )
      )
    }
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
  yield* Stream.fromAsyncIterable(nc.status(), (cause) => cause).pipe(
    Stream.runForEach(logStatus),
    Effect.ignore,
    Effect.forkScoped
  )
  return Broker.Broker.of({
    request: request(nc),
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
