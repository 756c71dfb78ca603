/**
 * A JSON-RPC 2.0 connection to one plugin process, in both directions.
 *
 * Like vscode-jsonrpc's connection, one type serves host→plugin calls, plugin→host calls and
 * notifications, so they share one id table, one timeout path and one error path. Calls carry
 * ids allocated per connection and wait in a pending table with a per-call timeout; replies
 * may come back in any order. At most `maxConcurrentRequests` calls are in flight; with `1` the
 * plugin is strictly serial and a reply carrying another id is a protocol violation.
 *
 * Memory is bounded by bytes in both directions. Lines queued for the other side and not yet
 * taken by it stay under `maxQueuedBytes`: a call waits for room (within its timeout), a
 * notification fails at once with `Backpressure`, and once replies take the queue over the cap
 * the other side's output is no longer read (flow control, `internal/incomingFlow.ts`) until it
 * has read the queue down to half: a side flooding requests blocks on its own output. A pause in
 * which nothing goes out for `requestTimeout`, or replies that would take the queue past twice
 * the cap, end the connection with `Backpressure`. Notifications waiting for a
 * slow `onNotification` stay under `maxQueuedNotificationBytes` (and a count); beyond it they are
 * dropped, counted in `stats` and in the `plugin_notifications_dropped_total` metric. A handler
 * that returns at once is run as the notification is read, so it never drops one (see
 * `internal/notificationInbox.ts`).
 *
 * Messages are framed as the transport says: one per line (`"ndjson"`, the default) or after a
 * `Content-Length` header (`"content-length"`, LSP's base protocol), see `Framing`.
 *
 * The connection ends when the process exits, stdin breaks, or the plugin breaks the protocol
 * (a line, header block or body over `maxLineBytes`, a malformed `Content-Length` header, a wrong id or a line that is not a message while a call is in
 * flight in serial mode, replies it leaves unread). Then every pending call fails at once with
 * the reason (for an exit: code or signal and the stderr excerpt), and later calls fail
 * immediately. A write the transport refuses is the end on its way: the call (or notification)
 * waits for it and fails with its reason, never with `Closed`, which only a connection closed by
 * its own Scope (the host) gives. Otherwise unparseable lines and responses to unknown ids are
 * logged and counted, never fatal. Requests from the plugin are served by `hostHandlers` (an
 * unknown method gets -32601, a failing handler an error reply), so nothing a plugin sends can
 * crash the host.
 *
 * Calls are cancelled both ways. A call the other side has seen and this side gives up (it timed
 * out, or its caller was interrupted) is cancelled there in the `cancellation` dialect:
 * `$/cancelRequest {id}` (`"lsp"`), `notifications/cancelled {requestId, reason}` (`"mcp"`), or
 * not at all (`"none"`, the default); its reply, if one still comes, is counted as late. A cancel
 * from the other side, in either dialect, interrupts the handler serving that request (LSP gets
 * a -32800 reply, MCP none). A call may ask for progress (`onProgress`): it carries a progress
 * token, and each progress the other side reports for it reaches the callback and gives the call
 * a full timeout from then, never more than `maxRequestTimeout` after it was sent. The wire forms
 * are in `internal/requestSignals.ts` and the README.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as RpcConnection from "./internal/rpcConnection.ts"
import * as PluginClientError from "./PluginClientError.ts"
import type * as PluginProcess from "./PluginProcess.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

export type {
  CallObserver,
  CallOptions,
  EndReason,
  HostHandler,
  HostHandlers,
  Options,
  RpcPeer,
  Stats,
  Transport
} from "./internal/rpcConnection.ts"
import type { EndReason, Options, RpcPeer, Transport } from "./internal/rpcConnection.ts"

/**
 * A transport over a plugin process: its end is the process's exit (code or signal and the
 * stderr excerpt) or a failed write to its stdin.
 *
 * @category constructors
 */
export const fromProcess = (process: PluginProcess.PluginProcess): Transport => ({
  name: process.name,
  pid: process.pid,
  framing: process.framing,
  incoming: process.stdout,
  listen: process.listenStdout,
  writeLine: process.writeLine,
  queuedBytes: process.queuedInputBytes,
  listenWritten: process.listenInputWritten,
  // One wait on the process's end (no race of two waits per plugin). The stderr excerpt is read
  // at the end; the reason is built from it only if asked for.
  closed: Effect.flatMap(process.ended, (end) =>
    end._tag === "InputFailed"
      ? Effect.succeed<EndReason>(() => new PluginClientError.Io({ detail: `writing stdin failed: ${end.detail}` }))
      : Effect.map(process.stderrExcerpt, (stderrExcerpt): EndReason => () => new PluginClientError.Exited({ ...end.exit, stderrExcerpt })))
})

/**
 * A progress the other side reported for a call streamed with {@link progressStream} (MCP:
 * `{progress, total?, message?}`; LSP: its `value`).
 *
 * @category models
 */
export interface CallProgress {
  readonly _tag: "Progress"
  readonly value: unknown
}

/**
 * The result of a call streamed with {@link progressStream}: its last element.
 *
 * @category models
 */
export interface CallResult<A> {
  readonly _tag: "Result"
  readonly value: A
}

/**
 * What a call streamed with {@link progressStream} emits: its progress reports, in order, then
 * its result, after which the stream ends; a failed call fails the stream.
 *
 * @category models
 */
export type CallUpdate<A> = CallProgress | CallResult<A>

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

/**
 * A call that asks for progress, as a `Stream`: `call` is given the `onProgress` to pass in its
 * {@link CallOptions}, and the stream emits each progress as a {@link CallProgress}, then the
 * result as a {@link CallResult}, and ends; the call's failure is the stream's. The call runs while the
 * stream is pulled: a consumer that stops early (`Stream.take`, an interruption) interrupts it,
 * which cancels it at the other side in the connection's dialect. A consumer that falls
 * `bufferSize` (default 16) updates behind skips to the latest progress, as `onProgress` does;
 * the result is never skipped.
 *
 * ```ts
 * RpcPeer.progressStream((onProgress) => peer.request("index", { root }, { onProgress, timeout: "1 minute" }))
 * ```
 *
 * @category constructors
 */
export const progressStream = <A, E, R>(
  call: (onProgress: (value: unknown) => Effect.Effect<void>) => Effect.Effect<A, E, R>,
  options?: { readonly bufferSize?: number | undefined }
): Stream.Stream<CallUpdate<A>, E, R> =>
  Stream.callback<CallUpdate<A>, E, R>(
    (queue) =>
      call((value) => Effect.asVoid(Queue.offer(queue, { _tag: "Progress", value }))).pipe(
        Effect.matchCauseEffect({
          onSuccess: (value) => Effect.andThen(Queue.offer(queue, { _tag: "Result", value }), Queue.end(queue)),
          onFailure: (cause) => Queue.failCause(queue, cause)
        }),
        Effect.forkScoped
      ),
    { bufferSize: Math.max(1, options?.bufferSize ?? 16), strategy: "sliding" }
  )

/**
 * Notifications dropped because a connection's `onNotification` could not keep up, by plugin.
 *
 * @category metrics
 */
export const notificationsDroppedTotal = RpcConnection.notificationsDroppedTotal

/**
 * Opens a connection over a transport (see {@link fromProcess}). The connection lives in the
 * current Scope; closing it fails calls still pending with a `Closed` reason.
 *
 * The connection is made of parts that each own one side of it (in `internal/`):
 * `ConnectionEnd` (why and when it ends), `OutgoingQueue` (the byte-bounded lines to the other
 * side), `CallTable` (calls made, their slots and timeouts), `IncomingDispatcher` (what the other
 * side sends, routed to the table, to the `RequestServer` of host handlers, or to the
 * notification inbox) and `ConnectionFibers` (the fibers it runs besides its callers').
 * A transport is read through its `listen` callbacks when it has them, else from its
 * `incoming` stream; it needs one of the two.
 *
 * @category constructors
 */
export const make = <R = never>(
  transport: Transport,
  options?: Options<R>
): Effect.Effect<RpcPeer, never, Scope.Scope | R> => RpcConnection.make(transport, options, readStream)

/**
 * Reads a transport's `incoming` stream (one without `listen`) from a fiber in the current
 * Scope, which waits at `flow`'s gate before it pulls more.
 */
const readStream: RpcConnection.ReadStream = (transport, incoming, flow, annotate) => {
  if (transport.incoming === undefined) {
    return Effect.die(new Error(`transport ${transport.name} has neither \`listen\` nor \`incoming\``))
  }
  return transport.incoming.pipe(
    Stream.runForEachArray((chunks) =>
      Effect.suspend(() => {
        for (const chunk of chunks) incoming.push(chunk)
        return flow.gate() ?? Effect.void
      })
    ),
    Effect.catchCause((cause) => Effect.sync(() => incoming.finish(Cause.pretty(cause).split("\n")[0] ?? "unknown error"))),
    Effect.ensuring(Effect.sync(() => incoming.finish())),
    annotate,
    Effect.forkScoped,
    Effect.asVoid
  )
}
