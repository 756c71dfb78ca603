/**
 * The poller tick protocol: what the host sends a poller plugin on every tick, what the plugin
 * answers, and the errors a tick can end with.
 *
 * This module owns the wire of nexo's `plugin_poller`, kept byte-compatible: a
 * {@link TickRequest} goes out as a JSON-RPC 2.0 `poll_tick` request whose params are
 * snake_case (`job_id`, `agent_id`, `interval_hint_secs`), cursors travel as URL-safe base64
 * without padding ({@link encodeCursor} / {@link decodeCursor}) and `now` as RFC 3339 in UTC
 * with a `+00:00` offset ({@link formatNow}). The plugin's `TickReply` becomes a
 * {@link TickAck}. Unlike the source system, replies are always unwrapped first
 * ({@link decodeReplyEnvelope}): `{"error":…}` is a failure, never a reply with default
 * fields. Plugin error codes are classified as nexo does ({@link classifyError}): `-32002` is
 * {@link Permanent}, `-32602` is {@link Config}, anything else is {@link Transient}.
 *
 * Two dialects say how a tick travels ({@link Dialect}). `"nexo"` (the default) is nexo's own:
 * a one-shot plugin gets `{"method":"poll_tick","params":…}` on one line and the environment
 * variables `NEXO_POLLER_EPHEMERAL=1` and `NEXO_POLLER_PLUGIN_ID`, and a broker request
 * carries the same `{"method":"poll_tick","params":…}` envelope, so an existing nexo poller
 * runs unchanged. `"jsonrpc"` is this host's earlier wire: a full JSON-RPC 2.0 request line
 * (`jsonrpc`, `id`), `POLLER_EPHEMERAL` / `POLLER_PLUGIN_ID`, and bare params over a broker.
 *
 * Every decoder returns a `Result` and never throws, whatever the plugin sent. Failures are a
 * {@link PollerError} with a tagged `reason` (handle with
 * `Effect.catchReason("PollerError", "Transient", …)`); routing failures are a
 * {@link PollerRouteError}. The module is pure: running ticks (spawning, the broker, timeouts,
 * concurrency) belongs to `PollerRouter`, and the `[poller]` manifest section is validated by
 * `PluginManifest.PollerSection`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Base64Url from "effect/encoding/Base64Url"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as JsonRpc from "./JsonRpc.ts"
import { formatDuration } from "./internal/formatDuration.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * One tick of one poller job, as the host sees it. `cursor` is `undefined` on a job's first
 * run; `config` is the job's JSON configuration, passed through untouched.
 *
 * @category models
 */
export interface TickRequest {
  readonly kind: string
  readonly jobId: string
  readonly agentId: string
  readonly cursor: Uint8Array | undefined
  readonly config: unknown
  readonly now: Date
  readonly intervalHint: Duration.Duration
}

/**
 * What a tick produced. `nextCursor` is `undefined` when the plugin said nothing about the
 * cursor (keep the current one); an empty `Uint8Array` means "reset" (the plugin sent `""`).
 * `nextIntervalHint` is `undefined` when the plugin has no opinion on the next interval.
 *
 * @category models
 */
export interface TickAck {
  readonly nextCursor: Uint8Array | undefined
  readonly nextIntervalHint: Duration.Duration | undefined
  readonly metrics: {
    readonly itemsSeen: number
    readonly itemsDispatched: number
  }
}

/**
 * The `params` of a `poll_tick` request on the wire (nexo's `TickRequest`): snake_case,
 * `cursor` as unpadded URL-safe base64 or `null` on the first run, `now` as RFC 3339 with a
 * `+00:00` offset, `interval_hint_secs` in whole seconds.
 *
 * @category models
 */
export interface TickParamsWire {
  readonly kind: string
  readonly job_id: string
  readonly agent_id: string
  readonly cursor: string | null
  readonly config: unknown
  readonly now: string
  readonly interval_hint_secs: number
}

/**
 * A plugin's answer to a tick on the wire (nexo's `TickReply`), the `result` of the JSON-RPC
 * reply. Every field is optional; see {@link decodeTickReply} for what each value means.
 *
 * @category models
 */
export interface TickReplyWire {
  readonly next_cursor?: string | null
  readonly next_interval_secs?: number | null
  readonly metrics?: {
    readonly items_seen?: number
    readonly items_dispatched?: number
  } | null
}

/**
 * The JSON-RPC method of a tick.
 *
 * @category models
 */
export const method = "poll_tick"

/**
 * The error codes a poller plugin answers with to steer the host: `Permanent` (`-32002`, the
 * job can never succeed as configured, stop retrying), `Config` (`-32602`, the job's config
 * is invalid) and `Transient` (`-32001`, try again on the next tick; any other code, or none,
 * counts as transient too).
 *
 * @category models
 */
export const ErrorCode = {
  Permanent: -32002,
  Config: -32602,
  Transient: -32001
} as const

/**
 * How a tick travels: `"nexo"` (nexo's envelope and `NEXO_POLLER_*` variables, the default) or
 * `"jsonrpc"` (a full JSON-RPC 2.0 request, `POLLER_*` variables, bare params over a broker).
 * Replies are read the same way in both.
 *
 * @category models
 */
export type Dialect = "nexo" | "jsonrpc"

/**
 * The dialect ticks use unless told otherwise: nexo's, since poller plugins are nexo's.
 *
 * @category models
 */
export const defaultDialect: Dialect = "nexo"

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

const withCode = (text: string, code: number | undefined): string =>
  code === undefined ? text : `${text} (code ${code})`

/**
 * The job's configuration is wrong (the plugin answered `-32602`, or the tick could not be
 * encoded): retrying the same job will fail the same way until its config changes. `code` is
 * the plugin's error code, when the reason comes from one.
 *
 * @category reasons
 */
export class Config extends Schema.TaggedError<Config>()("Config", {
  detail: Schema.String,
  code: Schema.optionalKey(Schema.Int)
}) {
  override get message() {
    return withCode(`config: ${this.detail}`, this.code)
  }
}

/**
 * The tick failed but the next one may succeed: a timeout, a crash, a malformed reply, or a
 * plugin error with any code other than `-32002` / `-32602` (or none).
 *
 * @category reasons
 */
export class Transient extends Schema.TaggedError<Transient>()("Transient", {
  detail: Schema.String,
  code: Schema.optionalKey(Schema.Int)
}) {
  override get message() {
    return withCode(`transient: ${this.detail}`, this.code)
  }
}

/**
 * The plugin says the job can never succeed (`-32002`): stop scheduling it.
 *
 * @category reasons
 */
export class Permanent extends Schema.TaggedError<Permanent>()("Permanent", {
  detail: Schema.String,
  code: Schema.optionalKey(Schema.Int)
}) {
  override get message() {
    return withCode(`permanent: ${this.detail}`, this.code)
  }
}

/**
 * Every reason a tick can fail.
 *
 * @category models
 */
export const PollerErrorReason = Schema.Union([Config, Transient, Permanent])
export type PollerErrorReason = typeof PollerErrorReason.Type

/**
 * Which poller a {@link PollerError} is about: its kind and the plugin serving it, when known.
 *
 * @category models
 */
export interface PollerErrorContext {
  readonly plugin?: string | undefined
  readonly kind?: string | undefined
}

/**
 * A failed tick. `plugin` and `kind` are absent when the error was produced by a decoder that
 * does not know them; the router adds them with {@link make} (also spelled
 * `PollerError.with(reason, context)`) or `error.withContext(context)`. The message reads like
 * ``poller `rss` (plugin `rss-poller`): transient: tick timed out after 5s``.
 *
 * @category errors
 */
export class PollerError extends Schema.TaggedError<PollerError>()("PollerError", {
  plugin: Schema.optionalKey(Schema.String),
  kind: Schema.optionalKey(Schema.String),
  reason: PollerErrorReason
}) {
  override get message() {
    const who = this.kind === undefined
      ? this.plugin === undefined ? "poller" : `poller plugin \`${this.plugin}\``
      : this.plugin === undefined
      ? `poller \`${this.kind}\``
      : `poller \`${this.kind}\` (plugin \`${this.plugin}\`)`
    return `${who}: ${this.reason.message}`
  }

  /**
   * Builds a {@link PollerError} from a reason and the poller it is about; the same as
   * {@link make}, spelled `PollerError.with(reason, { plugin, kind })`.
   */
  static with(reason: PollerErrorReason, context?: PollerErrorContext): PollerError {
    return make(reason, context)
  }

  /** The same error with `plugin` and/or `kind` set (defined values replace existing ones). */
  withContext(context: PollerErrorContext): PollerError {
    return make(this.reason, {
      plugin: context.plugin ?? this.plugin,
      kind: context.kind ?? this.kind
    })
  }
}

/**
 * Builds a {@link PollerError} from a reason and, optionally, the poller it is about
 * (`undefined` fields are left out).
 *
 * @category constructors
 */
export const make = (reason: PollerErrorReason, context?: PollerErrorContext): PollerError => {
  const plugin = context?.plugin
  const kind = context?.kind
  if (plugin === undefined) return kind === undefined ? new PollerError({ reason }) : new PollerError({ kind, reason })
  return kind === undefined ? new PollerError({ plugin, reason }) : new PollerError({ plugin, kind, reason })
}

/**
 * A plugin claimed a poller kind that another plugin already serves. (Registering the same
 * plugin again replaces its kinds instead.)
 *
 * @category reasons
 */
export class DuplicateKind extends Schema.TaggedError<DuplicateKind>()("DuplicateKind", {
  kind: Schema.String,
  existingPlugin: Schema.String,
  newPlugin: Schema.String
}) {
  override get message() {
    return `poller kind \`${this.kind}\` is already owned by plugin \`${this.existingPlugin}\`; plugin \`${this.newPlugin}\` cannot claim it`
  }
}

/**
 * A plugin cannot be registered as a poller (no `[poller]` section, a long-lived poller
 * without a broker topic prefix…).
 *
 * @category reasons
 */
export class InvalidRegistration extends Schema.TaggedError<InvalidRegistration>()("InvalidRegistration", {
  plugin: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `cannot register plugin \`${this.plugin}\` as a poller: ${this.detail}`
  }
}

/**
 * Every reason a poller registration can be refused.
 *
 * @category models
 */
export const PollerRouteErrorReason = Schema.Union([DuplicateKind, InvalidRegistration])
export type PollerRouteErrorReason = typeof PollerRouteErrorReason.Type

/**
 * A refused poller registration; the message is the reason's.
 *
 * @category errors
 */
export class PollerRouteError extends Schema.TaggedError<PollerRouteError>()("PollerRouteError", {
  reason: PollerRouteErrorReason
}) {
  override get message() {
    return this.reason.message
  }
}

// ---------------------------------------------------------------------------------------------
// cursors and timestamps
// ---------------------------------------------------------------------------------------------

/**
 * Encodes cursor bytes as URL-safe base64 without padding (`-` and `_`, no `=`), as nexo does.
 * The empty cursor encodes to `""`.
 *
 * @category cursors
 */
export const encodeCursor = (bytes: Uint8Array): string => Base64Url.encode(bytes)

const urlSafeCharacter = /^[A-Za-z0-9_-]$/

/**
 * Decodes a cursor from URL-safe base64. Accepted: the unpadded form and the correctly padded
 * one (`=` up to a multiple of 4 characters). Rejected, with a message saying why: any
 * character outside `A-Z a-z 0-9 - _` — including the standard-alphabet `+` and `/`, since a
 * cursor that mixes alphabets is a plugin bug, not something to guess about — whitespace and
 * line breaks, misplaced or excess padding, a length that cannot encode whole bytes, and
 * non-zero leftover bits in the last character. So a string decodes to at most one byte
 * sequence and `encodeCursor(decoded)` gives back the input without its padding.
 *
 * @category cursors
 */
export const decodeCursor = (text: string): Result.Result<Uint8Array, string> => {
  let end = text.length
  while (end > 0 && text[end - 1] === "=") end--
  const padding = text.length - end
  if (padding > 2) return Result.fail(`too much padding (${padding} "=" characters, at most 2)`)
  if (padding > 0 && text.length % 4 !== 0) {
    return Result.fail(`padded length ${text.length} is not a multiple of 4`)
  }
  const body = text.slice(0, end)
  for (let index = 0; index < body.length; index++) {
    const character = body.charAt(index)
    if (!urlSafeCharacter.test(character)) {
      const hint = character === "="
        ? "; \"=\" padding is only allowed at the end"
        : character === "+" || character === "/"
        ? `; ${JSON.stringify(character)} belongs to standard base64, cursors use "-" and "_"`
        : ""
      return Result.fail(
        `invalid character ${JSON.stringify(character)} at index ${index} (expected URL-safe base64: A-Z a-z 0-9 - _${hint})`
      )
    }
  }
  if (body.length % 4 === 1) {
    return Result.fail(`truncated: ${body.length} base64url characters cannot encode whole bytes`)
  }
  const decoded = Base64Url.decode(body)
  if (Result.isFailure(decoded)) return Result.fail(decoded.failure.message)
  if (Base64Url.encode(decoded.success) !== body) {
    return Result.fail("the last character has non-zero leftover bits (not canonical base64url)")
  }
  return Result.succeed(decoded.success)
}

/**
 * Formats a tick's `now` as RFC 3339 in UTC with a `+00:00` offset (not `Z`) and millisecond
 * precision, e.g. `2026-11-23T18:45:00.123+00:00`. Throws a `RangeError` for an invalid
 * `Date` or one outside the years 0000–9999, which RFC 3339 cannot express;
 * {@link tickRequestLineResult} reports that as a value instead.
 *
 * @category encoding
 */
export const formatNow = (date: Date): string => {
  const year = date.getUTCFullYear()
  if (Number.isNaN(year)) throw new RangeError("cannot format an invalid Date as RFC 3339")
  if (year < 0 || year > 9999) throw new RangeError(`year ${year} cannot be written in RFC 3339 (0000-9999)`)
  return `${date.toISOString().slice(0, -1)}+00:00`
}

const intervalSecs = (interval: Duration.Duration): number => {
  if (!Duration.isFinite(interval)) throw new RangeError("the interval hint must be finite")
  const seconds = Duration.toSeconds(interval)
  if (seconds < 0) throw new RangeError(`the interval hint must not be negative, got ${formatDuration(interval)}`)
  return Math.floor(seconds)
}

// ---------------------------------------------------------------------------------------------
// encoding
// ---------------------------------------------------------------------------------------------

/**
 * The wire params of a tick. `interval_hint_secs` is the hint in whole seconds, rounded down
 * (as Rust's `Duration::as_secs`, so typed plugins reading an unsigned integer accept it); a
 * `config` of `undefined` is sent as `null`. Throws a `RangeError` for an invalid or
 * out-of-range `now` (see {@link formatNow}) or a negative or infinite `intervalHint`.
 *
 * @category encoding
 */
export const encodeTickParams = (request: TickRequest): TickParamsWire => ({
  kind: request.kind,
  job_id: request.jobId,
  agent_id: request.agentId,
  cursor: request.cursor === undefined ? null : encodeCursor(request.cursor),
  config: request.config === undefined ? null : request.config,
  now: formatNow(request.now),
  interval_hint_secs: intervalSecs(request.intervalHint)
})

/**
 * A tick as one JSON-RPC 2.0 request line, without the trailing newline:
 * `{"jsonrpc":"2.0","id":1,"method":"poll_tick","params":{…}}` (`id` defaults to 1, which is
 * all a one-shot plugin needs). Throws what {@link encodeTickParams} throws, and a
 * `TypeError` when `config` is not JSON-serializable (a `BigInt`, a cycle); use
 * {@link tickRequestLineResult} to get those as a value.
 *
 * @category encoding
 */
export const tickRequestLine = (request: TickRequest, id: number | string = 1): string =>
  JSON.stringify({ jsonrpc: "2.0", id, method, params: encodeTickParams(request) })

/**
 * Like {@link tickRequestLine}, but never throws: a tick that cannot be encoded (invalid
 * `now`, negative or infinite interval hint, config that is not JSON) is a
 * {@link PollerError} with a {@link Config} reason, since retrying the same job cannot help.
 *
 * @category encoding
 */
export const tickRequestLineResult = (
  request: TickRequest,
  id: number | string = 1
): Result.Result<string, PollerError> => {
  try {
    return Result.succeed(tickRequestLine(request, id))
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause)
    return Result.fail(make(new Config({ detail: `cannot encode the tick request: ${detail}` }), { kind: request.kind }))
  }
}

/**
 * nexo's tick envelope, `{"method":"poll_tick","params":…}`: what nexo writes to a one-shot
 * plugin's stdin and sends as the payload of a broker request. Throws what
 * {@link encodeTickParams} throws.
 *
 * @category encoding
 */
export const tickEnvelope = (request: TickRequest): { readonly method: typeof method; readonly params: TickParamsWire } => ({
  method,
  params: encodeTickParams(request)
})

/**
 * The one line (without newline) a one-shot plugin reads in `dialect`: nexo's
 * {@link tickEnvelope}, or the JSON-RPC request of {@link tickRequestLine} (`id` 1). Throws
 * what {@link tickRequestLine} throws.
 *
 * @category encoding
 */
export const tickLine = (request: TickRequest, dialect: Dialect): string =>
  dialect === "nexo" ? JSON.stringify(tickEnvelope(request)) : tickRequestLine(request)

/**
 * The payload of a broker tick request in `dialect`: nexo's {@link tickEnvelope}, or the bare
 * params. Throws what {@link encodeTickParams} throws.
 *
 * @category encoding
 */
export const brokerPayload = (request: TickRequest, dialect: Dialect): unknown =>
  dialect === "nexo" ? tickEnvelope(request) : encodeTickParams(request)

/**
 * The variables a one-shot plugin gets for its tick (besides its allow-listed ones): nexo's
 * `NEXO_POLLER_EPHEMERAL=1` and `NEXO_POLLER_PLUGIN_ID`, or `POLLER_EPHEMERAL` and
 * `POLLER_PLUGIN_ID` in the `"jsonrpc"` dialect.
 *
 * @category encoding
 */
export const ephemeralEnv = (dialect: Dialect, pluginId: string): Readonly<Record<string, string>> =>
  dialect === "nexo"
    ? { NEXO_POLLER_EPHEMERAL: "1", NEXO_POLLER_PLUGIN_ID: pluginId }
    : { POLLER_EPHEMERAL: "1", POLLER_PLUGIN_ID: pluginId }

/**
 * The tick params in a broker payload, as a poller reads it: an object whose `method` is
 * `poll_tick` is nexo's envelope and its `params` are the tick; anything else is taken as the
 * params themselves (the `"jsonrpc"` dialect). So a poller serves both dialects.
 *
 * @category decoding
 */
export const tickParamsOf = (payload: unknown): unknown =>
  isRecord(payload) && payload.method === method && "params" in payload ? payload.params : payload

// ---------------------------------------------------------------------------------------------
// decoding
// ---------------------------------------------------------------------------------------------

const describeValue = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "string") return `the string ${JSON.stringify(JsonRpc.excerpt(value))}`
  if (typeof value === "number" || typeof value === "boolean") return String(value)
  return typeof value === "object" ? "an object" : typeof value
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const transient = (detail: string): PollerError => make(new Transient({ detail }))

const decodeCount = (metrics: Record<string, unknown>, key: string, issues: Array<string>): number => {
  const value = metrics[key]
  if (value === undefined || value === null) return 0
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value
  issues.push(`metrics.${key} must be a non-negative integer, got ${describeValue(value)}`)
  return 0
}

/**
 * Decodes a tick reply (the `result` of the plugin's answer) into a {@link TickAck}. Every
 * field is optional, unknown fields are ignored, and `null` counts as absent:
 * - `next_cursor`: absent or `null` → keep the cursor (`undefined`); `""` → reset (an empty
 *   `Uint8Array`); otherwise URL-safe base64 ({@link decodeCursor}).
 * - `next_interval_secs`: absent or `null` → no hint; otherwise a finite number ≥ 0 (fractions
 *   are kept).
 * - `metrics`: absent or `null` → zeros; `items_seen` / `items_dispatched` default to 0 and
 *   must otherwise be non-negative integers.
 *
 * A `null` result (what a handler that returns nothing produces) is an empty reply. Anything
 * else that is not an object, or any bad field, is a {@link Transient} error whose detail
 * names every bad field.
 *
 * @category decoding
 */
export const decodeTickReply = (result: unknown): Result.Result<TickAck, PollerError> => {
  if (result === null) return Result.succeed(emptyAck)
  if (!isRecord(result)) return Result.fail(transient(`tick reply must be an object, got ${describeValue(result)}`))
  const issues: Array<string> = []

  let nextCursor: Uint8Array | undefined
  const cursor = result.next_cursor
  if (typeof cursor === "string") {
    const decoded = decodeCursor(cursor)
    if (Result.isSuccess(decoded)) nextCursor = decoded.success
    else issues.push(`next_cursor is not a valid cursor: ${decoded.failure}`)
  } else if (cursor !== undefined && cursor !== null) {
    issues.push(`next_cursor must be a base64url string or null, got ${describeValue(cursor)}`)
  }

  let nextIntervalHint: Duration.Duration | undefined
  const interval = result.next_interval_secs
  if (typeof interval === "number" && Number.isFinite(interval) && interval >= 0) {
    nextIntervalHint = Duration.seconds(interval)
  } else if (interval !== undefined && interval !== null) {
    issues.push(`next_interval_secs must be a non-negative number of seconds or null, got ${describeValue(interval)}`)
  }

  let itemsSeen = 0
  let itemsDispatched = 0
  const metrics = result.metrics
  if (isRecord(metrics)) {
    itemsSeen = decodeCount(metrics, "items_seen", issues)
    itemsDispatched = decodeCount(metrics, "items_dispatched", issues)
  } else if (metrics !== undefined && metrics !== null) {
    issues.push(`metrics must be an object or null, got ${describeValue(metrics)}`)
  }

  if (issues.length > 0) return Result.fail(transient(`invalid tick reply: ${issues.join("; ")}`))
  return Result.succeed({ nextCursor, nextIntervalHint, metrics: { itemsSeen, itemsDispatched } })
}

const emptyAck: TickAck = { nextCursor: undefined, nextIntervalHint: undefined, metrics: { itemsSeen: 0, itemsDispatched: 0 } }

/**
 * Classifies a plugin's error object the way nexo does: `-32002` → {@link Permanent},
 * `-32602` → {@link Config}, `-32001`, any other code or no code → {@link Transient}. The
 * plugin's message becomes the detail unchanged (a placeholder when it is blank) and an
 * integer code is kept on the reason.
 *
 * @category decoding
 */
export const classifyError = (error: {
  readonly code?: number | undefined
  readonly message: string
  readonly data?: unknown
}): PollerErrorReason => {
  const detail = error.message.trim() === "" ? "the plugin sent an error without a message" : error.message
  const code = error.code
  const fields = code !== undefined && Number.isSafeInteger(code) ? { detail, code } : { detail }
  switch (code) {
    case ErrorCode.Permanent:
      return new Permanent(fields)
    case ErrorCode.Config:
      return new Config(fields)
    default:
      return new Transient(fields)
  }
}

const safeExcerpt = (value: unknown): string => {
  try {
    return JsonRpc.excerpt(JSON.stringify(value) ?? String(value))
  } catch {
    return JsonRpc.excerpt(String(value))
  }
}

const malformed = (detail: string, value: unknown): PollerError =>
  transient(`malformed reply: ${detail}: ${safeExcerpt(value)}`)

/**
 * Unwraps a plugin's reply and decodes it: `{"result": TickReply}` is decoded with
 * {@link decodeTickReply}; `{"error": …}` fails with the {@link classifyError} reason (error
 * objects that are not `{code, message}` are read with `JsonRpc.errorParts` and count as
 * transient). `jsonrpc` and `id` may be present or not and are not checked; the caller
 * correlates replies. As in JSON-RPC 1.0, a member that is `null` counts as absent, so
 * `{"result":…,"error":null}` is a success and `{"result":null,"error":{…}}` a failure.
 * Everything else — not an object, neither member, both members non-null — is a
 * {@link Transient} "malformed reply" error quoting at most 200 characters of the reply.
 *
 * @category decoding
 */
export const decodeReplyEnvelope = (value: unknown): Result.Result<TickAck, PollerError> => {
  if (!isRecord(value)) {
    return Result.fail(malformed(`expected {"result":…} or {"error":…}, got ${describeValue(value)}`, value))
  }
  const hasResult = "result" in value
  const error = value.error
  const hasError = error !== undefined && error !== null
  if (hasError) {
    if (hasResult && value.result !== null && value.result !== undefined) {
      return Result.fail(malformed("it has both a result and an error", value))
    }
    return Result.fail(make(classifyError(JsonRpc.errorParts(error))))
  }
  if (!hasResult) return Result.fail(malformed("it has neither a result nor an error", value))
  return decodeTickReply(value.result)
}

/**
 * Decodes the one line a one-shot (ephemeral) plugin writes to stdout. Surrounding whitespace
 * is ignored; an empty line is {@link Transient} "empty reply", a line that is not JSON is
 * {@link Transient} "reply is not JSON: <excerpt>", and anything else goes through
 * {@link decodeReplyEnvelope}.
 *
 * @category decoding
 */
export const decodeReplyLine = (line: string): Result.Result<TickAck, PollerError> => {
  const text = line.trim()
  if (text === "") return Result.fail(transient("empty reply"))
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return Result.fail(transient(`reply is not JSON: ${JsonRpc.excerpt(text)}`))
  }
  return decodeReplyEnvelope(value)
}
