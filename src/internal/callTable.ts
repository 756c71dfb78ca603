/**
 * The calls a connection (`RpcPeer`) makes to the other side, from the moment they are made
 * until they are answered, time out, are given up or the connection ends: their ids, the slots
 * they hold, the line of those waiting for one, and their timeouts.
 *
 * A call is not a fiber: its caller waits in an `Effect.callback`, and the table resumes it. At
 * most `maxConcurrent` calls are sent at once (with `1` the other side is strictly serial and
 * the table tracks the call in flight); the rest wait in arrival order and are sent as slots
 * free up (a reply, a timeout or an interrupted caller frees one). Ids of calls whose caller gave
 * up are remembered for a while, so their replies count as late rather than unknown.
 *
 * A call's timeout runs from the moment it is sent (a line waiting for room in the outgoing
 * queue included); one `TimeoutSweeper` wakes the table when the earliest deadline is due.
 *
 * A call the other side has seen and this side gives up (a timeout, an interrupted caller) is
 * cancelled there in the connection's dialect (`internal/requestSignals.ts`); a call given up
 * before its line went out is simply never sent. A call that asked for progress carries its id as
 * its progress token; each progress moves its deadline to a full timeout from then, never past
 * `maxTimeoutMillis` after it was sent.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as JsonRpc from "../JsonRpc.ts"
import type * as LifetimePolicy from "../LifetimePolicy.ts"
import * as PluginClientError from "../PluginClientError.ts"
import type { ConnectionEnd } from "./connectionEnd.ts"
import type { OutgoingQueue } from "./outgoingQueue.ts"
import type { ProgressFeed } from "./progressFeed.ts"
import * as RequestSignals from "./requestSignals.ts"
import { millisOf, monotonicMillis, TimeoutSweeper } from "./timeoutSweeper.ts"

/**
 * Hears the calls that carry it as they start and end, synchronously (the connection's owner
 * counts and times its calls with it, without wrapping each in effects of its own): `started` as
 * the call is made (its caller waits), `ended` once it is over, answered or not, or given up by
 * its caller, before the caller resumes. A call never made (its caller interrupted first) is
 * neither.
 */
export interface CallObserver {
  readonly started: () => void
  /** `startedNanos`: the `Clock`'s monotonic time as the call was made. */
  readonly ended: (succeeded: boolean, startedNanos: bigint) => void
}

/**
 * One call, from the moment it is made until it is over. `resume` completes the caller's fiber.
 */
export interface Call {
  readonly method: string
  readonly params: unknown
  readonly timeout: Duration.Duration
  readonly timeoutMillis: number
  readonly resume: (exit: Exit.Exit<unknown, PluginClientError.PluginClientError>) => void
  /** 0 while the call waits for a slot; then its request id. */
  id: number
  /** When the call times out, in the `Clock`'s monotonic milliseconds (see `TimeoutSweeper.now`); set when it is sent. */
  deadline: number
  /** Set once the caller gave up while waiting for a slot. */
  cancelled: boolean
  /** The request line, while it waits for room in the outgoing queue. */
  line: string | undefined
  /** Where its progress goes, if the caller asked for it. */
  readonly progress: ProgressFeed | undefined
  /** With `progress`: the time (as `deadline`) past which progress no longer moves the deadline; set when it is sent. */
  cap: number
  /** Who hears it start and end, if anyone. */
  readonly observer?: CallObserver | undefined
  /** With `observer`: the `Clock`'s monotonic time as the call was made. */
  readonly startedNanos?: bigint | undefined
}

/** A call is over: its observer hears it, then its caller resumes with `exit`. */
export const finish = (call: Call, exit: Exit.Exit<unknown, PluginClientError.PluginClientError>): void => {
  call.observer?.ended(exit._tag === "Success", call.startedNanos ?? BigInt(0))
  call.resume(exit)
}

/**
 * Calls waiting for a slot, in arrival order (a head index into an array: taking one costs no
 * copy). Those whose caller gave up stay until their turn and are skipped then.
 */
class WaitingLine {
  private calls: Array<Call> = []
  private head = 0
  get isEmpty(): boolean {
    return this.head === this.calls.length
  }
  push(call: Call): void {
    this.calls.push(call)
  }
  /** The next call in line (the line must not be empty). */
  take(): Call {
    return this.calls[this.head++]!
  }
  /** Frees the part of the array already taken, once it is all of it or most of a long one. */
  compact(): void {
    if (this.head === this.calls.length) {
      this.calls = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.calls.length) {
      this.calls = this.calls.slice(this.head)
      this.head = 0
    }
  }
  /** Empties the line; the calls it held. */
  takeAll(): Array<Call> {
    const rest = this.calls.slice(this.head)
    this.calls = []
    this.head = 0
    return rest
  }
}

/**
 * The latest calls this side gave up after sending them (timeout, interruption): the other side
 * is told in the connection's dialect if their line went out, and their ids are remembered so
 * their replies are late, not unknown. Bounded: the oldest id is forgotten first.
 */
class GivenUp {
  /** Cancel notifications sent. */
  cancelsSent = 0
  private readonly ids = new Set<number>()
  private readonly memory: number
  private readonly cancellation: LifetimePolicy.Cancellation
  private readonly outgoing: OutgoingQueue
  constructor(memory: number, cancellation: LifetimePolicy.Cancellation, outgoing: OutgoingQueue) {
    this.memory = memory
    this.cancellation = cancellation
    this.outgoing = outgoing
  }
  /** Call `id` is given up; `sent` if the other side has its line. */
  add(id: number, sent: boolean, reason: RequestSignals.CancelReason): void {
    this.ids.add(id)
    if (this.ids.size > this.memory) {
      const oldest = this.ids.values().next()
      if (!oldest.done) this.ids.delete(oldest.value)
    }
    if (!sent) return
    const line = RequestSignals.cancelLine(this.cancellation, id, reason)
    if (line !== undefined && this.outgoing.signal(line)) this.cancelsSent++
  }
  has(id: number): boolean {
    return this.ids.has(id)
  }
}

/** What a call table works with. */
export interface CallTableOptions {
  readonly maxConcurrent: number
  readonly clock: Clock.Clock
  readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  readonly outgoing: OutgoingQueue
  readonly end: ConnectionEnd
  readonly fail: (reason: PluginClientError.Reason) => PluginClientError.PluginClientError
  /** What the other side is told of a call given up after it was sent. */
  readonly cancellation: LifetimePolicy.Cancellation
  /** How long after it was sent progress can keep a call alive. */
  readonly maxTimeoutMillis: number
}

/**
 * A call's request line with id `id`; a call asking for progress carries its id as the token
 * (in `dialect`'s place). Fails with why it cannot be encoded.
 */
const requestLine = (call: Call, id: number, dialect: LifetimePolicy.Cancellation): Result.Result<string, string> => {
  if (call.progress === undefined) return JsonRpc.encodeRequest(id, call.method, call.params)
  const params = RequestSignals.withProgressToken(call.params, id, dialect)
  return Result.isFailure(params) ? Result.fail(params.failure) : JsonRpc.encode(JsonRpc.request(id, call.method, params.success))
}

/** What the sent calls need to send a call and time it. */
interface SendOptions {
  readonly serial: boolean
  readonly cancellation: LifetimePolicy.Cancellation
  readonly maxTimeoutMillis: number
  readonly outgoing: OutgoingQueue
  /** The current instant, as deadlines are counted (the `Clock`'s monotonic milliseconds). */
  readonly now: () => number
  /** Wakes the table when `deadline` is due. */
  readonly watch: (deadline: number, timeoutMillis: number) => void
}

/**
 * The calls sent and not yet over, by id (in serial mode, the one in flight), and their
 * deadlines: a call's timeout runs from the moment it is sent, and progress moves it.
 */
class SentCalls {
  /** In serial mode, the id of the call in flight. */
  inFlight: number | undefined = undefined
  private readonly byId = new Map<number, Call>()
  private nextId = 1
  private readonly options: SendOptions
  constructor(options: SendOptions) {
    this.options = options
  }
  get size(): number {
    return this.byId.size
  }
  get(id: number): Call | undefined {
    return this.byId.get(id)
  }
  /**
   * Sends a call at `now` (its line waits for room if the outgoing queue is full: its timeout runs
   * from now all the same); the reason it could not be sent, if so. It is registered before the
   * write: the reply may be read before `writeLine` returns.
   */
  send(call: Call, now: number = this.options.now()): PluginClientError.Reason | undefined {
    const id = this.nextId++
    const line = requestLine(call, id, this.options.cancellation)
    if (Result.isFailure(line)) return new PluginClientError.InvalidParams({ method: call.method, detail: line.failure })
    call.id = id
    call.deadline = now + call.timeoutMillis
    if (call.progress !== undefined) call.cap = now + Math.max(this.options.maxTimeoutMillis, call.timeoutMillis)
    this.byId.set(id, call)
    if (this.options.serial) this.inFlight = id
    this.options.outgoing.sendCall(call, line.success)
    this.options.watch(call.deadline, call.timeoutMillis)
    return undefined
  }
  /** Progress for `call`: a full timeout again from now, never past its cap. */
  extend(call: Call): void {
    call.deadline = Math.min(this.options.now() + call.timeoutMillis, call.cap)
  }
  /** Hands the calls due at `now` to `expire`; the earliest deadline of those left. */
  due(now: number, expire: (call: Call) => void): number {
    let earliest = Number.POSITIVE_INFINITY
    for (const call of this.byId.values()) {
      if (call.deadline <= now) expire(call)
      else if (call.deadline < earliest) earliest = call.deadline
    }
    return earliest
  }
  /** A sent call leaves; its line, if still parked, is dropped. */
  remove(call: Call): void {
    call.line = undefined
    this.byId.delete(call.id)
    if (this.inFlight === call.id) this.inFlight = undefined
  }
  /** Empties the table; the calls it held. */
  clear(): Array<Call> {
    const calls = [...this.byId.values()]
    this.byId.clear()
    this.inFlight = undefined
    return calls
  }
}

/**
 * The calls of one connection.
 */
export class CallTable {
  /** Calls that timed out. */
  timeouts = 0
  /** Replies that settled a call. */
  responsesReceived = 0
  /** Progress notifications that reached a call. */
  progressReceived = 0
  private readonly options: CallTableOptions
  private readonly sweeper: TimeoutSweeper
  /** Calls sent and not yet over, by id. */
  private readonly pending: SentCalls
  private readonly waiting = new WaitingLine()
  private readonly givenUp: GivenUp

  constructor(options: CallTableOptions) {
    this.options = options
    this.givenUp = new GivenUp(256, options.cancellation, options.outgoing)
    this.sweeper = new TimeoutSweeper({
      clock: options.clock,
      fork: options.fork,
      isOver: () => options.end.isOver,
      expireDue: (now) => this.pending.due(now, (call) => this.expire(call)),
      now: monotonicMillis(options.clock)
    })
    this.pending = new SentCalls({
      serial: options.maxConcurrent === 1,
      cancellation: options.cancellation,
      maxTimeoutMillis: options.maxTimeoutMillis,
      outgoing: options.outgoing,
      now: () => this.sweeper.now(),
      watch: (deadline, timeoutMillis) => this.sweeper.watch(deadline, timeoutMillis)
    })
  }

  /** Cancel notifications sent for calls given up. */
  get cancelsSent(): number {
    return this.givenUp.cancelsSent
  }

  /** Calls sent and not yet over. */
  get size(): number {
    return this.pending.size
  }

  /** In serial mode, the id of the call in flight. */
  get inFlight(): number | undefined {
    return this.pending.inFlight
  }

  /**
   * Sends a new call, or lines it up for a slot; the reason it cannot be sent, if so. Sent at
   * once, an observed call's timeout runs from the moment it was made (it was timed then).
   */
  submit(call: Call): PluginClientError.Reason | undefined {
    if (this.pending.size >= this.options.maxConcurrent || !this.waiting.isEmpty) return void this.waiting.push(call)
    return this.pending.send(call, call.startedNanos === undefined ? undefined : millisOf(call.startedNanos))
  }

  /** The caller gave up (interrupted): its observer hears it, a waiting call leaves the line, a sent one its slot (and the other side is told). */
  cancel(call: Call): void {
    call.observer?.ended(false, call.startedNanos ?? BigInt(0))
    if (call.id === 0) {
      call.cancelled = true
    } else if (this.pending.get(call.id) === call) {
      this.giveUp(call, "interrupted")
      if (!this.waiting.isEmpty) this.admit()
    }
  }

  /**
   * A progress notification for `token`: the call it belongs to has its deadline moved and its
   * callback fed. Whether it was for this table (a call that asked for progress, or one given up
   * lately); any other goes on as an ordinary notification.
   */
  progress(token: JsonRpc.Id, value: unknown): boolean {
    if (typeof token !== "number") return false
    const call = this.pending.get(token)
    if (call === undefined) return this.givenUp.has(token)
    if (call.progress === undefined) return false
    this.progressReceived++
    this.pending.extend(call)
    call.progress.offer(value)
    return true
  }

  /** The call sent with `id`, if it is not over. */
  get(id: number): Call | undefined {
    return this.pending.get(id)
  }

  /** Whether `id` is one of a call given up lately (a reply to it is late). */
  isAbandoned(id: number): boolean {
    return this.givenUp.has(id)
  }

  /** A reply came for a pending call: it is over with the result, or a `PluginError`. */
  settle(call: Call, reply: JsonRpc.Success | JsonRpc.Failure): void {
    this.release(call)
    this.responsesReceived++
    finish(call, reply._tag === "Success" ? Exit.succeed(reply.result) : Exit.fail(this.options.fail(PluginClientError.pluginErrorOf(reply.error))))
  }

  /**
   * The connection ended: every call pending or waiting fails with `error()` (built only if
   * there is one). The table is emptied first: a resumed caller runs at once and may call again.
   */
  failAll(error: () => PluginClientError.PluginClientError): void {
    this.sweeper.stop()
    const calls = [...this.pending.clear(), ...this.waiting.takeAll()]
    if (calls.length === 0) return
    const exit = Exit.fail(error())
    for (const call of calls) if (!call.cancelled) finish(call, exit)
  }

  /** Sends waiting calls while there are free slots. */
  private admit(): void {
    while (!this.waiting.isEmpty && this.pending.size < this.options.maxConcurrent && !this.options.end.isOver) {
      const call = this.waiting.take()
      if (call.cancelled) continue
      const problem = this.pending.send(call)
      if (problem !== undefined) finish(call, Exit.fail(this.options.fail(problem)))
    }
    this.waiting.compact()
  }

  /** A sent call is over: its line, if still parked, is dropped, and its slot goes to the next waiter. */
  private release(call: Call): void {
    this.pending.remove(call)
    if (!this.waiting.isEmpty) this.admit()
  }

  /**
   * This side gives up a sent call: it leaves the table (a late reply is counted, not an
   * error), and the other side, if its line went out, is told before any call takes its slot.
   */
  private giveUp(call: Call, reason: RequestSignals.CancelReason): void {
    const sent = call.line === undefined
    this.pending.remove(call)
    this.givenUp.add(call.id, sent, reason)
  }

  private expire(call: Call): void {
    this.giveUp(call, "timeout")
    if (!this.waiting.isEmpty) this.admit()
    this.timeouts++
    finish(call, Exit.fail(this.options.fail(new PluginClientError.Timeout({ method: call.method, timeout: call.timeout }))))
  }
}
