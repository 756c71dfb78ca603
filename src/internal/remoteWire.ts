/**
 * The wire between a remote plugin client (the host, `RemotePlugin`) and the instances of a
 * worker served over a broker (`PluginWorker.serveBroker`): the subjects under a plugin's
 * subject prefix and the envelopes on them. Both sides use this module and nothing else to
 * agree, so the protocol reads in one place:
 *
 * | subject | who listens | payload | answer |
 * |---|---|---|---|
 * | `<prefix>.call` | every instance, queue group `q` | a JSON-RPC request; the host adds `"host": {inbox, call}` | the JSON-RPC response |
 * | `<prefix>.tick` | every instance, queue group `q` | nexo's tick envelope | `{result}` / `{error}` |
 * | `<prefix>.notify` | every instance, queue group `q` | a JSON-RPC notification (with `host`) | none: one instance handles it |
 * | `<prefix>.cancel` | every instance, no group | `{call}` | none: the instance running the call interrupts it |
 * | `<prefix>.held` | every instance, no group | `{call}` | `{state, instance}` from the instance that runs or just ran it; the others stay silent |
 * | `<inbox>` (one per host) | the host | `{call, instance, message}`: a JSON-RPC request (a host call, answered with the response) or notification (log, progress, streams…) | |
 *
 * A request without `host` (a bare JSON-RPC request, as pollers and other clients send) is
 * answered the same way; its handler just cannot reach a host. `call` is a key unique across
 * hosts (the host's inbox id and a sequence number), so `cancel` and `held` can be broadcast:
 * only the instance holding the call acts on them.
 *
 * @internal
 */
import * as Result from "effect/Result"
import * as JsonRpc from "../JsonRpc.ts"

/** The queue group endpoints are subscribed in: NATS micro's default (ADR-32). */
export const defaultQueue = "q"

/** The subjects a worker serves under `prefix`. */
export interface Subjects {
  readonly call: string
  readonly tick: string
  readonly notify: string
  readonly cancel: string
  readonly held: string
}

/** The subjects under `prefix`. */
export const subjects = (prefix: string): Subjects => ({
  call: `${prefix}.call`,
  tick: `${prefix}.tick`,
  notify: `${prefix}.notify`,
  cancel: `${prefix}.cancel`,
  held: `${prefix}.held`
})

/** Where an instance reaches the host that sent a request, and that request's key. */
export interface HostRoute {
  readonly inbox: string
  readonly call: string
}

const isRecord = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const stringField = (value: unknown, key: string): string | undefined => {
  if (!isRecord(value)) return undefined
  const field = value[key]
  return typeof field === "string" && field.length > 0 ? field : undefined
}

// ---------------------------------------------------------------------------------------------
// host → instance
// ---------------------------------------------------------------------------------------------

/**
 * A call as the host sends it: the JSON-RPC request (a notification without `id`) plus its
 * route. Fails when the params are not JSON. Written field by field (the same text
 * `JSON.stringify` gives the object), so no object is built per call just to be serialized.
 */
export const encodeCall = (route: HostRoute, id: number | undefined, method: string, params: unknown): Result.Result<string, string> => {
  try {
    // `undefined` (or a function) has no JSON: the field is left out, as `JSON.stringify` would.
    const paramsJson: string | undefined = params === undefined ? undefined : JSON.stringify(params)
    return Result.succeed(
      `{"jsonrpc":"2.0",${id === undefined ? "" : `"id":${id},`}"method":${JSON.stringify(method)},` +
        `${paramsJson === undefined ? "" : `"params":${paramsJson},`}"host":{"inbox":${JSON.stringify(route.inbox)},"call":${
          JSON.stringify(route.call)
        }}}`
    )
  } catch (cause) {
    return Result.fail(cause instanceof Error ? cause.message : String(cause))
  }
}

/** The route a parsed `<prefix>.call` payload carries, if the host added one. */
export const routeOf = (payload: unknown): HostRoute | undefined => {
  const host = isRecord(payload) ? payload["host"] : undefined
  const inbox = stringField(host, "inbox")
  const call = stringField(host, "call")
  return inbox === undefined || call === undefined ? undefined : { inbox, call }
}

/** The `{call}` of `cancel` and `held`. */
export const encodeCallKey = (call: string): string => JSON.stringify({ call })

/** The call key of a `cancel` or `held` payload, if it is one. */
export const callKeyOf = (payload: unknown): string | undefined => stringField(payload, "call")

/** What the instance holding a call says of it: still running, or done (its reply is on its way). */
export type HeldState = "running" | "done"

/** An instance's answer to `held`. */
export const encodeHeld = (state: HeldState, instance: string): string => JSON.stringify({ state, instance })

/** A parsed answer to `held`, if it is one. */
export const heldOf = (payload: unknown): { readonly state: HeldState; readonly instance: string } | undefined => {
  const state = stringField(payload, "state")
  const instance = stringField(payload, "instance") ?? ""
  return state === "running" || state === "done" ? { state, instance } : undefined
}

// ---------------------------------------------------------------------------------------------
// instance → host
// ---------------------------------------------------------------------------------------------

/** A message to a host's inbox: a JSON-RPC request or notification about call `call`. */
export interface InboxMessage {
  readonly call: string
  readonly instance: string
  readonly message: JsonRpc.Request | JsonRpc.Notification
}

/** An inbox message, or why the message cannot be encoded (its params are not JSON). */
export const encodeInbox = (
  call: string,
  instance: string,
  message: JsonRpc.Request | JsonRpc.Notification
): Result.Result<string, string> =>
  Result.map(JsonRpc.encode(message), (line) => `{"call":${JSON.stringify(call)},"instance":${JSON.stringify(instance)},"message":${line}}`)

/** Reads an inbox message from its parsed JSON, or says what is wrong with it. */
export const decodeInbox = (payload: unknown): Result.Result<InboxMessage, string> => {
  const call = stringField(payload, "call")
  if (call === undefined || !isRecord(payload)) return Result.fail("not an inbox message: no `call`")
  const decoded = JsonRpc.decodeValue(payload["message"], "")
  if (Result.isFailure(decoded)) return Result.fail(`not an inbox message: ${decoded.failure.detail}`)
  const message = decoded.success
  if (message._tag !== "Request" && message._tag !== "Notification") {
    return Result.fail("not an inbox message: a response has no place in an inbox")
  }
  return Result.succeed({ call, instance: stringField(payload, "instance") ?? "", message })
}
