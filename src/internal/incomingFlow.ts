/**
 * Flow control on the read side of a connection (`RpcPeer`): while the bytes queued for the
 * other side are over the cap, the other side's output is not read.
 *
 * A side that sends requests and never reads the replies would otherwise make this side parse,
 * serve and queue reply after reply. Reading pauses once a reply takes the queue over
 * `pauseAbove` (the connection's `maxQueuedBytes`): the other side then blocks on its own full
 * output pipe, and nothing more of it is parsed, served or queued. Reading resumes once the queue
 * is back to half the cap, so a side that reads slowly still makes progress at the pace it reads.
 * While calls of this side wait for room, reading never pauses: the other side's replies to them
 * come on the same stream, and the queue is full of this side's own calls (bounded by parking
 * them), not of replies. A pause during which nothing the other side was sent went out for
 * `maxPause` (the connection's `requestTimeout`: a call of this side queued behind the replies
 * would have timed out by then) means the other side has stopped reading: the connection ends
 * with `Backpressure`.
 *
 * Pausing is done by the reader: a pushing source (a Node stream's `data` events) is paused
 * through the handle its `listen` returned; a stream consumer waits on a latch before it pulls
 * the next chunk. Either way the rest of the chunk being read when the pause came is still
 * decoded: its requests are held (small: at most one chunk of request lines) and served, in
 * order, when reading resumes, so that one chunk of small requests asking for big replies cannot
 * take the queue far past the cap (a cancel of a held request finds nothing running: the request
 * is still served). The other side's end (its exit) opens the gate again (what a
 * dead side wrote last must still be read), and so does the connection's end (which drops the
 * held requests): a reader must not stay parked forever. While not paused, the cost is one
 * comparison per request, per reply and per "bytes went out".
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Latch from "effect/Latch"
import type * as JsonRpc from "../JsonRpc.ts"
import * as PluginClientError from "../PluginClientError.ts"
import type { ConnectionEnd } from "./connectionEnd.ts"

/** What pauses a pushing source: the handle its `listen` returns. */
export interface ReadSwitch {
  readonly pause: () => void
  readonly resume: () => void
}

/**
 * The read side's flow control of one connection.
 */
export class IncomingFlow {
  /** Times reading was paused. */
  pauses = 0
  private paused = false
  /** The pushing source, once `listen` returned its switch. */
  private source: ReadSwitch | undefined = undefined
  /** Where a stream consumer waits while paused (made on the first pause). */
  private latch: Latch.Latch | undefined = undefined
  /** Ends the connection once nothing went out for `maxPauseMillis` of a pause. */
  private timer: Fiber.Fiber<void> | undefined = undefined
  /** When queued bytes last went out during the pause (or it began). */
  private lastProgress = 0
  /** Requests read while paused, from `heldHead` on, served when reading resumes. */
  private held: Array<JsonRpc.Request> = []
  private heldHead = 0
  private readonly serveNow: (request: JsonRpc.Request) => void
  private readonly queuedBytes: () => number
  private readonly callsWaiting: () => boolean
  private readonly pauseAbove: number
  private readonly resumeAtOrBelow: number
  private readonly maxPauseMillis: number
  private readonly clock: Clock.Clock
  private readonly end: ConnectionEnd
  private readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>

  constructor(options: {
    /** Bytes queued for the other side. */
    readonly queuedBytes: () => number
    /** Whether calls of this side wait for room in the queue. */
    readonly callsWaiting: () => boolean
    /** Reading pauses once the queue is over this. */
    readonly pauseAbove: number
    /** How long a pause may go without bytes going out before the connection ends with `Backpressure`. */
    readonly maxPauseMillis: number
    readonly clock: Clock.Clock
    /** Serves a request from the other side (the connection's `RequestServer`). */
    readonly serve: (request: JsonRpc.Request) => void
    readonly end: ConnectionEnd
    /** Starts the pause's timer (the connection's own fibers, interrupted with its Scope). */
    readonly fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  }) {
    this.queuedBytes = options.queuedBytes
    this.callsWaiting = options.callsWaiting
    this.pauseAbove = options.pauseAbove
    this.resumeAtOrBelow = Math.floor(options.pauseAbove / 2)
    this.maxPauseMillis = options.maxPauseMillis
    this.clock = options.clock
    this.serveNow = options.serve
    this.end = options.end
    this.fork = options.fork
  }

  /** The pushing source's switch: a pause already decided applies to it at once. */
  attach(source: ReadSwitch): void {
    this.source = source
    if (this.paused) source.pause()
  }

  /** A request from the other side: served now, or held while paused. */
  readonly serve = (request: JsonRpc.Request): void => {
    if (this.paused) this.held.push(request)
    else this.serveNow(request)
  }

  /** A reply was queued: pauses reading if the queue is now over the cap. */
  readonly onQueued = (): void => {
    if (!this.paused && this.queuedBytes() > this.pauseAbove && !this.callsWaiting() && !this.end.isOver) this.pause()
  }

  /**
   * Queued bytes went out: resumes reading once the queue is down to half the cap (or calls of
   * this side wait for room, whose replies must be read).
   */
  readonly onWritten = (): void => {
    if (!this.paused) return
    if (this.queuedBytes() <= this.resumeAtOrBelow || this.callsWaiting()) this.resume()
    else this.lastProgress = this.clock.currentTimeMillisUnsafe()
  }

  /**
   * For a stream consumer, after each batch of chunks: nothing to wait for (`undefined`) or the
   * effect that waits until reading resumes.
   */
  gate(): Effect.Effect<void> | undefined {
    return this.paused && this.latch !== undefined ? this.latch.await : undefined
  }

  /**
   * Reads again whatever the queue holds: the other side is gone (its held requests are still
   * served), or the connection ended (they are dropped).
   */
  readonly release = (): void => {
    if (this.end.isOver) {
      this.held = []
      this.heldHead = 0
    }
    if (this.paused) this.resume()
  }

  private pause(): void {
    this.paused = true
    this.pauses++
    this.latch ??= Latch.makeUnsafe(false)
    this.latch.closeUnsafe()
    this.source?.pause()
    this.lastProgress = this.clock.currentTimeMillisUnsafe()
    this.timer = this.fork(this.watch)
  }

  /** Sleeps until `maxPauseMillis` passed with nothing going out, then ends the connection. */
  private readonly watch: Effect.Effect<void> = Effect.suspend(() => {
    const idle = this.clock.currentTimeMillisUnsafe() - this.lastProgress
    if (idle >= this.maxPauseMillis) return Effect.sync(() => this.stall())
    return Effect.andThen(Effect.sleep(this.maxPauseMillis - idle), this.watch)
  })

  private resume(): void {
    this.paused = false
    const timer = this.timer
    this.timer = undefined
    timer?.interruptUnsafe()
    // Serving the held requests may pause reading again: then it stays paused.
    if (!this.serveHeld()) return
    this.source?.resume()
    this.latch?.openUnsafe()
  }

  /** Serves the held requests, in order, until reading pauses again; whether all were served. */
  private serveHeld(): boolean {
    while (this.heldHead < this.held.length) {
      if (this.paused) return false
      this.serveNow(this.held[this.heldHead++]!)
    }
    this.held = []
    this.heldHead = 0
    return !this.paused
  }

  /** Nothing went out for `maxPauseMillis` of a pause: the other side does not read. */
  private stall(): void {
    this.timer = undefined
    this.end.close(new PluginClientError.Backpressure({ queuedBytes: this.queuedBytes(), limit: this.pauseAbove }))
  }
}
