/**
 * The notifications either side of a connection (`RpcPeer`) sends about a request in flight:
 * cancellation and progress, in the two dialects plugins in the wild speak.
 *
 * | | lsp (vscode-jsonrpc) | mcp (Model Context Protocol) |
 * |---|---|---|
 * | cancel | `$/cancelRequest {id}` | `notifications/cancelled {requestId, reason}` |
 * | progress token in the request | `params.workDoneToken` | `params._meta.progressToken` |
 * | progress | `$/progress {token, value}` | `notifications/progress {progressToken, progress, total?, message?}` |
 *
 * A connection sends the cancel of its `cancellation` dialect (none for `"none"`) and reads both
 * forms of everything, so a worker answers a host of either dialect. The progress token of a
 * host call is its request id, so finding the call a progress belongs to is the pending table's
 * own lookup; calls in the `"none"` dialect carry the MCP token (progress is opt-in per call).
 *
 * @internal
 */
import * as Result from "effect/Result"
import type * as JsonRpc from "../JsonRpc.ts"
import type * as LifetimePolicy from "../LifetimePolicy.ts"

/** The dialect of a signal read from the wire. */
export type Dialect = "lsp" | "mcp"

/** LSP's cancel notification. */
export const lspCancel = "$/cancelRequest"
/** MCP's cancel notification. */
export const mcpCancel = "notifications/cancelled"
/** LSP's progress notification. */
export const lspProgress = "$/progress"
/** MCP's progress notification. */
export const mcpProgress = "notifications/progress"

// ---------------------------------------------------------------------------------------------
// cancellation
// ---------------------------------------------------------------------------------------------

/** Why a call is cancelled, as MCP's `reason`. */
export type CancelReason = "timeout" | "interrupted"

/**
 * The line telling the other side to give up call `id` (an id this side allocated, so a plain
 * integer), or none in the `"none"` dialect.
 */
export const cancelLine = (dialect: LifetimePolicy.Cancellation, id: number, reason: CancelReason): string | undefined => {
  switch (dialect) {
    case "lsp":
      return `{"jsonrpc":"2.0","method":"${lspCancel}","params":{"id":${id}}}`
    case "mcp":
      return `{"jsonrpc":"2.0","method":"${mcpCancel}","params":{"requestId":${id},"reason":"${reason}"}}`
    case "none":
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// reading
// ---------------------------------------------------------------------------------------------

/** What a notification says about a request in flight. */
export type Signal =
  | { readonly _tag: "Cancel"; readonly id: JsonRpc.Id; readonly dialect: Dialect }
  | { readonly _tag: "Progress"; readonly token: JsonRpc.Id; readonly value: unknown }

const isId = (value: unknown): value is JsonRpc.Id =>
  typeof value === "string" || (typeof value === "number" && Number.isFinite(value))

const field = (params: unknown, key: string): unknown =>
  typeof params === "object" && params !== null ? Reflect.get(params, key) : undefined

/**
 * The signal a notification carries, if it is one of the four methods with a valid id or token;
 * anything else (including those methods with a malformed body) is an ordinary notification.
 * An MCP progress's value is its params without the token (`{progress, total?, message?}`), an
 * LSP progress's value its `value`.
 */
export const read = (notification: JsonRpc.Notification): Signal | undefined => {
  const params = notification.params
  switch (notification.method) {
    case lspCancel: {
      const id = field(params, "id")
      return isId(id) ? { _tag: "Cancel", id, dialect: "lsp" } : undefined
    }
    case mcpCancel: {
      const id = field(params, "requestId")
      return isId(id) ? { _tag: "Cancel", id, dialect: "mcp" } : undefined
    }
    case lspProgress: {
      const token = field(params, "token")
      return isId(token) ? { _tag: "Progress", token, value: field(params, "value") } : undefined
    }
    case mcpProgress: {
      const token = field(params, "progressToken")
      if (!isId(token) || typeof params !== "object" || params === null) return undefined
      const value: Record<string, unknown> = {}
      for (const key of Object.keys(params)) if (key !== "progressToken") value[key] = Reflect.get(params, key)
      return { _tag: "Progress", token, value }
    }
    default:
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// progress tokens
// ---------------------------------------------------------------------------------------------

const isRecord = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The params of a call that asked for progress, carrying `token` in `dialect`'s place (MCP's
 * for `"none"`). Only by-name params (or none) can carry one.
 */
export const withProgressToken = (
  params: unknown,
  token: number,
  dialect: LifetimePolicy.Cancellation
): Result.Result<Readonly<Record<string, unknown>>, string> => {
  if (params !== undefined && !isRecord(params)) {
    return Result.fail("a call with onProgress needs params that are an object (or none), to carry the progress token")
  }
  if (dialect === "lsp") return Result.succeed({ ...params, workDoneToken: token })
  const meta = params?.["_meta"]
  return Result.succeed({ ...params, _meta: { ...(isRecord(meta) ? meta : {}), progressToken: token } })
}

/** Where the progress of a request being served goes: its token and the dialect it came in. */
export interface ProgressTarget {
  readonly token: JsonRpc.Id
  readonly dialect: Dialect
}

/** The progress token a request carries, if any (MCP's `_meta.progressToken` or LSP's `workDoneToken`). */
export const progressTargetOf = (params: unknown): ProgressTarget | undefined => {
  if (typeof params !== "object" || params === null) return undefined
  const meta: unknown = Reflect.get(params, "_meta")
  const mcp = field(meta, "progressToken")
  if (isId(mcp)) return { token: mcp, dialect: "mcp" }
  const lsp: unknown = Reflect.get(params, "workDoneToken")
  return isId(lsp) ? { token: lsp, dialect: "lsp" } : undefined
}

/**
 * The value a handler reports: a number (MCP's `progress`), or MCP's fields. Over LSP it is sent
 * as the `value` unchanged.
 */
export type ProgressValue = number | {
  readonly progress: number
  readonly total?: number | undefined
  readonly message?: string | undefined
}

/** The notification reporting `value` to `target`: its method and params. */
export const progressNotification = (
  target: ProgressTarget,
  value: ProgressValue
): { readonly method: string; readonly params: object } =>
  target.dialect === "lsp"
    ? { method: lspProgress, params: { token: target.token, value } }
    : {
      method: mcpProgress,
      params: typeof value === "number" ? { progressToken: target.token, progress: value } : { progressToken: target.token, ...value }
    }
