/**
 * A remote plugin client's inbox: the one subject (per client) on which every instance of the
 * plugin reaches the host about the calls the host sent it (see `remoteWire.ts`). Requests
 * (`callHost`) are served by the host's handlers, concurrently, and answered with the JSON-RPC
 * response; progress reports go to the call they belong to (`onProgress`); every other
 * notification (`log`, `streams.*`, the plugin's own) is handed over in the order it arrived,
 * by one fiber, as a local plugin's notifications are.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as Broker from "../Broker.ts"
import * as JsonRpc from "../JsonRpc.ts"
import type * as RpcPeer from "../RpcPeer.ts"
import * as Protocol from "./protocol.ts"
import * as RemoteWire from "./remoteWire.ts"
import * as RequestSignals from "./requestSignals.ts"

/** What the inbox hands its messages to. */
export interface Options {
  readonly subject: string
  readonly hostHandlers: RpcPeer.HostHandlers | undefined
  /** Host calls served at once; beyond it they are refused at once with -32000 (as on stdio). */
  readonly maxConcurrentHandlers: number
  /** A progress report for the call whose token is `token`. */
  readonly onProgress: (token: JsonRpc.Id, value: unknown) => Effect.Effect<void>
  /** Every other notification, in order. */
  readonly onNotification: (notification: JsonRpc.Notification) => Effect.Effect<void>
}

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })
const empty = new Uint8Array(0)

const reply = (message: JsonRpc.Success | JsonRpc.Failure): Uint8Array => encoder.encode(JsonRpc.encodeResponse(message))

/** Serves a host call with the host's handlers (unknown → -32601; a defect → -32603). */
const serveRequest = (handlers: RpcPeer.HostHandlers | undefined, request: JsonRpc.Request): Effect.Effect<Uint8Array> => {
  const handler = handlers !== undefined && Object.hasOwn(handlers, request.method) ? handlers[request.method] : undefined
  if (handler === undefined) return Effect.succeed(reply(JsonRpc.failure(request.id, Protocol.methodNotFound(request.method))))
  return Effect.suspend(() => handler(request.params)).pipe(
    Effect.exit,
    Effect.map((exit) => reply(Protocol.replyTo(request.id, request.method, exit)))
  )
}

/**
 * Subscribes the inbox until the current Scope closes; returns once it is subscribed (so a
 * call sent afterwards can be answered on it).
 */
export const serve = (options: Options): Effect.Effect<void, Broker.BrokerError, Broker.Broker | Scope.Scope> =>
  Effect.gen(function*() {
    const broker = yield* Broker.Broker
    const notifications = yield* Queue.unbounded<JsonRpc.Notification>()
    yield* Queue.take(notifications).pipe(
      Effect.flatMap((notification) =>
        options.onNotification(notification).pipe(
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.logWarning("a remote plugin's notification failed", Cause.pretty(cause))
          )
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )

    let serving = 0
    const handle = (data: Uint8Array): Effect.Effect<Uint8Array> =>
      Effect.suspend(() => {
        let payload: unknown
        try {
          payload = JSON.parse(decoder.decode(data))
        } catch {
          return Effect.succeed(reply(JsonRpc.failure(null, { code: JsonRpc.ErrorCode.ParseError, message: "Parse error" })))
        }
        const decoded = RemoteWire.decodeInbox(payload)
        if (Result.isFailure(decoded)) {
          return Effect.succeed(reply(JsonRpc.failure(null, { code: JsonRpc.ErrorCode.InvalidRequest, message: decoded.failure })))
        }
        const message = decoded.success.message
        if (message._tag === "Request") {
          if (serving >= options.maxConcurrentHandlers) {
            return Effect.succeed(reply(JsonRpc.failure(message.id, {
              code: JsonRpc.ErrorCode.WorkerUnavailable,
              message: `too many concurrent requests (${options.maxConcurrentHandlers} being served)`
            })))
          }
          serving++
          return Effect.ensuring(serveRequest(options.hostHandlers, message), Effect.sync(() => void serving--))
        }
        const signal = RequestSignals.read(message)
        if (signal?._tag === "Progress") return Effect.as(options.onProgress(signal.token, signal.value), empty)
        // A cancel of a host call: host handlers run to their end (their reply is then dropped).
        if (signal?._tag === "Cancel") return Effect.succeed(empty)
        Queue.offerUnsafe(notifications, message)
        return Effect.succeed(empty)
      })

    yield* broker.serve(options.subject, handle)
  })
