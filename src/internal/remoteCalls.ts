/**
 * The calls of a remote plugin client: each sent to `<prefix>.call`, where the queue group
 * hands it to one instance, and ended exactly once, by the first of
 *
 * - the reply (a result or the plugin's error object);
 * - the deadline: the call's timeout, moved to a full timeout from each progress report but
 *   never past `maxRequestTimeout` after the call began (then the holder is told to cancel);
 * - the loss of the instance serving it: a call unanswered for `livenessInterval` asks
 *   `<prefix>.held` whether an instance still runs it (or has just answered it), and again
 *   each interval; silence (or nobody subscribed) means the instance is gone (`InstanceLost`);
 * - no instance at all (`NoResponders`, naming the service).
 *
 * Only a method declared idempotent is sent again after `NoResponders` or `InstanceLost` (after
 * a short growing pause, within its deadline), under a new call key: a late reply to the first
 * attempt has nobody waiting for it, so it can never end the call twice. Every wait runs on the
 * Effect `Clock`, so `TestClock` drives them all.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Broker from "../Broker.ts"
import * as JsonRpc from "../JsonRpc.ts"
import * as PluginClientError from "../PluginClientError.ts"
import * as RemoteWire from "./remoteWire.ts"
import * as RequestSignals from "./requestSignals.ts"
import { TimeoutSweeper } from "./timeoutSweeper.ts"

/** What the calls of one client share. */
export interface Options {
  /** The plugin's name (errors carry it). */
  readonly name: string
  /** The NATS service name (`NoResponders` and `InstanceLost` carry it). */
  readonly service: string
  readonly subjects: RemoteWire.Subjects
  /** The client's inbox subject, and the prefix of its call keys. */
  readonly inbox: string
  readonly broker: Broker.Broker["Service"]
  readonly clock: Clock.Clock
  readonly requestTimeout: Duration.Duration
  readonly maxRequestTimeout: Duration.Duration
  readonly livenessInterval: Duration.Duration
  readonly livenessTimeout: Duration.Duration
  readonly isIdempotent: (method: string) => boolean
}

/** A call in flight, as progress reports and the sweeper find it. */
interface Pending {
  readonly method: string
  readonly timeoutMillis: number
  /** The latest the deadline may move to. */
  readonly capAt: number
  deadlineAt: number
  readonly onProgress: ((value: unknown) => Effect.Effect<void>) | undefined
  /** The attempt in flight. */
  attempt: Attempt | undefined
}

/** One attempt of a call: its key, when to ask after it next, and how the sweeper ends it. */
interface Attempt {
  readonly key: string
  checkAt: number
  /** Ends the attempt with `error` (its request is given up: the holder is told to cancel). */
  readonly end: (error: PluginClientError.PluginClientError) => void
}

/** Options of one call. */
export interface CallOptions {
  readonly timeout?: Duration.Input | undefined
  readonly onProgress?: ((value: unknown) => Effect.Effect<void>) | undefined
}

/** The calls of one client. */
export interface RemoteCalls {
  readonly request: (method: string, params: unknown, options: CallOptions | undefined) => Effect.Effect<unknown, PluginClientError.PluginClientError>
  readonly notify: (method: string, params: unknown) => Effect.Effect<void, PluginClientError.PluginClientError>
  /** A progress report from an instance: handed to its call, whose deadline moves. */
  readonly progress: (token: JsonRpc.Id, value: unknown) => Effect.Effect<void>
  /** Calls in flight. */
  readonly pending: () => number
  /** Ends every call in flight with `Closed` (the client is going away): nobody is left to end them. */
  readonly close: (detail: string) => void
}

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/** The reason a call's broker request failed with. */
const brokerReason = (options: Options, method: string, timeoutMillis: number, error: Broker.BrokerError): PluginClientError.Reason => {
  const reason = error.reason
  switch (reason._tag) {
    case "NoResponders":
      return new PluginClientError.NoResponders({ service: options.service, subject: reason.subject })
    case "Timeout":
      return new PluginClientError.Timeout({ method, timeout: Duration.millis(timeoutMillis) })
    case "Closed":
      return new PluginClientError.Closed({ detail: reason.message })
    default:
      return new PluginClientError.Io({ detail: reason.message })
  }
}

/** The outcome a reply says: the result, or the reason the call failed. */
const replyOutcome = (data: Uint8Array): Result.Result<unknown, PluginClientError.Reason> => {
  let text = ""
  let message: JsonRpc.Message | undefined
  try {
    text = decoder.decode(data)
    const decoded = JsonRpc.decodeLine(text)
    if (Result.isSuccess(decoded)) message = decoded.success
  } catch {
    // Not UTF-8: malformed, below.
  }
  if (message?._tag === "Success") return Result.succeed(message.result)
  if (message?._tag === "Failure") {
    return Result.fail(PluginClientError.pluginErrorOf(message.error))
  }
  return Result.fail(new PluginClientError.MalformedResponse({ detail: "the reply is not a JSON-RPC response", line: JsonRpc.excerpt(text) }))
}

/** Whether another attempt may help an idempotent call: nothing answered, or its instance is gone. */
const retryable = (reason: PluginClientError.Reason): boolean => reason._tag === "NoResponders" || reason._tag === "InstanceLost"

/** The pause before attempt `attempt` (2, 3…): 50 ms doubling, at most 1 s. */
const pauseBefore = (attempt: number): number => Math.min(1_000, 50 * 2 ** (attempt - 2))

/**
 * Ends attempts early: one sweeper per client (`TimeoutSweeper`) wakes at the earliest deadline
 * or liveness check among the calls in flight, fails the attempts whose deadline passed with
 * `Timeout`, and asks `<prefix>.held` after those due a check, failing them with `InstanceLost`
 * when no instance says it holds them. No timer per call: a call with the usual timeout never
 * wakes the sweeper earlier than the one it sleeps towards.
 */
const watcher = (
  options: Options,
  table: ReadonlyMap<number, Pending>,
  fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>,
  fail: (reason: PluginClientError.Reason) => PluginClientError.PluginClientError
) => {
  const { broker, clock, subjects } = options
  const livenessMillis = Duration.toMillis(options.livenessInterval)
  /** Whether an instance says it runs (or has just answered) call `key`. */
  const held = (key: string): Effect.Effect<boolean> =>
    broker.request(subjects.held, encoder.encode(RemoteWire.encodeCallKey(key)), options.livenessTimeout).pipe(
      Effect.map((data) => {
        try {
          return RemoteWire.heldOf(JSON.parse(decoder.decode(data))) !== undefined
        } catch {
          return false
        }
      }),
      // Only silence says the holder is gone; the host's own connection trouble says nothing.
      Effect.catch((error) => Effect.succeed(error.reason._tag !== "Timeout" && error.reason._tag !== "NoResponders"))
    )

  /** Asks after the attempt `key` of `pending`; ends it if nobody holds it, else checks again later. */
  const check = (pending: Pending, attempt: Attempt) =>
    Effect.flatMap(held(attempt.key), (alive) =>
      Effect.sync(() => {
        if (pending.attempt !== attempt) return
        if (!alive) {
          const detail = `no instance says it holds call ${attempt.key} (asked on \`${subjects.held}\`)`
          attempt.end(fail(new PluginClientError.InstanceLost({ service: options.service, method: pending.method, detail })))
          return
        }
        attempt.checkAt = clock.currentTimeMillisUnsafe() + livenessMillis
        sweeper.watch(attempt.checkAt, livenessMillis)
      }))

  const expireDue = (now: number): number => {
    let earliest = Number.POSITIVE_INFINITY
    for (const pending of table.values()) {
      const attempt = pending.attempt
      if (attempt === undefined) continue
      if (now >= pending.deadlineAt) {
        const timeout = Duration.millis(pending.timeoutMillis)
        attempt.end(fail(new PluginClientError.Timeout({ method: pending.method, timeout })))
        continue
      }
      if (now >= attempt.checkAt) {
        // Until the answer comes, only the deadline counts.
        attempt.checkAt = Number.POSITIVE_INFINITY
        fork(check(pending, attempt))
      }
      earliest = Math.min(earliest, pending.deadlineAt, attempt.checkAt)
    }
    return earliest
  }

  const sweeper = new TimeoutSweeper({ clock, fork, isOver: () => false, expireDue })

  /** Watches a new attempt of `pending`, which `end` ends if the sweeper (or a close) must. */
  return (pending: Pending, key: string, end: Attempt["end"]): Attempt => {
    const now = clock.currentTimeMillisUnsafe()
    const attempt: Attempt = { key, checkAt: now + livenessMillis, end }
    pending.attempt = attempt
    const wake = Math.min(pending.deadlineAt, attempt.checkAt)
    sweeper.watch(wake, wake - now)
    return attempt
  }
}

/**
 * Makes the calls of one client; `fork` runs the sweeper and the liveness checks (on fibers the
 * client's Scope owns).
 */
export const make = (options: Options, fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>): RemoteCalls => {
  const { broker, clock, subjects } = options
  const table = new Map<number, Pending>()
  let nextSeq = 0
  /** Why the client is closed, once it is: no call starts or is sent again after that. */
  let closed: string | undefined = undefined
  const error = (reason: PluginClientError.Reason) => PluginClientError.make(options.name, reason)
  const fail = (reason: PluginClientError.Reason) => Effect.fail(error(reason))
  const maxMillis = Duration.toMillis(options.maxRequestTimeout)
  const watch = watcher(options, table, fork, error)

  /**
   * One attempt: the request under `key` on a fiber of its own, the call resumed by the first of
   * its end and the watch's (no race: one fiber, no loser to interrupt and await on every call);
   * a request given up (by the watch, or an interrupted caller) publishes a cancel. The request's
   * fiber lives no longer than the call, as a race's would: it ends the call, or the watch
   * interrupts it, or the interrupted caller interrupts and awaits it.
   */
  const attempt = (pending: Pending, seq: number, key: string, params: unknown): Effect.Effect<unknown, PluginClientError.PluginClientError> =>
    Effect.suspend(() => {
      if (closed !== undefined) return fail(new PluginClientError.Closed({ detail: closed }))
      const line = RemoteWire.encodeCall({ inbox: options.inbox, call: key }, seq, pending.method, params)
      if (Result.isFailure(line)) return fail(new PluginClientError.InvalidParams({ method: pending.method, detail: line.failure }))
      const remaining = Math.max(1, pending.capAt - clock.currentTimeMillisUnsafe())
      const send = broker.request(subjects.call, encoder.encode(line.success), Duration.millis(remaining)).pipe(
        Effect.catch((error) => fail(brokerReason(options, pending.method, pending.timeoutMillis, error))),
        Effect.flatMap((data) => {
          const outcome = replyOutcome(data)
          return Result.isSuccess(outcome) ? Effect.succeed(outcome.success) : fail(outcome.failure)
        }),
        Effect.onInterrupt(() => broker.publish(subjects.cancel, encoder.encode(RemoteWire.encodeCallKey(key))).pipe(Effect.ignore))
      )
      return Effect.withFiber((caller) =>
        Effect.callback<unknown, PluginClientError.PluginClientError>((resume) => {
          const sending = Effect.runForkWith(caller.context)(send)
          const done = sending.pollUnsafe()
          if (done !== undefined) return resume(done)
          let givenUp = false
          watch(pending, key, (error) => {
            // The cancel is published as the request is interrupted, before the call ends.
            givenUp = true
            sending.interruptUnsafe()
            resume(Effect.fail(error))
          })
          sending.addObserver((ended) => {
            if (!givenUp) resume(ended)
          })
          return Fiber.interrupt(sending)
        })
      )
    })

  /** Attempts until one ends the call: again only for an idempotent method, and within the deadline. */
  const attempts = (pending: Pending, seq: number, params: unknown, n: number): Effect.Effect<unknown, PluginClientError.PluginClientError> =>
    Effect.catch(attempt(pending, seq, `${options.inbox}.${seq}.${n}`, params), (error) => {
      if (!retryable(error.reason) || !options.isIdempotent(pending.method)) return Effect.fail(error)
      const pause = pauseBefore(n + 1)
      if (clock.currentTimeMillisUnsafe() + pause >= pending.deadlineAt) return Effect.fail(error)
      return Effect.andThen(Effect.sleep(Duration.millis(pause)), attempts(pending, seq, params, n + 1))
    })

  const request: RemoteCalls["request"] = (method, params, callOptions) =>
    Effect.suspend(() => {
      const seq = ++nextSeq
      const now = clock.currentTimeMillisUnsafe()
      const timeout = callOptions?.timeout === undefined
        ? options.requestTimeout
        : Duration.min(Duration.fromInputUnsafe(callOptions.timeout), options.maxRequestTimeout)
      const timeoutMillis = Duration.toMillis(timeout)
      const pending: Pending = {
        method,
        timeoutMillis,
        capAt: now + maxMillis,
        deadlineAt: now + timeoutMillis,
        onProgress: callOptions?.onProgress,
        attempt: undefined
      }
      let wire = params
      if (pending.onProgress !== undefined) {
        const withToken = RequestSignals.withProgressToken(params, seq, "mcp")
        if (Result.isFailure(withToken)) return fail(new PluginClientError.InvalidParams({ method, detail: withToken.failure }))
        wire = withToken.success
      }
      table.set(seq, pending)
      return Effect.ensuring(attempts(pending, seq, wire, 1), Effect.sync(() => table.delete(seq)))
    })

  const notify: RemoteCalls["notify"] = (method, params) =>
    Effect.suspend(() => {
      const line = RemoteWire.encodeCall({ inbox: options.inbox, call: `${options.inbox}.n${++nextSeq}` }, undefined, method, params)
      if (Result.isFailure(line)) return fail(new PluginClientError.InvalidParams({ method, detail: line.failure }))
      return broker.publish(subjects.notify, encoder.encode(line.success)).pipe(
        Effect.catch((error) => fail(brokerReason(options, method, 0, error)))
      )
    })

  const progress: RemoteCalls["progress"] = (token, value) =>
    Effect.suspend(() => {
      const pending = typeof token === "number" ? table.get(token) : undefined
      if (pending === undefined) return Effect.void
      pending.deadlineAt = Math.min(pending.capAt, clock.currentTimeMillisUnsafe() + pending.timeoutMillis)
      return pending.onProgress === undefined ? Effect.void : pending.onProgress(value)
    })

  const close: RemoteCalls["close"] = (detail) => {
    closed = detail
    for (const pending of table.values()) {
      pending.attempt?.end(error(new PluginClientError.Closed({ detail })))
    }
  }

  return { request, notify, progress, pending: () => table.size, close }
}
