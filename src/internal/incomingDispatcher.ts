/**
 * What a connection (`RpcPeer`) does with the bytes the other side sends: they are cut into
 * messages (lines, or Content-Length frames: see `Framing`), decoded, and each message goes where it belongs. A reply settles its call in the
 * `CallTable`, a request goes to the `RequestServer`, a notification to the inbox.
 *
 * The other side breaks the protocol, and the connection ends, with a line (or a Content-Length
 * header block or body) over `maxLineBytes`, a malformed Content-Length header block, or, in
 * serial mode while a call is in flight, a reply carrying another id or a line that is
 * not a message: a strictly serial plugin's only expected line is the reply to that call, and
 * waiting out its timeout would only delay the same failure. Otherwise lines that are not
 * messages and replies to unknown ids are logged and counted, never fatal (concurrent replies
 * cannot be attributed), and replies to calls already given up are counted as late. A serial
 * plugin's reply without an id (the one-shot dialect, or an error it could not attribute) can
 * only belong to the call in flight.
 *
 * Cancels (`$/cancelRequest`, `notifications/cancelled`) go to the `RequestServer`, whatever
 * they name: they are the connection's own and never reach the inbox. A progress notification
 * goes to the call whose token it carries (`CallTable.progress`); one for no call of this side
 * is an ordinary notification.
 *
 * The end of the bytes (and why, if reading failed) is the other side's output ending, which
 * `ConnectionEnd` waits for once the other side is gone.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Framing from "./lineDecoder.ts"
import * as JsonRpc from "../JsonRpc.ts"
import * as PluginClientError from "../PluginClientError.ts"
import type { CallTable } from "./callTable.ts"
import type { ConnectionEnd } from "./connectionEnd.ts"
import * as RequestSignals from "./requestSignals.ts"

/** Why a frame that is not a message ends the connection. */
const frameFailure = (frame: Framing.Overflow | Framing.Malformed): PluginClientError.MalformedResponse => {
  if (frame._tag === "Malformed") {
    return new PluginClientError.MalformedResponse({ detail: `malformed Content-Length header: ${frame.detail}`, line: frame.excerpt })
  }
  const what = frame.part === "body" ? `message body of ${frame.bytes} bytes` : frame.part === "header" ? "header block" : "line"
  return new PluginClientError.MalformedResponse({ detail: `${what} longer than maxLineBytes (${frame.maxLineBytes} bytes)`, line: "" })
}

/**
 * The incoming side of one connection.
 */
export class IncomingDispatcher {
  /** Lines that were not valid JSON-RPC messages. */
  invalidLines = 0
  /** Replies to calls that had already timed out or been given up. */
  lateResponses = 0
  /** Replies to ids the connection never issued. */
  unknownResponses = 0
  notificationsReceived = 0
  /** Cancels received from the other side (whether or not their request was still served). */
  cancelsReceived = 0
  private readonly serial: boolean
  private readonly lenient: boolean
  private readonly decodeOptions: JsonRpc.DecodeOptions
  private readonly decoder: Framing.MessageDecoder
  private readonly calls: CallTable
  private readonly end: ConnectionEnd
  private readonly serve: (request: JsonRpc.Request) => void
  private readonly cancel: (id: JsonRpc.Id, dialect: RequestSignals.Dialect) => void
  private readonly notify: ((notification: JsonRpc.Notification, bytes: number) => void) | undefined
  private readonly log: (effect: Effect.Effect<void>) => void
  /** Set once the bytes have ended: nothing read after that counts. */
  private ended = false

  constructor(options: {
    /** Serial mode: one call in flight at a time. */
    readonly serial: boolean
    /** Accept replies without `jsonrpc`/`id` (serial mode only). */
    readonly lenient: boolean
    readonly maxLineBytes: number | undefined
    /** How the bytes are framed. Default `"ndjson"`. */
    readonly framing?: Framing.Mode | undefined
    readonly calls: CallTable
    readonly end: ConnectionEnd
    /** Serves a request from the other side. */
    readonly serve: (request: JsonRpc.Request) => void
    /** The other side gave up its request `id`. */
    readonly cancel: (id: JsonRpc.Id, dialect: RequestSignals.Dialect) => void
    /** Takes a notification and the length of its line; none: notifications are only counted. */
    readonly notify: ((notification: JsonRpc.Notification, bytes: number) => void) | undefined
    readonly log: (effect: Effect.Effect<void>) => void
  }) {
    this.serial = options.serial
    this.lenient = options.lenient && options.serial
    this.decodeOptions = { lenient: this.lenient }
    this.decoder = Framing.makeDecoder(options.framing ?? "ndjson", { maxLineBytes: options.maxLineBytes })
    this.calls = options.calls
    this.end = options.end
    this.serve = options.serve
    this.cancel = options.cancel
    this.notify = options.notify
    this.log = options.log
  }

  /** Takes the next bytes from the other side; each complete line is handled before it returns. */
  readonly push = (chunk: Uint8Array): void => {
    if (!this.ended) this.decoder.push(chunk, this.onFrame)
  }

  /** The other side's bytes have ended: `failure` says why if reading failed. */
  readonly finish = (failure?: string): void => {
    if (this.ended) return
    this.ended = true
    if (failure !== undefined) this.end.close(new PluginClientError.Io({ detail: `reading failed: ${failure}` }))
    this.decoder.end(this.onFrame)
    this.end.outputEnd()
  }

  private readonly onFrame = (frame: Framing.MessageFrame): void => {
    if (this.end.isOver) return
    if (typeof frame !== "string") {
      this.end.close(frameFailure(frame))
      return
    }
    const decoded = JsonRpc.decodeLine(frame, this.decodeOptions)
    if (Result.isFailure(decoded)) return this.onInvalidLine(decoded.failure)
    const message = decoded.success
    switch (message._tag) {
      case "Success":
      case "Failure":
        return this.onResponse(message)
      case "Request":
        return this.serve(message)
      case "Notification":
        this.notificationsReceived++
        if (this.onSignal(message)) return
        this.notify?.(message, frame.length)
        return
    }
  }

  /** Whether a notification was a cancel or a progress this connection took. */
  private onSignal(message: JsonRpc.Notification): boolean {
    const signal = RequestSignals.read(message)
    if (signal === undefined) return false
    if (signal._tag === "Progress") return this.calls.progress(signal.token, signal.value)
    this.cancelsReceived++
    this.cancel(signal.id, signal.dialect)
    return true
  }

  private onInvalidLine(issue: JsonRpc.LineIssue): void {
    this.invalidLines++
    if (this.serial && this.calls.inFlight !== undefined) {
      this.end.close(new PluginClientError.MalformedResponse({ detail: issue.detail, line: issue.excerpt }))
      return
    }
    this.log(Effect.logWarning(`ignored a line that is not JSON-RPC (${issue._tag}): ${issue.detail}`, issue.excerpt))
  }

  private onResponse(message: JsonRpc.Success | JsonRpc.Failure): void {
    const inFlight = this.calls.inFlight
    let id = message.id
    if (id === null && this.serial && inFlight !== undefined && (this.lenient || message._tag === "Failure")) {
      id = inFlight
    }
    const call = typeof id === "number" ? this.calls.get(id) : undefined
    if (call !== undefined) return this.calls.settle(call, message)
    if (typeof id === "number" && this.calls.isAbandoned(id)) {
      this.lateResponses++
      return
    }
    if (this.serial && inFlight !== undefined) {
      this.end.close(new PluginClientError.IdMismatch({ expected: inFlight, got: id }))
      return
    }
    this.unknownResponses++
    this.log(Effect.logWarning(`response for unknown id ${JSON.stringify(id)} ignored`))
  }
}
