/**
 * What the host and the worker agree on above the JSON-RPC codec: the `initialize` result of
 * the worker dialect (built by `PluginWorker`, checked by `Handshake.initialize`), the params
 * of `log` notifications (sent by `PluginWorker.log`, read by `PluginClient`), the error
 * object for a method nobody serves, and the reply a served request gets from its handler's
 * exit. `RpcPeer` answers with these whichever side it runs on, and `PluginWorker.serveBroker`
 * answers with the same over a broker, so a request gets the same answer on every transport.
 * Also the variable by which the host tells a plugin it frames messages with Content-Length.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as JsonRpc from "../JsonRpc.ts"

/**
 * The variable telling a plugin it is hosted with Content-Length framing (`PluginWorker.serve`
 * reads it). Only that framing sets it: an NDJSON plugin's environment stays exactly the
 * allow-listed and explicit variables.
 */
export const framingVariable = "PLUGIN_HOST_FRAMING"

// ---------------------------------------------------------------------------------------------
// initialize
// ---------------------------------------------------------------------------------------------

/**
 * The result of `initialize` in the worker dialect: `ok`, the methods the worker serves, and
 * (on a refusal) why.
 */
export const InitializeResult = Schema.Struct({
  ok: Schema.Boolean,
  supportedMethods: Schema.optionalKey(Schema.Array(Schema.String)),
  error: Schema.optionalKey(Schema.Unknown),
  protocolVersion: Schema.optionalKey(Schema.String),
  capabilities: Schema.optionalKey(Schema.Unknown)
})

/**
 * The version of this wire protocol (the worker dialect: `initialize`, `shutdown`, `log`,
 * `streams.*`, cancellation and progress). Both sides send it in `initialize`; two versions
 * with another major number cannot talk, and the start fails naming both.
 */
export const protocolVersion = "1.0"

/**
 * What this side of the protocol can do, sent in `initialize` both ways: the cancellation
 * dialects it understands, whether it reports and hears progress, whether it takes
 * notifications from the other side.
 */
export const capabilities = {
  cancellation: ["lsp", "mcp"],
  progress: true,
  notifications: true
} as const

/** Why two protocol versions cannot talk, if they cannot: their major numbers differ. */
export const versionMismatch = (ours: string, theirs: string): string | undefined => {
  const major = (version: string) => version.split(".")[0] ?? version
  return major(ours) === major(theirs) ? undefined : `protocol version mismatch: this side speaks ${ours}, the other ${theirs}`
}

/** The `protocolVersion` field of an `initialize`'s params, if it has one. */
export const protocolVersionOf = (params: unknown): string | undefined => {
  const version: unknown = typeof params === "object" && params !== null ? Reflect.get(params, "protocolVersion") : undefined
  return typeof version === "string" ? version : undefined
}

/**
 * The worker's answer to `initialize`: `{ok: true, supportedMethods}` (with `protocolVersion` and
 * `capabilities` on a connection that `negotiates`: stdio, not a broker) plus the fields of what its `onInitialize` returned (which may override them).
 */
export const initializeResult = (supportedMethods: ReadonlyArray<string>, extra: object | void, negotiates: boolean): object => ({
  ok: true,
  supportedMethods,
  ...(negotiates ? { protocolVersion, capabilities } : {}),
  ...(extra ?? {})
})

// ---------------------------------------------------------------------------------------------
// log
// ---------------------------------------------------------------------------------------------

/**
 * The params of a `log` notification: sent by `PluginWorker.log`, read by the host (and by a
 * worker served over a broker, which logs them itself). Every field is optional on the way in:
 * plugins in other languages send what they send.
 */
export const LogParams = Schema.Struct({
  level: Schema.optionalKey(Schema.String),
  message: Schema.optionalKey(Schema.String),
  meta: Schema.optionalKey(Schema.Unknown),
  timestamp: Schema.optionalKey(Schema.String)
})

/** Reads `log` params; anything that is not a `LogParams` object is none. */
export const decodeLogParams = Schema.decodeUnknownOption(LogParams)

/** The params `PluginWorker.log` sends (`meta` only when given). */
export const logParams = (
  level: string,
  message: string,
  timestamp: string,
  meta: unknown
): typeof LogParams.Type => meta === undefined ? { level, message, timestamp } : { level, message, timestamp, meta }

/**
 * The Effect log level of a `log` notification's `level`, whatever the plugin's vocabulary
 * (`fatal`, `warning`, `trace`…); unknown or missing levels are `Info`.
 */
export const logLevelOf = (level: string | undefined): "Error" | "Warn" | "Debug" | "Info" => {
  switch (level?.toLowerCase()) {
    case "error":
    case "fatal":
      return "Error"
    case "warn":
    case "warning":
      return "Warn"
    case "debug":
    case "trace":
      return "Debug"
    default:
      return "Info"
  }
}

// ---------------------------------------------------------------------------------------------
// replies
// ---------------------------------------------------------------------------------------------

/**
 * The answer to a request for a method nobody serves (-32601).
 */
export const methodNotFound = (method: string): JsonRpc.ErrorObject => ({
  code: JsonRpc.ErrorCode.MethodNotFound,
  message: `Method not found: ${method}`
})

/**
 * The reply to a served request, from its handler's exit: the value as the result; a
 * {@link JsonRpc.JsonRpcError} as its error object; anything else (another failure, a defect,
 * an interruption) as INTERNAL_ERROR (-32603) with the first line of the cause.
 */
export const replyTo = (
  id: JsonRpc.Id | null,
  method: string,
  exit: Exit.Exit<unknown, unknown>
): JsonRpc.Success | JsonRpc.Failure => {
  if (Exit.isSuccess(exit)) return JsonRpc.success(id, exit.value)
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isSome(error) && error.value instanceof JsonRpc.JsonRpcError) {
    return JsonRpc.failure(id, error.value.toErrorObject())
  }
  return JsonRpc.failure(id, {
    code: JsonRpc.ErrorCode.InternalError,
    message: `handler for ${method} failed: ${Cause.pretty(exit.cause).split("\n")[0]}`
  })
}
