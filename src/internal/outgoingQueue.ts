/**
 * The lines a connection (`RpcPeer`) sends, bounded by the bytes queued for the other side and
 * not yet taken by it (`maxQueuedBytes`, when the transport can tell).
 *
 * Each kind of line has its own policy when the queue is full. A call's line is parked: calls'
 * lines go out in order, as the other side reads, while their timeouts run. A notification
 * cannot wait (its caller expects it sent or refused now): the caller asks for room first and
 * refuses it without one. A reply can neither wait (the other side's call hangs on it) nor be
 * dropped: it may fill the queue to twice the cap, so calls from this side never crowd replies
 * out, and one beyond that ends the connection with `Backpressure` (the other side sends requests
 * and leaves the replies unread). Each reply queued is reported (`onReplyQueued`): the read side
 * stops reading the other side while replies keep the queue over the cap (`incomingFlow.ts`). A signal about a call in flight (a cancel) is small and best
 * effort: it goes out ahead of parked calls while the queue is under the replies' limit, and is
 * skipped beyond it. Alone in the queue, a line of any size goes out.
 *
 * A call's or a notification's line the transport refuses means the other side is gone or its
 * input broke, and the connection's end is on its way (the transport's contract): later lines
 * are not even tried. Replies of handlers still running go to the transport after any end but
 * `Backpressure` (a worker drains them after the host closed its stdin).
 *
 * @internal
 */
import * as JsonRpc from "../JsonRpc.ts"
import * as PluginClientError from "../PluginClientError.ts"
import type { ConnectionEnd } from "./connectionEnd.ts"

/**
 * A call whose line may have to wait for room. Its owner clears `line` when the call is over
 * before the line went out (timed out, given up, answered): the queue then skips it.
 */
export interface Parked {
  line: string | undefined
}

/** Where lines go: the transport's `writeLine` and, if it can tell, the bytes it has queued. */
export interface Output {
  readonly writeLine: (line: string) => boolean
  readonly queuedBytes?: (() => number) | undefined
}

/**
 * The outgoing side of one connection.
 */
export class OutgoingQueue {
  /** Call lines handed to the transport. */
  requestsSent = 0
  /** Notifications refused for want of room. */
  notificationsRefused = 0
  /** The cap on queued bytes for calls and notifications. */
  readonly maxQueuedBytes: number
  /** The cap on queued bytes a reply may take the queue to. */
  readonly replyLimit: number
  /** Bytes queued for the other side (0 for a transport that cannot tell: never capped). */
  readonly queuedBytes: () => number
  private readonly output: Output
  private readonly end: ConnectionEnd
  private readonly onReplyQueued: () => void
  /** Parked entries beyond which those given up are swept out. */
  private readonly compactAt: number
  /** Set once the transport refused a line. */
  private refused = false
  /** Parked calls, in order, from `parkedHead` on. */
  private parked: Array<Parked> = []
  private parkedHead = 0

  constructor(options: {
    readonly output: Output
    readonly maxQueuedBytes: number
    readonly end: ConnectionEnd
    /**
     * Parked entries beyond which those given up are swept out: calls given up while parked
     * leave an entry behind until the queue moves, and a plugin that never reads would make
     * them pile up.
     */
    readonly compactAt: number
    /** Runs after each reply handed to the transport (the read side's flow control). */
    readonly onReplyQueued?: (() => void) | undefined
  }) {
    this.output = options.output
    this.maxQueuedBytes = options.maxQueuedBytes
    this.replyLimit = 2 * options.maxQueuedBytes
    this.end = options.end
    this.compactAt = options.compactAt
    this.onReplyQueued = options.onReplyQueued ?? (() => {})
    this.queuedBytes = options.output.queuedBytes ?? (() => 0)
  }

  /** Whether call lines wait for room. */
  get isBlocked(): boolean {
    return this.parkedHead < this.parked.length
  }

  /** Whether a line of `size` characters fits under `limit`; alone in the queue, any line does. */
  fits(size: number, limit: number): boolean {
    const queued = this.queuedBytes()
    return queued === 0 || queued + size <= limit
  }

  /** Whether a notification could go now: no call waits and the queue is under the cap. */
  hasRoom(): boolean {
    return !this.isBlocked && this.queuedBytes() < this.maxQueuedBytes
  }

  /** Counts a notification refused for want of room; the reason it fails with. */
  refuseNotification(): PluginClientError.Backpressure {
    this.notificationsRefused++
    return new PluginClientError.Backpressure({ queuedBytes: this.queuedBytes(), limit: this.maxQueuedBytes })
  }

  /** Hands a line to the transport; false once it refused one (this one or an earlier one). */
  write(line: string): boolean {
    if (!this.refused && this.output.writeLine(line)) return true
    this.refused = true
    return false
  }

  /** Sends a call's line, or parks it behind the others until there is room. */
  sendCall(call: Parked, line: string): void {
    if (this.isBlocked || !this.fits(line.length + 1, this.maxQueuedBytes)) {
      this.park(call, line)
    } else if (this.write(line)) {
      this.requestsSent++
    }
  }

  /** Writes parked lines, in order, while there is room: the transport's "bytes went out". */
  readonly onWritten = (): void => {
    if (this.isBlocked) this.unblock()
  }

  /**
   * Writes a signal about a call in flight (a cancel) unless the connection is over or the queue
   * is past the replies' limit; whether it went out.
   */
  signal(line: string): boolean {
    if (this.end.isOver || !this.fits(line.length + 1, this.replyLimit)) return false
    return this.write(line)
  }

  /** Writes a reply, unless it would take the queue past twice the cap: that ends the connection. */
  reply(message: JsonRpc.Success | JsonRpc.Failure): void {
    // Nothing more for a side that stopped reading.
    if (this.end.current instanceof PluginClientError.Backpressure) return
    const line = JsonRpc.encodeResponse(message)
    if (!this.fits(line.length + 1, this.replyLimit)) {
      this.end.close(new PluginClientError.Backpressure({ queuedBytes: this.queuedBytes(), limit: this.replyLimit }))
      return
    }
    this.output.writeLine(line)
    this.onReplyQueued()
  }

  /** Forgets the parked lines: the connection ended. */
  close(): void {
    this.parked = []
    this.parkedHead = 0
  }

  private park(call: Parked, line: string): void {
    call.line = line
    if (this.parked.length - this.parkedHead > this.compactAt) {
      this.parked = this.parked.slice(this.parkedHead).filter((parked) => parked.line !== undefined)
      this.parkedHead = 0
    }
    this.parked.push(call)
  }

  private unblock(): void {
    while (this.isBlocked && !this.end.isOver) {
      const call = this.parked[this.parkedHead]!
      const line = call.line
      if (line === undefined) {
        this.parkedHead++
        continue
      }
      if (!this.fits(line.length + 1, this.maxQueuedBytes)) break
      this.parkedHead++
      call.line = undefined
      // A refused line's call stays pending until the connection ends.
      if (this.write(line)) this.requestsSent++
    }
    if (!this.isBlocked) this.close()
  }
}
