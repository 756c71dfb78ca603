/**
 * What the host and the worker agree on above the JSON-RPC codec: the `initialize` result of
 * the worker dialect (built by `PluginWorker`, checked by `Handshake.initialize`), the error
 * object for a method nobody serves, and the reply a served request gets from its handler's
 * exit. `RpcPeer` answers with these whichever side it runs on, and `PluginWorker.serveBroker`
 * answers with the same over a broker, so a request gets the same answer on every transport.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as JsonRpc from "../JsonRpc.ts"

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
  error: Schema.optionalKey(Schema.Unknown)
})

/**
 * The worker's answer to `initialize`: `{ok: true, supportedMethods}` plus the fields of what
 * its `onInitialize` returned (which may override them).
 */
export const initializeResult = (supportedMethods: ReadonlyArray<string>, extra: object | void): object => ({
  ok: true,
  supportedMethods,
  ...(extra ?? {})
})

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
