/**
 * A worker's handlers served over a broker as one instance of a service: the endpoints
 * `<prefix>.call`, `<prefix>.tick` and `<prefix>.notify` in a queue group (any number of instances share the load),
 * the broadcast `<prefix>.cancel` and `<prefix>.held` that only the instance holding a call acts
 * on, the per-endpoint counters `$SRV.STATS` reports, and the link back to the host that sent a
 * request (its inbox, carried by the request: see `remoteWire.ts`).
 *
 * `PluginWorker.serveBroker` is the public face: it owns the handler table and the
 * `HostConnection` its handlers see, and hands this module `serve`, the reply to one request
 * given the link to its host (none for a bare request from a client that has no inbox).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as Broker from "../Broker.ts"
import * as JsonRpc from "../JsonRpc.ts"
import * as PluginClientError from "../PluginClientError.ts"
import * as Poller from "../Poller.ts"
import * as EndpointStats from "./endpointStats.ts"
import * as HeldCalls from "./heldCalls.ts"
import * as RemoteWire from "./remoteWire.ts"

/** How a handler reaches the host that sent its request. */
export interface HostLink {
  readonly request: (method: string, params: unknown, timeout: Duration.Input | undefined) => Effect.Effect<unknown, PluginClientError.PluginClientError>
  readonly notify: (method: string, params: unknown) => Effect.Effect<void, PluginClientError.PluginClientError>
}

/** Who this instance is, as `$SRV.INFO` and `$SRV.PING` report it. */
export interface Identity {
  readonly name: string
  readonly id: string
  readonly version: string
  readonly description?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
  /** When the instance started serving (ISO 8601). */
  readonly started: string
}

/** A served instance: its identity and its endpoints' counters, read when asked. */
export interface Instance extends Identity {
  readonly endpoints: () => ReadonlyArray<EndpointStats.EndpointStats>
  /** Calls from remote clients running now. */
  readonly running: () => number
}

/** What to serve. */
export interface Options {
  readonly prefix: string
  readonly queue: string
  /** The worker's name: errors of host calls carry it. */
  readonly name: string
  readonly identity: Omit<Identity, "started">
  /** Default timeout of a handler's host calls. */
  readonly hostCallTimeout: Duration.Duration
  /** The reply to one request; an interrupt sends none. */
  readonly serve: (
    id: JsonRpc.Id | null,
    method: string,
    params: unknown,
    host: HostLink | undefined
  ) => Effect.Effect<JsonRpc.Success | JsonRpc.Failure>
  /** Handles a notification published to `<prefix>.notify`. */
  readonly notify: (method: string, params: unknown, host: HostLink | undefined) => Effect.Effect<void>
}

const utf8 = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()
const empty = new Uint8Array(0)

const refuse = (code: number, message: string) => JsonRpc.failure(null, { code, message })

/** A payload as parsed JSON, or the -32700 refusal. */
const parse = (data: Uint8Array): Result.Result<{ readonly text: string; readonly value: unknown }, JsonRpc.Failure> => {
  try {
    const text = utf8.decode(data)
    return Result.succeed({ text, value: JSON.parse(text) })
  } catch (cause) {
    return Result.fail(refuse(JsonRpc.ErrorCode.ParseError, `Parse error: ${cause instanceof Error ? cause.message : String(cause)}`))
  }
}

const errorText = (reply: JsonRpc.Success | JsonRpc.Failure): string | undefined => {
  if (reply._tag === "Success") return undefined
  const parts = JsonRpc.errorParts(reply.error)
  return parts.code === undefined ? parts.message : `${parts.code}: ${parts.message}`
}

/** Runs `reply` and counts it on `counter` (its time, and the error it answered with). */
const counted = (
  counter: EndpointStats.EndpointCounter,
  clock: Clock.Clock,
  reply: Effect.Effect<JsonRpc.Success | JsonRpc.Failure>
): Effect.Effect<JsonRpc.Success | JsonRpc.Failure> =>
  Effect.suspend(() => {
    const started = clock.monotonicTimeNanosUnsafe()
    return Effect.onExit(reply, (exit) =>
      Effect.sync(() => {
        const nanos = Number(clock.monotonicTimeNanosUnsafe() - started)
        counter.record(nanos, exit._tag === "Success" ? errorText(exit.value) : "interrupted")
      }))
  })

/** A `<prefix>.call` payload read: the request and the route to its host (if it carries one), or the refusal. */
const readCall = (
  data: Uint8Array
): Result.Result<{ readonly request: JsonRpc.Request; readonly route: RemoteWire.HostRoute | undefined }, JsonRpc.Failure> => {
  const parsed = parse(data)
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  const decoded = JsonRpc.decodeValue(parsed.success.value, parsed.success.text)
  if (Result.isFailure(decoded)) return Result.fail(refuse(JsonRpc.ErrorCode.InvalidRequest, `Invalid Request: ${decoded.failure.detail}`))
  const message = decoded.success
  if (message._tag !== "Request") return Result.fail(refuse(JsonRpc.ErrorCode.InvalidRequest, "Invalid Request: expected a request with an id"))
  return Result.succeed({ request: message, route: RemoteWire.routeOf(parsed.success.value) })
}

/**
 * Serves the instance until the current Scope closes; returns once every subject is subscribed.
 */
export const serve = (options: Options): Effect.Effect<Instance, Broker.BrokerError, Broker.Broker | Scope.Scope> =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const clock = yield* Clock.Clock
    const subjects = RemoteWire.subjects(options.prefix)
    const held = HeldCalls.make()
    const callStats = EndpointStats.make("call", subjects.call, options.queue)
    const tickStats = EndpointStats.make("tick", subjects.tick, options.queue)
    const notifyStats = EndpointStats.make("notify", subjects.notify, options.queue)
    const link = hostLinks(broker, options)

    const serveTick = (data: Uint8Array): Effect.Effect<Uint8Array> => {
      const parsed = parse(data)
      const reply = Result.isFailure(parsed)
        ? Effect.succeed(parsed.failure)
        : options.serve(null, "poll_tick", Poller.tickParamsOf(parsed.success.value), undefined)
      return Effect.map(counted(tickStats, clock, reply), (message) => encoder.encode(JsonRpc.encodeResponse(message, { bare: true })))
    }

    /** Counts a call that took since `started` and ended with `error` (if any); `key` is no longer held. */
    const ended = (started: bigint, key: string | undefined, error: string | undefined) => {
      if (key !== undefined) held.finish(key)
      callStats.record(Number(clock.monotonicTimeNanosUnsafe() - started), error)
    }
    /** The reply to a call, counted (and its key released) as it is encoded. */
    const answer = (started: bigint, key: string | undefined, message: JsonRpc.Success | JsonRpc.Failure): Uint8Array => {
      ended(started, key, errorText(message))
      return encoder.encode(JsonRpc.encodeResponse(message))
    }

    // One frame per call around the handler (no `ensuring`, `onExit` and `map` layered): its
    // reply is encoded and counted, or its interruption counted and passed on (no reply).
    const serveCall = (data: Uint8Array): Effect.Effect<Uint8Array> =>
      Effect.withFiber((fiber) => {
        const started = clock.monotonicTimeNanosUnsafe()
        const call = readCall(data)
        if (Result.isFailure(call)) return Effect.succeed(answer(started, undefined, call.failure))
        const { request, route } = call.success
        const key = route?.call
        // The serving fiber is the one a cancel interrupts: its finalizers run and no reply is sent.
        if (key !== undefined && !held.start(key, () => fiber.interruptUnsafe())) {
          callStats.record(Number(clock.monotonicTimeNanosUnsafe() - started), "interrupted")
          return Effect.interrupt
        }
        return Effect.matchCauseEffect(options.serve(request.id, request.method, request.params, route === undefined ? undefined : link(route)), {
          onSuccess: (message) => Effect.sync(() => answer(started, key, message)),
          onFailure: (cause) => Effect.andThen(Effect.sync(() => ended(started, key, "interrupted")), Effect.failCause(cause))
        })
      })

    // A notification is published: whatever the handler returns, the broker sends no reply.
    const serveNotify = (data: Uint8Array): Effect.Effect<Uint8Array> => {
      const parsed = parse(data)
      const decoded = Result.isSuccess(parsed) ? JsonRpc.decodeValue(parsed.success.value, parsed.success.text) : undefined
      if (decoded === undefined || Result.isFailure(decoded) || decoded.success._tag !== "Notification") {
        notifyStats.record(0, "not a JSON-RPC notification")
        return Effect.succeed(empty)
      }
      const message = decoded.success
      const route = Result.isSuccess(parsed) ? RemoteWire.routeOf(parsed.success.value) : undefined
      const started = clock.monotonicTimeNanosUnsafe()
      return options.notify(message.method, message.params, route === undefined ? undefined : link(route)).pipe(
        Effect.ensuring(Effect.sync(() => notifyStats.record(Number(clock.monotonicTimeNanosUnsafe() - started)))),
        Effect.as(empty)
      )
    }

    const onCancel = (data: Uint8Array): Effect.Effect<Uint8Array> =>
      Effect.sync(() => {
        const parsed = parse(data)
        const key = Result.isSuccess(parsed) ? RemoteWire.callKeyOf(parsed.success.value) : undefined
        if (key !== undefined) held.cancel(key)
        return empty
      })

    // Only the instance that knows the call answers; the others stay silent (an interrupted
    // handler sends no reply), so the host hears nothing when the holder is gone.
    const onHeld = (data: Uint8Array): Effect.Effect<Uint8Array> =>
      Effect.suspend(() => {
        const parsed = parse(data)
        const key = Result.isSuccess(parsed) ? RemoteWire.callKeyOf(parsed.success.value) : undefined
        const state = key === undefined ? undefined : held.state(key)
        return state === undefined ? Effect.interrupt : Effect.succeed(encoder.encode(RemoteWire.encodeHeld(state, options.identity.id)))
      })

    const started = new Date(yield* Clock.currentTimeMillis).toISOString()
    // Cancels and liveness questions are subscribed first, so no call runs here unreachable by them.
    yield* broker.serve(subjects.cancel, onCancel)
    yield* broker.serve(subjects.held, onHeld)
    yield* broker.serve(subjects.tick, serveTick, { queue: options.queue })
    yield* broker.serve(subjects.notify, serveNotify, { queue: options.queue })
    yield* broker.serve(subjects.call, serveCall, { queue: options.queue })
    return {
      ...options.identity,
      started,
      endpoints: () => [callStats.snapshot(), tickStats.snapshot(), notifyStats.snapshot()],
      running: held.running
    }
  })

// ---------------------------------------------------------------------------------------------
// the link to a host
// ---------------------------------------------------------------------------------------------

/** Why a host call over the broker failed, as the reason a stdio host call would give. */
const hostCallReason = (error: Broker.BrokerError, inbox: string, method: string): PluginClientError.Reason => {
  const reason = error.reason
  switch (reason._tag) {
    case "NoResponders":
      return new PluginClientError.Closed({ detail: `the host's inbox \`${inbox}\` has no subscriber: the host is gone` })
    case "Timeout":
      return new PluginClientError.Timeout({ method, timeout: reason.timeout })
    case "Closed":
      return new PluginClientError.Closed({ detail: reason.message })
    default:
      return new PluginClientError.Io({ detail: reason.message })
  }
}

/** The host's answer to a host call: its result, or the reason it is not one. */
const hostAnswer = (data: Uint8Array): Result.Result<unknown, PluginClientError.Reason> => {
  const parsed = parse(data)
  const decoded = Result.isSuccess(parsed) ? JsonRpc.decodeValue(parsed.success.value, parsed.success.text) : undefined
  if (decoded === undefined || Result.isFailure(decoded)) {
    return Result.fail(new PluginClientError.MalformedResponse({ detail: "the host's reply is not a JSON-RPC response", line: "" }))
  }
  const message = decoded.success
  if (message._tag === "Success") return Result.succeed(message.result)
  if (message._tag === "Failure") {
    return Result.fail(PluginClientError.pluginErrorOf(message.error))
  }
  return Result.fail(new PluginClientError.MalformedResponse({ detail: "the host answered with a request", line: "" }))
}

/** Makes the link to the host of each routed request (its calls numbered per instance). */
const hostLinks = (broker: Broker.Broker["Service"], options: Options) => {
  let nextId = 0
  const fail = (reason: PluginClientError.Reason) => Effect.fail(PluginClientError.make(options.name, reason))
  const instance = options.identity.id
  return (route: RemoteWire.HostRoute): HostLink => ({
    request: (method, params, timeout) =>
      Effect.suspend(() => {
        const line = RemoteWire.encodeInbox(route.call, instance, JsonRpc.request(++nextId, method, params))
        if (Result.isFailure(line)) return fail(new PluginClientError.InvalidParams({ method, detail: line.failure }))
        const duration = timeout === undefined ? options.hostCallTimeout : Duration.fromInputUnsafe(timeout)
        return broker.request(route.inbox, encoder.encode(line.success), duration).pipe(
          Effect.catch((error) => fail(hostCallReason(error, route.inbox, method))),
          Effect.flatMap((data) => {
            const answer = hostAnswer(data)
            return Result.isSuccess(answer) ? Effect.succeed(answer.success) : fail(answer.failure)
          })
        )
      }),
    notify: (method, params) =>
      Effect.suspend(() => {
        const line = RemoteWire.encodeInbox(route.call, instance, JsonRpc.notification(method, params))
        if (Result.isFailure(line)) return fail(new PluginClientError.InvalidParams({ method, detail: line.failure }))
        return broker.publish(route.inbox, encoder.encode(line.success)).pipe(
          Effect.catch((error) => fail(hostCallReason(error, route.inbox, method)))
        )
      })
  })
}
