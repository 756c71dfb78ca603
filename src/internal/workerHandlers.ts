/**
 * What the two halves of the worker SDK share: the stdio worker (`PluginWorker`) and the broker
 * worker (`PluginWorkerBroker`, which `PluginWorker` loads on demand, so that a stdio worker
 * does not load `Broker`, `Poller` and the NATS micro responder). The host connection handlers
 * reach, the handler table both answer from, notification delivery, a handler's failure as an
 * error object, the process's main-program runner, and the host connection of a broker request
 * without a host inbox. `PluginWorker` re-exports the public ones.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as JsonRpc from "../JsonRpc.ts"
import * as PluginClientError from "../PluginClientError.ts"
import type * as RpcConnection from "./rpcConnection.ts"
import * as Protocol from "./protocol.ts"
import * as RequestSignals from "./requestSignals.ts"

/**
 * The connection to the host, available to handlers.
 *
 * @category models
 */
export class HostConnection extends Context.Service<HostConnection, {
  readonly request: RpcConnection.RpcPeer["request"]
  readonly notify: RpcConnection.RpcPeer["notify"]
}>()("effect-plugin-host/PluginWorker/HostConnection") {}

/**
 * Serves one method. Failing with a {@link JsonRpc.JsonRpcError} sends that error object; any
 * other failure is sent as WORKER_ERROR (-32002) with its message and tag; a defect as -32603.
 *
 * @category models
 */
export type Handler = (params: unknown) => Effect.Effect<unknown, unknown, HostConnection>

/**
 * A handler of a notification from the host: no reply is sent, whatever it returns.
 *
 * @category models
 */
export type NotificationHandler = (params: unknown) => Effect.Effect<void, unknown, HostConnection>

/**
 * Notifications from the host that no `notifications` handler took.
 *
 * @category metrics
 */
export const notificationsUnhandledTotal = Metric.counter("plugin_worker_notifications_unhandled_total", {
  description: "Notifications from the host that the worker has no handler for"
})

/**
 * The progress token of the request a handler serves, when the host asked for progress; none
 * outside a handler or when it did not. `PluginWorker.progress` reads it.
 */
export const CurrentProgress = Context.Reference<RequestSignals.ProgressTarget | undefined>(
  "effect-plugin-host/PluginWorker/CurrentProgress",
  { defaultValue: () => undefined }
)

/**
 * Turns a handler's failure into the error object sent to the host.
 *
 * @category errors
 */
export const toJsonRpcError = (error: unknown): JsonRpc.JsonRpcError => {
  if (error instanceof JsonRpc.JsonRpcError) return error
  if (typeof error === "object" && error !== null) {
    const code: unknown = Reflect.get(error, "code")
    const message: unknown = Reflect.get(error, "message")
    const tag: unknown = Reflect.get(error, "_tag")
    if (typeof code === "number" && Number.isInteger(code) && typeof message === "string") {
      return JsonRpc.error(code, message, Reflect.get(error, "data"))
    }
    const text = typeof message === "string" && message.length > 0 ? message : typeof tag === "string" ? tag : String(error)
    return JsonRpc.error(JsonRpc.ErrorCode.WorkerError, text, typeof tag === "string" ? { _tag: tag } : undefined)
  }
  return JsonRpc.error(JsonRpc.ErrorCode.WorkerError, String(error))
}

/**
 * Delivers the host's notifications to the worker's handlers: an unknown method is counted and
 * logged at Debug, a failing handler logged at Warning; neither ends the connection.
 */
export const notificationHandler = (
  handlers: Readonly<Record<string, NotificationHandler>> | undefined,
  host: HostConnection["Service"]
) =>
(notification: JsonRpc.Notification): Effect.Effect<void> => {
  const handler = handlers !== undefined && Object.hasOwn(handlers, notification.method) ? handlers[notification.method] : undefined
  if (handler === undefined) {
    return Metric.update(notificationsUnhandledTotal, 1).pipe(
      Effect.andThen(Effect.logDebug(`no handler for the host's notification \`${notification.method}\``))
    )
  }
  return Effect.suspend(() => handler(notification.params)).pipe(
    Effect.provideService(HostConnection, host),
    Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.interrupt
        : Effect.logWarning(`the handler of the host's notification \`${notification.method}\` failed`, Cause.pretty(cause))
    )
  )
}

/**
 * The methods a worker answers, on any transport: `initialize` (`{ok: true, supportedMethods}`
 * plus what `onInitialize` returns), the transport's own `builtins`, and the user's handlers,
 * which take precedence; a handler's failure becomes its JSON-RPC error ({@link toJsonRpcError}).
 * A handler whose request carries a progress token runs with it as {@link CurrentProgress}.
 */
export const handlerTable = (
  options: {
    readonly handlers: Readonly<Record<string, Handler>>
    readonly onInitialize?: ((params: unknown) => Effect.Effect<object | void, unknown, HostConnection>) | undefined
  },
  builtins: Readonly<Record<string, RpcConnection.HostHandler<HostConnection>>>,
  negotiates: boolean
): Record<string, RpcConnection.HostHandler<HostConnection>> => {
  const supportedMethods = Object.keys(options.handlers)
  const onInitialize = options.onInitialize
  const table: Record<string, RpcConnection.HostHandler<HostConnection>> = {
    initialize: (params) => {
      const theirs = Protocol.protocolVersionOf(params)
      const mismatch = theirs === undefined ? undefined : Protocol.versionMismatch(Protocol.protocolVersion, theirs)
      if (mismatch !== undefined) return Effect.fail(new JsonRpc.JsonRpcError({ code: JsonRpc.ErrorCode.InvalidRequest, message: mismatch }))
      return (onInitialize === undefined ? Effect.void : onInitialize(params)).pipe(
        Effect.map((extra) => Protocol.initializeResult(supportedMethods, extra, negotiates)),
        Effect.mapError(toJsonRpcError)
      )
    },
    ...builtins
  }
  for (const method of supportedMethods) {
    const handler = options.handlers[method]
    if (handler === undefined) continue
    table[method] = (params) => {
      const target = RequestSignals.progressTargetOf(params)
      if (target !== undefined) return Effect.provideService(Effect.mapError(Effect.suspend(() => handler(params)), toJsonRpcError), CurrentProgress, target)
      // Called at once (whoever runs the table catches a throw as a defect): a handler that is
      // over already (`Effect.succeed`) stays an `Exit`, which is answered without a fiber.
      const served = handler(params)
      return Exit.isExit(served) ? Exit.mapError(served, toJsonRpcError) : Effect.mapError(served, toJsonRpcError)
    }
  }
  return table
}

/**
 * Runs a worker program as the process's main program: logs to stderr, SIGTERM/SIGINT
 * interrupt it, and the process exits 0 when it ends or is interrupted, 1 when it failed.
 * Shared by the stdio and the broker entry points.
 *
 * @category serving
 */
export const runAsMain = <E>(program: Effect.Effect<unknown, E>): void => {
  const fiber = Effect.runFork(program.pipe(
    Effect.tapCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError("worker failed", cause)),
    // `References`, not `Logger`: the same reference, without `Logger`'s imports (its file logger
    // loads `FileSystem` and the Stream modules), which a stdio worker would load for nothing.
    Effect.provideService(References.LogToStderr, true)
  ))
  const onSignal = () => fiber.interruptUnsafe(fiber.id)
  process.once("SIGTERM", onSignal)
  process.once("SIGINT", onSignal)
  fiber.addObserver((exit) => {
    process.exit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
  })
}

/**
 * The host connection of a handler whose request carries no host inbox (a bare JSON-RPC
 * request on `<prefix>.call`, or a tick): there is nobody to answer, so `callHost` and
 * `notifyHost` fail with a `PluginClientError` whose reason is `Closed`, except for `log`
 * notifications (`PluginWorker.log`), which go to the worker's own logger (stderr under
 * `PluginWorker.mainBroker`). A request from a `RemotePlugin` client carries its host's inbox, and its
 * handler reaches that host instead.
 *
 * @category serving
 */
export const brokerHostConnection = (name: string): HostConnection["Service"] => {
  const unavailable = (method: string) =>
    Effect.fail(PluginClientError.make(
      name,
      new PluginClientError.Closed({
        detail: `cannot call \`${method}\` on the host: this request carries no host inbox (host calls need a RemotePlugin client, or stdio)`
      })
    ))
  return HostConnection.of({
    request: (method) => unavailable(method),
    notify: (method, params) => {
      if (method !== "log") return unavailable(method)
      const log = Option.getOrUndefined(Protocol.decodeLogParams(params))
      const text = log?.message ?? JSON.stringify(params) ?? "log"
      const level = Protocol.logLevelOf(log?.level)
      return Effect.logWithLevel(level)(...(log?.meta === undefined ? [text] : [text, log.meta]))
    }
  })
}

