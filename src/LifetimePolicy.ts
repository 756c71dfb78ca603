/**
 * The lifetime knobs of a plugin: `LifetimePolicy`, one record saying when a plugin process is
 * started, when it is reaped, how long each phase of its life may take, how many crashes it is
 * allowed and how (and whether) it is restarted after one.
 *
 * This module owns the record, its two presets (`default`, the devboy semantics: lazy, reaped
 * after 60 s idle, 3 crashes in 60 s disable it; `alwaysOn`, the Paperclip semantics: eager, never
 * reaped, restarted with exponential backoff), its validation (`make`, `makeUnsafe`), reading it
 * from the environment (`config`, prefix `PLUGIN_HOST_`) and the restart backoff arithmetic
 * (`backoffDelay`, and `backoffSchedule` for `Effect.retry`/`repeat`). It is pure policy: no
 * process code, and time and randomness only through Effect's `Clock` and `Random`.
 *
 * @since 0.1.0
 */
import * as ByteSize from "effect/ByteSize"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as SchemaGetter from "effect/SchemaGetter"
import * as SchemaIssue from "effect/SchemaIssue"
import type { Mode as FramingMode } from "./Framing.ts"
import { formatDuration } from "./internal/formatDuration.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * When the process is started: `"lazy"` on the first request, `"eager"` as soon as the client
 * is made.
 *
 * @category models
 */
export type Start = "lazy" | "eager"

/**
 * What the host tells a plugin when one of its calls times out or its caller is interrupted:
 * `"lsp"` sends `$/cancelRequest {id}` (vscode-jsonrpc, language servers), `"mcp"` sends
 * `notifications/cancelled {requestId, reason}` (Model Context Protocol servers), `"none"` sends
 * nothing (the wire of plugins written before cancellation existed; the default). The dialect
 * also picks where a call's progress token goes (`"lsp"`: `workDoneToken`; otherwise MCP's
 * `_meta.progressToken`). Whatever the knob, the host honours both forms of cancel a plugin sends
 * for its own calls to the host.
 *
 * @category models
 */
export type Cancellation = "lsp" | "mcp" | "none"

/**
 * How messages are delimited on the plugin's stdin and stdout: `"ndjson"`, one JSON text per
 * line (the default), or `"content-length"`, LSP's base protocol (`Content-Length: N\r\n\r\n`
 * then N bytes of UTF-8 JSON), so an existing language server can be hosted. A plugin hosted
 * with `"content-length"` gets `PLUGIN_HOST_FRAMING=content-length` in its environment, which
 * `PluginWorker.serve` reads. See `Framing`.
 *
 * @category models
 */
export type Framing = FramingMode

/**
 * What holds a plugin's process tree so that none of it outlives the plugin: `"cgroup"` (the
 * default) puts each plugin in a cgroup v2 group of its own where the host may make one, entered
 * before the plugin's first instruction, and walks `/proc` elsewhere; `"process-tree"` always
 * walks `/proc`. Entering a group waits for a kernel RCU grace period (5–16 ms measured on Linux
 * 6.18) unless the cgroup2 mount has `favordynmods` (the doctor says when it lacks it): an idle
 * wait in each start, not host CPU. `"process-tree"` starts sooner but scans all of `/proc` at
 * every stop (host CPU that grows with the machine's process count) and lets a double-forked
 * `setsid` orphan escape; a host that spawns a plugin per tick should rather remount with
 * `favordynmods`. See "No process outlives its plugin's stop" in the README.
 *
 * @category models
 */
export type Containment = "cgroup" | "process-tree"

/**
 * Automatic restart after a crash, with exponential backoff.
 *
 * The delay before restart number `n` (`n` = consecutive crashes so far, 1-based) is
 * `initial * factor^(n-1)`, times a random factor in `[1 - jitter, 1 + jitter]`, then capped at
 * `max` (the cap is applied after the jitter, so `max` is a hard limit). Each crash of a run is
 * followed by a restart until `giveUpAfter` restarts have been made: the next crash (number
 * `giveUpAfter + 1`) disables the plugin. A run ends with a successful (re)initialize, or when a
 * crash comes `resetAfter` or more after the previous one; the next crash is number 1 again.
 *
 * @category models
 */
export interface Backoff {
  /** Delay before the first restart (before jitter). */
  readonly initial: Duration.Duration
  /** Growth of the delay per consecutive crash, `>= 1`. */
  readonly factor: number
  /** Relative jitter in `[0, 1)`: `0.25` means ±25 %. */
  readonly jitter: number
  /** Hard upper bound of any delay, applied after the jitter. */
  readonly max: Duration.Duration
  /** Restarts in a row after which the next crash is not restarted any more. */
  readonly giveUpAfter: number
  /** A crash this old (or older) no longer counts as "consecutive" with the next one. */
  readonly resetAfter: Duration.Duration
}

/**
 * Every lifetime knob of one plugin. Build one with {@link make} (validated) or start from
 * {@link defaultPolicy} / {@link alwaysOn}.
 *
 * @category models
 */
export interface LifetimePolicy {
  /** Spawn on the first request (`"lazy"`) or right away (`"eager"`). */
  readonly start: Start
  /** Reap the process after this long without activity; `undefined` = never reap. */
  readonly idleTimeout: Duration.Duration | undefined
  /** Time between SIGTERM and SIGKILL when stopping. */
  readonly shutdownGrace: Duration.Duration
  /** Time the plugin gets to answer a `shutdown` request and drain before SIGTERM. */
  readonly drainTimeout: Duration.Duration
  /** Length of the sliding crash window (see `RestartWindow`). */
  readonly restartWindow: Duration.Duration
  /** Crashes within `restartWindow` that disable the plugin. */
  readonly restartCap: number
  /** Timeout of a call that does not choose its own. */
  readonly requestTimeout: Duration.Duration
  /** Upper bound of any per-call timeout. */
  readonly maxRequestTimeout: Duration.Duration
  /** Time the handshake may take. */
  readonly initTimeout: Duration.Duration
  /** Calls in flight at once; `1` makes the plugin strictly serial. */
  readonly maxConcurrentRequests: number
  /** Longest line (in bytes) accepted from the plugin. */
  readonly maxLineBytes: number
  /**
   * Bytes queued in each direction of one plugin's connection: lines written for the plugin and
   * not yet taken by it (a request then waits for room within its timeout, a notification fails
   * with `Backpressure`, and replies the plugin leaves unread end the connection at twice this),
   * and notifications received and not yet handled, up to a quarter of it (a parsed notification
   * takes several times the bytes of its line; beyond it they are dropped and counted).
   */
  readonly maxQueuedBytes: number
  /** A plugin that times out this many calls in a row is recycled as a crash. */
  readonly consecutiveTimeoutsBeforeRecycle: number
  /** Automatic restart after a crash; `undefined` = none (a lazy plugin respawns on the next request). */
  readonly backoff: Backoff | undefined
  /** How a call the host gives up on is cancelled at the plugin (see {@link Cancellation}). */
  readonly cancellation: Cancellation
  /** How messages are delimited on the plugin's stdio (see {@link Framing}). */
  readonly framing: Framing
  /** What holds the plugin's process tree (see {@link Containment}). */
  readonly containment: Containment
}

/**
 * A partial {@link Backoff} for {@link make}: durations may be any `Duration.Input`, and missing
 * fields come from {@link defaultBackoff}.
 *
 * @category models
 */
export interface BackoffInput {
  readonly initial?: Duration.Input
  readonly factor?: number
  readonly jitter?: number
  readonly max?: Duration.Input
  readonly giveUpAfter?: number
  readonly resetAfter?: Duration.Input
}

/**
 * A partial {@link LifetimePolicy} for {@link make}: durations may be any `Duration.Input`
 * (`"5 seconds"`, `5000`, a `Duration`). A missing key takes the value of
 * {@link defaultPolicy}; `idleTimeout: undefined` and `backoff: undefined` given explicitly mean
 * "never reap" and "no automatic restart". Every `LifetimePolicy` is an `Input`, so
 * `make({ ...LifetimePolicy.alwaysOn, restartCap: 5 })` works.
 *
 * @category models
 */
export interface Input {
  readonly start?: Start
  readonly idleTimeout?: Duration.Input | undefined
  readonly shutdownGrace?: Duration.Input
  readonly drainTimeout?: Duration.Input
  readonly restartWindow?: Duration.Input
  readonly restartCap?: number
  readonly requestTimeout?: Duration.Input
  readonly maxRequestTimeout?: Duration.Input
  readonly initTimeout?: Duration.Input
  readonly maxConcurrentRequests?: number
  readonly maxLineBytes?: number
  readonly maxQueuedBytes?: number
  readonly consecutiveTimeoutsBeforeRecycle?: number
  readonly backoff?: BackoffInput | undefined
  readonly cancellation?: Cancellation
  readonly framing?: Framing
  readonly containment?: Containment
}

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

/**
 * A lifetime knob has an invalid value. `knob` is the field name (`"restartCap"`,
 * `"backoff.jitter"`), `detail` says what is wrong with it.
 *
 * @category errors
 */
export class PolicyError extends Schema.TaggedError<PolicyError>()("PolicyError", {
  knob: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `invalid lifetime policy: \`${this.knob}\` ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------
// presets
// ---------------------------------------------------------------------------------------------

/**
 * The Paperclip restart backoff: 1 s ×2 ±25 %, at most 5 min, give up after 10 restarts in a
 * row (the 11th consecutive crash disables), the count resets after a successful initialize or
 * 10 min without a crash. Used by {@link alwaysOn} and as the
 * base of a partial `backoff` given to {@link make}.
 *
 * @category presets
 */
export const defaultBackoff: Backoff = {
  initial: Duration.seconds(1),
  factor: 2,
  jitter: 0.25,
  max: Duration.minutes(5),
  giveUpAfter: 10,
  resetAfter: Duration.minutes(10)
}

/**
 * The devboy semantics: lazy spawn, idle reap after 60 s, SIGTERM → 10 s → SIGKILL, 3 crashes
 * in 60 s disable the plugin, 30 s call timeout (5 min hard cap), 15 s handshake, 10 s drain,
 * 64 concurrent calls, 16 MiB lines, 32 MiB queued each way, 3 timeouts in a row recycle the process, no automatic
 * restart, no cancellation sent, NDJSON framing. Exported as `default` too (`LifetimePolicy.default`).
 *
 * @category presets
 */
export const defaultPolicy: LifetimePolicy = {
  start: "lazy",
  idleTimeout: Duration.seconds(60),
  shutdownGrace: Duration.seconds(10),
  drainTimeout: Duration.seconds(10),
  restartWindow: Duration.seconds(60),
  restartCap: 3,
  requestTimeout: Duration.seconds(30),
  maxRequestTimeout: Duration.minutes(5),
  initTimeout: Duration.seconds(15),
  maxConcurrentRequests: 64,
  maxLineBytes: 16 * 1024 * 1024,
  maxQueuedBytes: 32 * 1024 * 1024,
  consecutiveTimeoutsBeforeRecycle: 3,
  backoff: undefined,
  cancellation: "none",
  framing: "ndjson",
  containment: "cgroup"
}

export {
  /**
   * The default policy, see {@link defaultPolicy}.
   *
   * @category presets
   */
  defaultPolicy as default
}

/**
 * The Paperclip semantics: {@link defaultPolicy} with eager start, no idle reaping, a 5 s
 * SIGTERM grace and {@link defaultBackoff} restarts.
 *
 * @category presets
 */
export const alwaysOn: LifetimePolicy = {
  ...defaultPolicy,
  start: "eager",
  idleTimeout: undefined,
  shutdownGrace: Duration.seconds(5),
  backoff: defaultBackoff
}

// ---------------------------------------------------------------------------------------------
// validation
// ---------------------------------------------------------------------------------------------

/** Exact, so an encoded config value reads back as the same duration. */
const encodeDuration = (d: Duration.Duration): string => Duration.format(d)

const checkDuration = (knob: string, d: Duration.Duration): PolicyError | undefined =>
  Duration.isFinite(d) && Duration.isPositive(d)
    ? undefined
    : new PolicyError({ knob, detail: `must be a positive, finite duration (got ${formatDuration(d)})` })

const checkInt = (knob: string, n: number, min: number): PolicyError | undefined =>
  Number.isSafeInteger(n) && n >= min
    ? undefined
    : new PolicyError({ knob, detail: `must be an integer >= ${min} (got ${n})` })

/** The values of each literal knob, for its check and its `PLUGIN_HOST_*` variable. */
const cancellations = ["lsp", "mcp", "none"] as const
const framings = ["ndjson", "content-length"] as const
const containments = ["cgroup", "process-tree"] as const

const checkOneOf = (knob: string, value: string, allowed: ReadonlyArray<string>): PolicyError | undefined => {
  if (allowed.includes(value)) return undefined
  const quoted = allowed.map((v) => JSON.stringify(v))
  return new PolicyError({ knob, detail: `must be ${quoted.slice(0, -1).join(", ")} or ${quoted.at(-1)} (got ${JSON.stringify(value)})` })
}

const checkBackoff = (b: Backoff): PolicyError | undefined =>
  checkDuration("backoff.initial", b.initial) ??
    checkDuration("backoff.max", b.max) ??
    checkDuration("backoff.resetAfter", b.resetAfter) ??
    (Number.isFinite(b.factor) && b.factor >= 1
      ? undefined
      : new PolicyError({ knob: "backoff.factor", detail: `must be a finite number >= 1 (got ${b.factor})` })) ??
    (Number.isFinite(b.jitter) && b.jitter >= 0 && b.jitter < 1
      ? undefined
      : new PolicyError({ knob: "backoff.jitter", detail: `must be in [0, 1) (got ${b.jitter})` })) ??
    checkInt("backoff.giveUpAfter", b.giveUpAfter, 1) ??
    (Duration.isGreaterThan(b.initial, b.max)
      ? new PolicyError({
        knob: "backoff.initial",
        detail: `(${formatDuration(b.initial)}) must not exceed backoff.max (${formatDuration(b.max)})`
      })
      : undefined)

/** The first rule the policy breaks, or `undefined`. Shared by `make` and `config`. */
const check = (p: LifetimePolicy): PolicyError | undefined =>
  (p.start === "lazy" || p.start === "eager"
    ? undefined
    : new PolicyError({ knob: "start", detail: `must be "lazy" or "eager" (got ${JSON.stringify(p.start)})` })) ??
    (p.idleTimeout === undefined ? undefined : checkDuration("idleTimeout", p.idleTimeout)) ??
    checkDuration("shutdownGrace", p.shutdownGrace) ??
    checkDuration("drainTimeout", p.drainTimeout) ??
    checkDuration("restartWindow", p.restartWindow) ??
    checkInt("restartCap", p.restartCap, 1) ??
    checkDuration("requestTimeout", p.requestTimeout) ??
    checkDuration("maxRequestTimeout", p.maxRequestTimeout) ??
    checkDuration("initTimeout", p.initTimeout) ??
    checkInt("maxConcurrentRequests", p.maxConcurrentRequests, 1) ??
    checkInt("maxLineBytes", p.maxLineBytes, 1024) ??
    checkInt("maxQueuedBytes", p.maxQueuedBytes, 64 * 1024) ??
    checkInt("consecutiveTimeoutsBeforeRecycle", p.consecutiveTimeoutsBeforeRecycle, 1) ??
    (Duration.isGreaterThan(p.requestTimeout, p.maxRequestTimeout)
      ? new PolicyError({
        knob: "requestTimeout",
        detail: `(${formatDuration(p.requestTimeout)}) must not exceed maxRequestTimeout (${
          formatDuration(p.maxRequestTimeout)
        })`
      })
      : undefined) ??
    (p.backoff === undefined ? undefined : checkBackoff(p.backoff)) ??
    checkOneOf("cancellation", p.cancellation, cancellations) ??
    checkOneOf("framing", p.framing, framings) ??
    checkOneOf("containment", p.containment, containments)

// ---------------------------------------------------------------------------------------------
// duration text
// ---------------------------------------------------------------------------------------------

const MILLIS_PER_UNIT: Readonly<Record<string, number>> = {
  ns: 1e-6,
  nano: 1e-6,
  nanos: 1e-6,
  nanosecond: 1e-6,
  nanoseconds: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  micro: 1e-3,
  micros: 1e-3,
  microsecond: 1e-3,
  microseconds: 1e-3,
  ms: 1,
  milli: 1,
  millis: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
  w: 604_800_000,
  week: 604_800_000,
  weeks: 604_800_000
}

/**
 * Parses `"30s"`, `"1m 30s"`, `"500ms"`, `"5 minutes"`: one or more `<number><unit>` parts, the
 * space between number and unit optional (so both what `Duration.format` prints and what
 * `Duration.fromInput` accepts). A bare number has no unit and is rejected.
 *
 * @category config
 */
export const parseDuration = (text: string): Duration.Duration | undefined => {
  const input = text.trim().toLowerCase()
  if (input.length === 0) return undefined
  const part = /\s*(\d+(?:\.\d+)?)\s*([a-zµ]+)\s*/y
  let millis = 0
  while (part.lastIndex < input.length) {
    const m = part.exec(input)
    if (m === null) return undefined
    const perUnit = m[2] === undefined ? undefined : MILLIS_PER_UNIT[m[2]]
    if (perUnit === undefined) return undefined
    millis += Number(m[1]) * perUnit
  }
  return Duration.millis(millis)
}

const toDuration = (knob: string, input: Duration.Input): Duration.Duration | PolicyError => {
  const parsed = (typeof input === "string" ? parseDuration(input) : undefined) ??
    Option.getOrUndefined(Duration.fromInput(input))
  return parsed ?? new PolicyError({
    knob,
    detail: `is not a valid duration (got ${JSON.stringify(String(input))}; try "30 seconds" or "30s")`
  })
}

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

const build = (input: Input): LifetimePolicy | PolicyError => {
  const base = defaultPolicy
  let error: PolicyError | undefined
  const duration = (knob: string, value: Duration.Input | undefined, fallback: Duration.Duration) => {
    if (value === undefined) return fallback
    const d = toDuration(knob, value)
    if (d instanceof PolicyError) {
      error ??= d
      return fallback
    }
    return d
  }
  const backoffOf = (b: BackoffInput): Backoff => ({
    initial: duration("backoff.initial", b.initial, defaultBackoff.initial),
    factor: b.factor ?? defaultBackoff.factor,
    jitter: b.jitter ?? defaultBackoff.jitter,
    max: duration("backoff.max", b.max, defaultBackoff.max),
    giveUpAfter: b.giveUpAfter ?? defaultBackoff.giveUpAfter,
    resetAfter: duration("backoff.resetAfter", b.resetAfter, defaultBackoff.resetAfter)
  })
  const policy: LifetimePolicy = {
    start: input.start ?? base.start,
    idleTimeout: Object.hasOwn(input, "idleTimeout")
      ? input.idleTimeout === undefined
        ? undefined
        : duration("idleTimeout", input.idleTimeout, Duration.zero)
      : base.idleTimeout,
    shutdownGrace: duration("shutdownGrace", input.shutdownGrace, base.shutdownGrace),
    drainTimeout: duration("drainTimeout", input.drainTimeout, base.drainTimeout),
    restartWindow: duration("restartWindow", input.restartWindow, base.restartWindow),
    restartCap: input.restartCap ?? base.restartCap,
    requestTimeout: duration("requestTimeout", input.requestTimeout, base.requestTimeout),
    maxRequestTimeout: duration("maxRequestTimeout", input.maxRequestTimeout, base.maxRequestTimeout),
    initTimeout: duration("initTimeout", input.initTimeout, base.initTimeout),
    maxConcurrentRequests: input.maxConcurrentRequests ?? base.maxConcurrentRequests,
    maxLineBytes: input.maxLineBytes ?? base.maxLineBytes,
    maxQueuedBytes: input.maxQueuedBytes ?? base.maxQueuedBytes,
    consecutiveTimeoutsBeforeRecycle: input.consecutiveTimeoutsBeforeRecycle ??
      base.consecutiveTimeoutsBeforeRecycle,
    backoff: Object.hasOwn(input, "backoff")
      ? input.backoff === undefined ? undefined : backoffOf(input.backoff)
      : base.backoff,
    cancellation: input.cancellation ?? base.cancellation,
    framing: input.framing ?? base.framing,
    containment: input.containment ?? base.containment
  }
  return error ?? check(policy) ?? policy
}

/**
 * Merges `input` over {@link defaultPolicy} and validates the result: durations positive and
 * finite, `restartCap`, `maxConcurrentRequests`, `consecutiveTimeoutsBeforeRecycle` and
 * `backoff.giveUpAfter` integers `>= 1`, `maxLineBytes >= 1024`, `maxQueuedBytes >= 65536`,
 * `requestTimeout <= maxRequestTimeout`, `backoff.factor >= 1`, `backoff.jitter` in `[0, 1)`,
 * `backoff.initial <= backoff.max`, `cancellation` one of `"lsp"`, `"mcp"`, `"none"`, `framing` one of `"ndjson"`, `"content-length"`. Fails with the
 * first broken rule.
 *
 * @category constructors
 */
export const make = (input: Input): Effect.Effect<LifetimePolicy, PolicyError> =>
  Effect.suspend(() => {
    const result = build(input)
    return result instanceof PolicyError ? Effect.fail(result) : Effect.succeed(result)
  })

/**
 * {@link make} for constants: throws the {@link PolicyError} instead of failing.
 *
 * @category constructors
 */
export const makeUnsafe = (input: Input): LifetimePolicy => {
  const result = build(input)
  if (result instanceof PolicyError) throw result
  return result
}

// ---------------------------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------------------------

const PREFIX = "PLUGIN_HOST"

/** `"backoff.giveUpAfter"` → `"BACKOFF_GIVE_UP_AFTER"`. */
const envName = (knob: string): string => knob.replace(/\./g, "_").replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()

const invalidText = (message: string, input: string) => new SchemaIssue.InvalidValue({ message }, input)

const DurationText = Schema.String.pipe(Schema.decodeTo(Schema.Duration, {
  decode: SchemaGetter.transformEffect((text: string) => {
    const d = parseDuration(text)
    return d === undefined
      ? Effect.fail(invalidText(`expected a duration such as "30s", "1m 30s" or "5 minutes" (got ${JSON.stringify(text)})`, text))
      : Effect.succeed(d)
  }),
  encode: SchemaGetter.transform(encodeDuration)
}))

const NEVER = new Set(["never", "off", "none"])

const IdleTimeoutText = Schema.String.pipe(Schema.decodeTo(Schema.UndefinedOr(Schema.Duration), {
  decode: SchemaGetter.transformEffect((text: string) => {
    if (NEVER.has(text.trim().toLowerCase())) return Effect.succeed(undefined)
    const d = parseDuration(text)
    return d === undefined
      ? Effect.fail(
        invalidText(`expected a duration such as "30s" or "5 minutes", or "never" (got ${JSON.stringify(text)})`, text)
      )
      : Effect.succeed(d)
  }),
  encode: SchemaGetter.transform((d: Duration.Duration | undefined) => d === undefined ? "never" : encodeDuration(d))
}))

const ByteCountText = Schema.String.pipe(Schema.decodeTo(Schema.Number, {
  decode: SchemaGetter.transformEffect((text: string) => {
    const trimmed = text.trim()
    const n = /^\d+$/.test(trimmed)
      ? Number(trimmed)
      : Option.getOrUndefined(Option.flatMap(ByteSize.fromString(trimmed), ByteSize.toNumber))
    return n === undefined
      ? Effect.fail(invalidText(`expected a byte count such as 16777216 or "16 MiB" (got ${JSON.stringify(text)})`, text))
      : Effect.succeed(n)
  }),
  encode: SchemaGetter.transform((n: number) => String(n))
}))

const duration = (name: string) => Config.schema(DurationText, name)

const presetConfig = Config.Literals(["default", "alwaysOn", "always-on"], "PRESET").pipe(Config.option)

const knobsConfig = (base: LifetimePolicy) =>
  Config.all({
    start: Config.Literals(["lazy", "eager"], "START").pipe(Config.withDefault(base.start)),
    idleTimeout: Config.schema(IdleTimeoutText, "IDLE_TIMEOUT").pipe(Config.withDefault(base.idleTimeout)),
    shutdownGrace: duration("SHUTDOWN_GRACE").pipe(Config.withDefault(base.shutdownGrace)),
    drainTimeout: duration("DRAIN_TIMEOUT").pipe(Config.withDefault(base.drainTimeout)),
    restartWindow: duration("RESTART_WINDOW").pipe(Config.withDefault(base.restartWindow)),
    restartCap: Config.Int("RESTART_CAP").pipe(Config.withDefault(base.restartCap)),
    requestTimeout: duration("REQUEST_TIMEOUT").pipe(Config.withDefault(base.requestTimeout)),
    maxRequestTimeout: duration("MAX_REQUEST_TIMEOUT").pipe(Config.withDefault(base.maxRequestTimeout)),
    initTimeout: duration("INIT_TIMEOUT").pipe(Config.withDefault(base.initTimeout)),
    maxConcurrentRequests: Config.Int("MAX_CONCURRENT_REQUESTS").pipe(Config.withDefault(base.maxConcurrentRequests)),
    maxLineBytes: Config.schema(ByteCountText, "MAX_LINE_BYTES").pipe(Config.withDefault(base.maxLineBytes)),
    maxQueuedBytes: Config.schema(ByteCountText, "MAX_QUEUED_BYTES").pipe(Config.withDefault(base.maxQueuedBytes)),
    consecutiveTimeoutsBeforeRecycle: Config.Int("CONSECUTIVE_TIMEOUTS_BEFORE_RECYCLE").pipe(
      Config.withDefault(base.consecutiveTimeoutsBeforeRecycle)
    ),
    cancellation: Config.Literals(cancellations, "CANCELLATION").pipe(Config.withDefault(base.cancellation)),
    framing: Config.Literals(framings, "FRAMING").pipe(Config.withDefault(base.framing)),
    containment: Config.Literals(containments, "CONTAINMENT").pipe(Config.withDefault(base.containment)),
    backoff: Config.Literals(["on", "off"], "BACKOFF").pipe(Config.option),
    backoffInitial: duration("BACKOFF_INITIAL").pipe(Config.option),
    backoffFactor: Config.Finite("BACKOFF_FACTOR").pipe(Config.option),
    backoffJitter: Config.Finite("BACKOFF_JITTER").pipe(Config.option),
    backoffMax: duration("BACKOFF_MAX").pipe(Config.option),
    backoffGiveUpAfter: Config.Int("BACKOFF_GIVE_UP_AFTER").pipe(Config.option),
    backoffResetAfter: duration("BACKOFF_RESET_AFTER").pipe(Config.option)
  }).pipe(Config.map(({
    backoff: backoffSwitch,
    backoffFactor,
    backoffGiveUpAfter,
    backoffInitial,
    backoffJitter,
    backoffMax,
    backoffResetAfter,
    ...rest
  }): LifetimePolicy | PolicyError => {
    const given: ReadonlyArray<readonly [string, boolean]> = [
      ["backoff.initial", Option.isSome(backoffInitial)],
      ["backoff.factor", Option.isSome(backoffFactor)],
      ["backoff.jitter", Option.isSome(backoffJitter)],
      ["backoff.max", Option.isSome(backoffMax)],
      ["backoff.giveUpAfter", Option.isSome(backoffGiveUpAfter)],
      ["backoff.resetAfter", Option.isSome(backoffResetAfter)]
    ]
    const firstGiven = given.find(([, isGiven]) => isGiven)?.[0]
    const switched = Option.getOrUndefined(backoffSwitch)
    if (switched === "off" && firstGiven !== undefined) {
      return new PolicyError({ knob: firstGiven, detail: `is set but ${PREFIX}_BACKOFF is "off"` })
    }
    const enabled = switched === "on" || (switched === undefined && (firstGiven !== undefined || base.backoff !== undefined))
    const from = base.backoff ?? defaultBackoff
    const backoff: Backoff | undefined = enabled
      ? {
        initial: Option.getOrElse(backoffInitial, () => from.initial),
        factor: Option.getOrElse(backoffFactor, () => from.factor),
        jitter: Option.getOrElse(backoffJitter, () => from.jitter),
        max: Option.getOrElse(backoffMax, () => from.max),
        giveUpAfter: Option.getOrElse(backoffGiveUpAfter, () => from.giveUpAfter),
        resetAfter: Option.getOrElse(backoffResetAfter, () => from.resetAfter)
      }
      : undefined
    const policy: LifetimePolicy = { ...rest, backoff }
    return check(policy) ?? policy
  }))

/**
 * The policy read from the environment (any `ConfigProvider`), every key prefixed with
 * `PLUGIN_HOST_` and optional:
 *
 * | key | value |
 * |---|---|
 * | `PRESET` | `default` \| `alwaysOn` (or `always-on`): the policy the other keys start from |
 * | `START` | `lazy` \| `eager` |
 * | `IDLE_TIMEOUT` | a duration, or `never` (also `off`, `none`) for no reaping |
 * | `SHUTDOWN_GRACE`, `DRAIN_TIMEOUT`, `RESTART_WINDOW`, `REQUEST_TIMEOUT`, `MAX_REQUEST_TIMEOUT`, `INIT_TIMEOUT` | durations |
 * | `RESTART_CAP`, `MAX_CONCURRENT_REQUESTS`, `CONSECUTIVE_TIMEOUTS_BEFORE_RECYCLE` | integers |
 * | `MAX_LINE_BYTES`, `MAX_QUEUED_BYTES` | an integer, or a byte size such as `16 MiB` |
 * | `CANCELLATION` | `lsp` \| `mcp` \| `none` |
 * | `FRAMING` | `ndjson` \| `content-length` |
 * | `CONTAINMENT` | `cgroup` \| `process-tree` |
 * | `BACKOFF` | `on` \| `off` |
 * | `BACKOFF_INITIAL`, `BACKOFF_MAX`, `BACKOFF_RESET_AFTER` | durations |
 * | `BACKOFF_FACTOR`, `BACKOFF_JITTER` | numbers |
 * | `BACKOFF_GIVE_UP_AFTER` | an integer |
 *
 * Durations are written `30s`, `1m 30s`, `500ms` or `30 seconds`; a bare number is rejected
 * (the unit would be a guess). Backoff is enabled by `BACKOFF=on`, by any `BACKOFF_*` key or by
 * the `alwaysOn` preset; missing backoff keys come from the preset's backoff or
 * {@link defaultBackoff}. `BACKOFF=off` together with a `BACKOFF_*` key is an error. The rules
 * of {@link make} apply; a broken one is a `ConfigError` naming the knob and the variable.
 *
 * @category config
 */
export const config: Config.Config<LifetimePolicy> = configWithDefaults(defaultPolicy)

/**
 * {@link config} for an application with its own defaults: when `PLUGIN_HOST_PRESET` is unset
 * the keys start from `defaults` instead of {@link defaultPolicy} (a set `PRESET` still picks
 * `default` or `alwaysOn`). The `plugin-host` command reads its policies this way, so it honours
 * the same variables as an embedding host while keeping its shorter shutdown deadlines.
 *
 * @category config
 */
export function configWithDefaults(defaults: LifetimePolicy): Config.Config<LifetimePolicy> {
  return presetConfig.pipe(
    Config.flatMap((preset) =>
      knobsConfig(Option.match(preset, { onNone: () => defaults, onSome: (p) => p === "default" ? defaultPolicy : alwaysOn }))
    ),
    Config.nested(PREFIX),
    Config.mapEffect((result) =>
      result instanceof PolicyError
        ? Effect.fail(
          new Config.ConfigError(
            new Schema.SchemaError(
              new SchemaIssue.Pointer(
                [PREFIX, envName(result.knob)],
                new SchemaIssue.InvalidValue({ message: `${result.knob} ${result.detail}` })
              )
            )
          )
        )
        : Effect.succeed(result)
    )
  )
}

// ---------------------------------------------------------------------------------------------
// backoff
// ---------------------------------------------------------------------------------------------

/**
 * The delay before restart number `consecutiveCrashes` (1-based; below 1 counts as 1):
 * `initial * factor^(n-1)`, times `1 - jitter + 2 * jitter * random` (so `random` in `[0, 1)`
 * maps onto `[1 - jitter, 1 + jitter)`), then capped at `max`. The cap comes after the jitter,
 * so no delay ever exceeds `max`.
 *
 * @category backoff
 */
export const backoffDelay = (backoff: Backoff, consecutiveCrashes: number, random: number): Duration.Duration => {
  const n = Number.isFinite(consecutiveCrashes) ? Math.max(1, Math.floor(consecutiveCrashes)) : 1
  const r = Number.isFinite(random) ? Math.min(1, Math.max(0, random)) : 0.5
  const exponential = Duration.toMillis(backoff.initial) * Math.pow(backoff.factor, n - 1)
  const jittered = exponential * (1 - backoff.jitter + 2 * backoff.jitter * r)
  return Duration.millis(Math.min(Duration.toMillis(backoff.max), jittered))
}

/**
 * The consecutive-crash count after a crash at `now` (epoch millis), given the count and the
 * instant of the previous crash: `1` when there was none or it is `resetAfter` old or older,
 * else `previous + 1`.
 *
 * @category backoff
 */
export const nextConsecutiveCrashes = (
  backoff: Backoff,
  previous: number,
  previousCrashAt: number | undefined,
  now: number
): number =>
  previousCrashAt === undefined || now - previousCrashAt >= Duration.toMillis(backoff.resetAfter)
    ? 1
    : previous + 1

/**
 * Whether to stop restarting after `consecutiveCrashes` consecutive crashes, that is once
 * `giveUpAfter` restarts have been made (`consecutiveCrashes > giveUpAfter`): with
 * `giveUpAfter: 10`, crashes 1–10 are each followed by a restart and the 11th is not.
 *
 * @category backoff
 */
export const givesUp = (backoff: Backoff, consecutiveCrashes: number): boolean =>
  consecutiveCrashes > backoff.giveUpAfter

/**
 * The backoff as a `Schedule` for `Effect.retry` (each failure is a crash) or `Effect.repeat`
 * (each repetition follows a crash). Each step counts a crash with
 * {@link nextConsecutiveCrashes} (the schedule's `now` is the crash instant, so a long healthy run
 * resets the count), stops once {@link givesUp} says so (after `giveUpAfter` retries), and otherwise waits
 * {@link backoffDelay} with a jitter drawn from Effect's `Random`. Outputs the consecutive-crash
 * count. Driven by `Clock`, so `TestClock` controls it.
 *
 * @category backoff
 */
export const backoffSchedule = (backoff: Backoff): Schedule.Schedule<number> =>
  Schedule.fromStep(Effect.sync(() => {
    let consecutive = 0
    let previousAt: number | undefined
    return (now: number, _input: unknown) => {
      consecutive = nextConsecutiveCrashes(backoff, consecutive, previousAt, now)
      previousAt = now
      if (givesUp(backoff, consecutive)) return Cause.done(consecutive)
      const n = consecutive
      return Effect.map(Random.next, (random): [number, Duration.Duration] => [n, backoffDelay(backoff, n, random)])
    }
  }))
