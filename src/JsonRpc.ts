/**
 * The JSON-RPC 2.0 wire: the messages host and plugin exchange, the error codes both sides
 * use, and a line codec that never throws.
 *
 * A line from a plugin is decoded into a {@link Message} or into a {@link LineIssue} that says
 * what was wrong with it (`NotJson`, `NotAnObject`, `InvalidMessage`), so a plugin's garbage is
 * data the host can log and count, never an exception. Error objects that are not the
 * standard `{code, message}` shape (for example `{"kind":"needs-credential"}`) are kept whole.
 * The lenient mode accepts the bare `{"result":…}` / `{"error":…}` replies of one-shot plugins.
 *
 * Decoding is the hot path of every call: `JSON.parse`, a shape check to pick the one message
 * kind the object can be, then a Schema decode of that single struct (a union decode would try
 * every member and is several times slower).
 *
 * @since 0.1.0
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * A request or response id. The host allocates integers; plugins may use strings.
 *
 * @category models
 */
export const Id = Schema.Union([Schema.String, Schema.Finite])
export type Id = typeof Id.Type

/**
 * Request or notification parameters: by-position (array) or by-name (object). Any other
 * JSON value is tolerated on decode, since plugins in the wild send scalars.
 *
 * @category models
 */
export const Params = Schema.Unknown

/**
 * A call that expects a response.
 *
 * @category models
 */
export const Request = Schema.Struct({
  jsonrpc: Schema.Literal("2.0"),
  id: Id,
  method: Schema.String,
  params: Schema.optionalKey(Params)
})
export interface Request {
  readonly _tag: "Request"
  readonly id: Id
  readonly method: string
  readonly params: unknown
}

/**
 * A one-way message (no id, no response).
 *
 * @category models
 */
export const Notification = Schema.Struct({
  jsonrpc: Schema.Literal("2.0"),
  method: Schema.String,
  params: Schema.optionalKey(Params)
})
export interface Notification {
  readonly _tag: "Notification"
  readonly method: string
  readonly params: unknown
}

/**
 * A successful response.
 *
 * @category models
 */
export const SuccessResponse = Schema.Struct({
  jsonrpc: Schema.Literal("2.0"),
  id: Id,
  result: Schema.Unknown
})
export interface Success {
  readonly _tag: "Success"
  /** `null` only for lenient one-shot replies that carry no id. */
  readonly id: Id | null
  readonly result: unknown
}

/**
 * An error response. The `error` member is kept as sent: the standard `{code, message, data?}`
 * object, or whatever shape the plugin uses.
 *
 * @category models
 */
export const ErrorResponse = Schema.Struct({
  jsonrpc: Schema.Literal("2.0"),
  id: Schema.NullOr(Id),
  error: Schema.Unknown
})
export interface Failure {
  readonly _tag: "Failure"
  readonly id: Id | null
  readonly error: unknown
}

/**
 * The standard JSON-RPC error object.
 *
 * @category models
 */
export const ErrorObject = Schema.Struct({
  code: Schema.Int,
  message: Schema.String,
  data: Schema.optionalKey(Schema.Unknown)
})
export type ErrorObject = typeof ErrorObject.Type

/**
 * Any message on the wire.
 *
 * @category models
 */
export type Message = Request | Notification | Success | Failure

/**
 * Why a line is not a message. `excerpt` is the start of the line (at most 200 characters),
 * enough to recognise it in a log without copying a plugin's megabytes.
 *
 * @category models
 */
export type LineIssue =
  | { readonly _tag: "NotJson"; readonly excerpt: string; readonly detail: string }
  | { readonly _tag: "NotAnObject"; readonly excerpt: string; readonly detail: string }
  | { readonly _tag: "InvalidMessage"; readonly excerpt: string; readonly detail: string }

// ---------------------------------------------------------------------------------------------
// codes
// ---------------------------------------------------------------------------------------------

/**
 * Standard JSON-RPC 2.0 codes and the codes plugins and hosts use for their own failures.
 *
 * @category codes
 */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  WorkerUnavailable: -32000,
  CapabilityDenied: -32001,
  WorkerError: -32002,
  Timeout: -32003,
  MethodNotImplemented: -32004,
  Unknown: -32099,
  /** LSP's reply to a request the caller cancelled (`$/cancelRequest`). */
  RequestCancelled: -32800
} as const

/**
 * A JSON-RPC error raised by a handler (a host handler serving a plugin's request, or a
 * plugin handler in {@link PluginWorker}). It becomes the `error` member of the reply.
 *
 * @category errors
 */
export class JsonRpcError extends Schema.TaggedError<JsonRpcError>()("JsonRpcError", {
  code: Schema.Int,
  message: Schema.String,
  data: Schema.optionalKey(Schema.Unknown)
}) {
  /** The wire form of this error. */
  toErrorObject(): ErrorObject {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data }
  }
}

/**
 * Builds a {@link JsonRpcError}.
 *
 * @category constructors
 */
export const error = (code: number, message: string, data?: unknown): JsonRpcError =>
  data === undefined ? new JsonRpcError({ code, message }) : new JsonRpcError({ code, message, data })

// ---------------------------------------------------------------------------------------------
// decoding
// ---------------------------------------------------------------------------------------------

/** How much of a bad line an issue quotes. */
export const excerptLength = 200

/**
 * The start of a line, at most {@link excerptLength} characters, for messages and logs.
 *
 * @category decoding
 */
export const excerpt = (line: string): string =>
  line.length <= excerptLength ? line : `${line.slice(0, excerptLength - 1)}…`

const decodeRequest = Schema.decodeUnknownResult(Request)
const decodeNotification = Schema.decodeUnknownResult(Notification)
const decodeSuccess = Schema.decodeUnknownResult(SuccessResponse)
const decodeFailure = Schema.decodeUnknownResult(ErrorResponse)
const isErrorObject = Schema.is(ErrorObject)

const invalid = (line: string, detail: string): LineIssue => ({
  _tag: "InvalidMessage",
  excerpt: excerpt(line),
  detail
})

/**
 * Options of {@link decodeLine}.
 *
 * @category decoding
 */
export interface DecodeOptions {
  /**
   * Accept replies without `jsonrpc` and `id` (`{"result":…}` or `{"error":…}`), as sent by
   * one-shot plugins that read one line and write one line.
   */
  readonly lenient?: boolean | undefined
}

/**
 * Decodes one line into a message or an issue. Never throws, whatever the input.
 *
 * @category decoding
 */
export const decodeLine = (line: string, options?: DecodeOptions): Result.Result<Message, LineIssue> => {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch (cause) {
    return Result.fail({
      _tag: "NotJson",
      excerpt: excerpt(line),
      detail: cause instanceof Error ? cause.message : String(cause)
    })
  }
  return decodeValue(value, line, options)
}

/**
 * Decodes an already parsed JSON value (`line` is only used for excerpts).
 *
 * @category decoding
 */
export const decodeValue = (
  value: unknown,
  line: string,
  options?: DecodeOptions
): Result.Result<Message, LineIssue> => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return Result.fail({
      _tag: "NotAnObject",
      excerpt: excerpt(line),
      detail: Array.isArray(value) ? "batch messages are not supported" : `expected an object, got ${typeOf(value)}`
    })
  }
  // Fast path for well-formed messages (the common case): the same checks the Schemas make,
  // by hand; the Schemas decode the rest, for their precise messages.
  if (Reflect.get(value, "jsonrpc") === "2.0") {
    const id: unknown = Reflect.get(value, "id")
    const method: unknown = Reflect.get(value, "method")
    const validId = typeof id === "string" || (typeof id === "number" && Number.isFinite(id))
    if (typeof method === "string") {
      const params: unknown = Reflect.get(value, "params")
      if (validId) return Result.succeed({ _tag: "Request", id, method, params })
      if (id === undefined || id === null) return Result.succeed({ _tag: "Notification", method, params })
    } else if (!("method" in value)) {
      if (validId && "result" in value) return Result.succeed({ _tag: "Success", id, result: Reflect.get(value, "result") })
      if ((validId || id === null) && "error" in value && !("result" in value)) {
        return Result.succeed({ _tag: "Failure", id, error: Reflect.get(value, "error") })
      }
    }
  }
  if ("method" in value) {
    if ("id" in value && value.id !== undefined && value.id !== null) {
      const r = decodeRequest(value)
      return Result.isSuccess(r)
        ? Result.succeed({ _tag: "Request", id: r.success.id, method: r.success.method, params: r.success.params })
        : Result.fail(invalid(line, `invalid request: ${r.failure.message}`))
    }
    const r = decodeNotification(value)
    return Result.isSuccess(r)
      ? Result.succeed({ _tag: "Notification", method: r.success.method, params: r.success.params })
      : Result.fail(invalid(line, `invalid notification: ${r.failure.message}`))
  }
  if ("result" in value) {
    if (options?.lenient === true && !("jsonrpc" in value && "id" in value)) {
      return Result.succeed({ _tag: "Success", id: lenientId(value), result: value.result })
    }
    const r = decodeSuccess(value)
    return Result.isSuccess(r)
      ? Result.succeed({ _tag: "Success", id: r.success.id, result: r.success.result })
      : Result.fail(invalid(line, `invalid response: ${r.failure.message}`))
  }
  if ("error" in value) {
    if (options?.lenient === true && !("jsonrpc" in value && "id" in value)) {
      return Result.succeed({ _tag: "Failure", id: lenientId(value), error: value.error })
    }
    const r = decodeFailure(value)
    return Result.isSuccess(r)
      ? Result.succeed({ _tag: "Failure", id: r.success.id, error: r.success.error })
      : Result.fail(invalid(line, `invalid error response: ${r.failure.message}`))
  }
  return Result.fail(invalid(line, "not a request, notification or response (no method, result or error)"))
}

const lenientId = (value: object): Id | null =>
  "id" in value && (typeof value.id === "string" || typeof value.id === "number") ? value.id : null

const typeOf = (value: unknown): string => (value === null ? "null" : typeof value)

/**
 * The parts of a response's error member, whatever its shape: a standard error object gives
 * its code, message and data; any other shape keeps the whole value as `data` and derives a
 * readable message from it (`message`, `detail` or `kind` fields, else the JSON text).
 *
 * @category decoding
 */
export const errorParts = (error: unknown): { readonly code: number | undefined; readonly message: string; readonly data: unknown } => {
  if (isErrorObject(error)) {
    return { code: error.code, message: error.message, data: error.data }
  }
  return { code: undefined, message: describeErrorValue(error), data: error }
}

const describeErrorValue = (error: unknown): string => {
  if (typeof error === "string") return error
  if (typeof error === "object" && error !== null) {
    const fields: Array<string> = []
    for (const key of ["kind", "message", "detail"] as const) {
      const v: unknown = key in error ? Reflect.get(error, key) : undefined
      if (typeof v === "string") fields.push(v)
    }
    if (fields.length > 0) return fields.join(": ")
  }
  return excerpt(safeStringify(error))
}

const safeStringify = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

// ---------------------------------------------------------------------------------------------
// encoding
// ---------------------------------------------------------------------------------------------

/**
 * Encodes a message as one line (without the trailing newline). Fails, rather than throws,
 * when a value cannot be represented in JSON (a `BigInt`, a cycle); `undefined` params are
 * omitted.
 *
 * @category encoding
 */
export const encode = (message: Message): Result.Result<string, string> => {
  let wire: object
  switch (message._tag) {
    case "Request":
      return encodeRequest(message.id, message.method, message.params)
    case "Notification":
      wire = message.params === undefined
        ? { jsonrpc: "2.0", method: message.method }
        : { jsonrpc: "2.0", method: message.method, params: message.params }
      break
    case "Success":
      wire = { jsonrpc: "2.0", id: message.id, result: message.result === undefined ? null : message.result }
      break
    case "Failure":
      wire = { jsonrpc: "2.0", id: message.id, error: message.error }
      break
  }
  return stringify(wire)
}

/**
 * Encodes a request as one line, as {@link encode} does a {@link Request} (without making one
 * first: the connection's call path).
 *
 * @category encoding
 */
export const encodeRequest = (id: Id, method: string, params: unknown): Result.Result<string, string> =>
  stringify(params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params })

/**
 * Options of {@link encodeResponse}.
 *
 * @category encoding
 */
export interface EncodeResponseOptions {
  /**
   * The one-shot form: `{"result":…}` or `{"error":…}`, without `jsonrpc` and `id` (the reply
   * to a tick over a broker, whose subject already says which request it answers).
   */
  readonly bare?: boolean | undefined
}

/**
 * Encodes a response as one line, and never fails: a result or error that JSON cannot hold
 * (a `BigInt`, a cycle) is replaced by an INTERNAL_ERROR (-32603) error object saying so, with
 * the same id, so the caller gets an answer instead of waiting for its timeout. Both sides send
 * their replies through it: the host answering a plugin's request, a worker answering the host.
 *
 * @category encoding
 */
export const encodeResponse = (message: Success | Failure, options?: EncodeResponseOptions): string => {
  const bare = options?.bare === true
  const line = bare ? stringify(bareResponse(message)) : encode(message)
  if (Result.isSuccess(line)) return line.success
  const fallback = failure(message.id, { code: ErrorCode.InternalError, message: `the reply could not be encoded as JSON: ${line.failure}` })
  return Result.getOrThrow(bare ? stringify(bareResponse(fallback)) : encode(fallback))
}

const bareResponse = (message: Success | Failure): object =>
  message._tag === "Success" ? { result: message.result === undefined ? null : message.result } : { error: message.error }

const stringify = (wire: object): Result.Result<string, string> => {
  try {
    return Result.succeed(JSON.stringify(wire))
  } catch (cause) {
    return Result.fail(cause instanceof Error ? cause.message : String(cause))
  }
}

/**
 * Constructors for messages.
 *
 * @category constructors
 */
export const request = (id: Id, method: string, params?: unknown): Request => ({ _tag: "Request", id, method, params })
/** @category constructors */
export const notification = (method: string, params?: unknown): Notification => ({ _tag: "Notification", method, params })
/** @category constructors */
export const success = (id: Id | null, result: unknown): Success => ({ _tag: "Success", id, result })
/** @category constructors */
export const failure = (id: Id | null, error: unknown): Failure => ({ _tag: "Failure", id, error })
