/**
 * The one error a plugin call can fail with: `PluginClientError`, naming the plugin, with a
 * `reason` that says what went wrong.
 *
 * It follows Effect's `PlatformError` pattern: one tagged error per family and a tagged union of
 * reasons, handled with `Effect.catchReason("PluginClientError", "Timeout", …)`. Every reason
 * has a human message in the style of the Rust `#[error]` strings of the system it replaces,
 * and the whole error is a Schema, so it can be logged, encoded into a doctor report or sent
 * over the wire.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { formatDuration } from "./internal/formatDuration.ts"
import * as JsonRpc from "./JsonRpc.ts"

// ---------------------------------------------------------------------------------------------
// reasons
// ---------------------------------------------------------------------------------------------

const withStderr = (text: string, stderrExcerpt: string | undefined): string => {
  const tail = stderrExcerpt?.trim()
  return tail ? `${text}; stderr:\n${tail}` : text
}

/**
 * The process could not be started (missing executable, checksum mismatch, bad cwd…).
 *
 * @category reasons
 */
export class Spawn extends Schema.TaggedError<Spawn>()("Spawn", {
  path: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `failed to spawn \`${this.path}\`: ${this.detail}`
  }
}

/**
 * The executable's SHA-256 is not the one its manifest declares (it was replaced after
 * discovery): the spawn is refused and counts as a failed start.
 *
 * @category reasons
 */
export class ChecksumMismatch extends Schema.TaggedError<ChecksumMismatch>()("ChecksumMismatch", {
  executable: Schema.String,
  declared: Schema.String,
  actual: Schema.String,
  /** The file declared in the manifest's `checksums` that differs, when it is not the executable. */
  file: Schema.optionalKey(Schema.String)
}) {
  override get message() {
    const what = this.file === undefined ? "" : ` for \`${this.file}\``
    return `refused to spawn \`${this.executable}\`: checksum mismatch${what} (declared ${this.declared}, actual ${this.actual})`
  }
}

/**
 * The handshake failed, timed out or returned something unacceptable.
 *
 * @category reasons
 */
export class InitFailed extends Schema.TaggedError<InitFailed>()("InitFailed", {
  detail: Schema.String,
  stderrExcerpt: Schema.optionalKey(Schema.String)
}) {
  override get message() {
    return withStderr(`initialization failed: ${this.detail}`, this.stderrExcerpt)
  }
}

/**
 * This call's crash filled the restart window: the plugin is now disabled.
 *
 * @category reasons
 */
export class RestartCapExceeded extends Schema.TaggedError<RestartCapExceeded>()("RestartCapExceeded", {
  cap: Schema.Int,
  window: Schema.Duration
}) {
  override get message() {
    return `exceeded restart cap (${this.cap} restarts in ${formatDuration(this.window)}); marking disabled`
  }
}

/**
 * The plugin is disabled; calls fail fast until `clearDisabled`.
 *
 * @category reasons
 */
export class Disabled extends Schema.TaggedError<Disabled>()("Disabled", {
  reason: Schema.String
}) {
  override get message() {
    return `is disabled: ${this.reason}`
  }
}

/**
 * Writing to or reading from the plugin failed (broken pipe and the like).
 *
 * @category reasons
 */
export class Io extends Schema.TaggedError<Io>()("Io", {
  detail: Schema.String
}) {
  override get message() {
    return `I/O error: ${this.detail}`
  }
}

/**
 * The process exited while the call was pending (or before it could be sent). `requested` is
 * true when the host was stopping it.
 *
 * @category reasons
 */
export class Exited extends Schema.TaggedError<Exited>()("Exited", {
  code: Schema.NullOr(Schema.Int),
  signal: Schema.NullOr(Schema.String),
  requested: Schema.Boolean,
  stderrExcerpt: Schema.String
}) {
  /**
   * How the process ended, without the stderr excerpt: for messages that carry the excerpt
   * themselves (a failed handshake's `InitFailed`), so it is not repeated.
   */
  get summary(): string {
    const how = this.signal !== null ? `was killed by ${this.signal}` : `exited with code ${this.code ?? "unknown"}`
    return `${how}${this.requested ? " (stopped by the host)" : ""}`
  }

  override get message() {
    return withStderr(this.summary, this.stderrExcerpt)
  }
}

/**
 * The plugin wrote something that is not a valid message for this call, or broke the framing
 * (a line over `maxLineBytes`). `line` is an excerpt of at most 200 characters.
 *
 * @category reasons
 */
export class MalformedResponse extends Schema.TaggedError<MalformedResponse>()("MalformedResponse", {
  detail: Schema.String,
  line: Schema.String
}) {
  override get message() {
    return `sent a malformed response: ${this.detail}${this.line ? ` (line: ${this.line})` : ""}`
  }
}

/**
 * The result did not match the method's Schema.
 *
 * @category reasons
 */
export class UnexpectedPayload extends Schema.TaggedError<UnexpectedPayload>()("UnexpectedPayload", {
  method: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `returned an unexpected payload for \`${this.method}\`: ${this.detail}`
  }
}

/**
 * The parameters of a call could not be encoded as JSON (a `BigInt`, a cycle) or failed the
 * method's Schema. Nothing was sent.
 *
 * @category reasons
 */
export class InvalidParams extends Schema.TaggedError<InvalidParams>()("InvalidParams", {
  method: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `cannot send \`${this.method}\`: ${this.detail}`
  }
}

/**
 * The plugin answered with an error object. `code` is present for standard `{code, message}`
 * objects; `data` holds the extra data, or the whole object when it has another shape (for
 * example `{"kind":"needs-credential","detail":"…"}`). Not a crash: the plugin stays up.
 *
 * @category reasons
 */
export class PluginError extends Schema.TaggedError<PluginError>()("PluginError", {
  code: Schema.optionalKey(Schema.Int),
  message: Schema.String,
  data: Schema.optionalKey(Schema.Unknown)
}) {}

/**
 * A strictly serial plugin answered with another id than the one in flight.
 *
 * @category reasons
 */
export class IdMismatch extends Schema.TaggedError<IdMismatch>()("IdMismatch", {
  expected: Schema.Union([Schema.String, Schema.Finite]),
  got: Schema.NullOr(Schema.Union([Schema.String, Schema.Finite]))
}) {
  override get message() {
    return `answered with id ${JSON.stringify(this.got)} while ${JSON.stringify(this.expected)} was in flight`
  }
}

/**
 * No answer within the call's timeout.
 *
 * @category reasons
 */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  method: Schema.String,
  timeout: Schema.Duration
}) {
  override get message() {
    return `timed out after ${formatDuration(this.timeout)} waiting for \`${this.method}\``
  }
}

/**
 * The connection is closed (the host stopped the plugin or closed the client) and the call
 * cannot be made.
 *
 * @category reasons
 */
export class Closed extends Schema.TaggedError<Closed>()("Closed", {
  detail: Schema.String
}) {
  override get message() {
    return `is not accepting calls: ${this.detail}`
  }
}

/**
 * The plugin is not running right now (waiting out a restart backoff, or stopped) and the call
 * was not queued.
 *
 * @category reasons
 */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  detail: Schema.String,
  /** When the plugin is waiting out a backoff: when its restart is due (epoch ms). */
  nextRestartAt: Schema.optional(Schema.Number)
}) {
  override get message() {
    return `is unavailable: ${this.detail}`
  }
}

/**
 * The bytes queued for the plugin and not yet taken by it reached `limit` (the policy's
 * `maxQueuedBytes`): a notification is refused at once, a reply the plugin does not read ends
 * the connection. The plugin is not reading its input fast enough, or not at all.
 *
 * @category reasons
 */
export class Backpressure extends Schema.TaggedError<Backpressure>()("Backpressure", {
  queuedBytes: Schema.Int,
  limit: Schema.Int
}) {
  override get message() {
    return `is not reading its input: ${this.queuedBytes} bytes queued for it (limit ${this.limit})`
  }
}

/**
 * A remote plugin (a NATS service) has no instance subscribed to the subject the call went to:
 * nothing ran. `service` names the service, `subject` the subject nobody serves.
 *
 * @category reasons
 */
export class NoResponders extends Schema.TaggedError<NoResponders>()("NoResponders", {
  service: Schema.String,
  subject: Schema.String
}) {
  override get message() {
    return `has no instance of service \`${this.service}\` answering on \`${this.subject}\``
  }
}

/**
 * The instance of a remote plugin serving a call is gone (it stopped answering whether it still
 * holds the call): the call may or may not have run there, and its reply will never come.
 *
 * @category reasons
 */
export class InstanceLost extends Schema.TaggedError<InstanceLost>()("InstanceLost", {
  service: Schema.String,
  method: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `lost the instance of service \`${this.service}\` serving \`${this.method}\`: ${this.detail}`
  }
}

/**
 * Every reason a plugin call can fail.
 *
 * @category models
 */
export const Reason = Schema.Union([
  Spawn,
  ChecksumMismatch,
  InitFailed,
  RestartCapExceeded,
  Disabled,
  Io,
  Exited,
  MalformedResponse,
  UnexpectedPayload,
  InvalidParams,
  PluginError,
  IdMismatch,
  Timeout,
  Closed,
  Unavailable,
  Backpressure,
  NoResponders,
  InstanceLost
])
export type Reason = typeof Reason.Type

// ---------------------------------------------------------------------------------------------
// error
// ---------------------------------------------------------------------------------------------

/**
 * A failed plugin call or lifetime operation.
 *
 * @category errors
 */
export class PluginClientError extends Schema.TaggedError<PluginClientError>()("PluginClientError", {
  plugin: Schema.String,
  reason: Reason
}) {
  override get message() {
    const reason = this.reason
    // PluginError's `message` is the plugin's own text, so it gets a lead-in here.
    const text = reason._tag === "PluginError"
      ? `returned an error${reason.code === undefined ? "" : ` (${reason.code})`}: ${reason.message}`
      : reason.message
    return `plugin \`${this.plugin}\` ${text}`
  }
}

/**
 * Builds a {@link PluginClientError}.
 *
 * @category constructors
 */
export const make = (plugin: string, reason: Reason): PluginClientError => new PluginClientError({ plugin, reason })

/**
 * The reason an error reply fails its call with: the `error` member of a JSON-RPC response (a
 * `{code, message, data?}` object, or whatever else the plugin sent there), kept whole.
 *
 * @category constructors
 */
export const pluginErrorOf = (error: unknown): PluginError => {
  const parts = JsonRpc.errorParts(error)
  return new PluginError({
    message: parts.message,
    ...(parts.code === undefined ? {} : { code: parts.code }),
    ...(parts.data === undefined ? {} : { data: parts.data })
  })
}
