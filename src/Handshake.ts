/**
 * The first exchange after a plugin is spawned, before any call is let through.
 *
 * A handshake is a request (`method`, `params`) whose result is checked by `validate`, bounded
 * by the policy's `initTimeout`; once it passes, an optional `afterwards` notification is sent
 * (e.g. `initialized`). A failed, refused or timed-out handshake is `InitFailed` with the
 * plugin's stderr excerpt: the process is killed and the failure counts as a crash. Presets
 * cover the two dialects this host unifies: devboy secret sources (`secret_source.init`) and
 * Paperclip workers (`initialize` → `{ok, supportedMethods}`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Protocol from "./internal/protocol.ts"

/**
 * What a successful handshake tells the host.
 *
 * @category models
 */
export interface HandshakeInfo {
  readonly supportedMethods?: ReadonlyArray<string> | undefined
}

/**
 * A handshake: none, or a request with a result check.
 *
 * @category models
 */
export type Handshake =
  | { readonly _tag: "None" }
  | {
    readonly _tag: "Request"
    readonly method: string
    readonly params: unknown
    /** Accepts the result (returning what it tells) or rejects it with a reason. */
    readonly validate: (result: unknown) => Effect.Effect<HandshakeInfo, string>
    readonly afterwards: { readonly method: string; readonly params?: unknown } | undefined
    /**
     * Whether an error reply passes (without `validate`): any answer proves the plugin is alive
     * and speaking the protocol — for liveness checks of plugins whose methods are unknown.
     */
    readonly acceptErrorReplies: boolean
  }

/**
 * No handshake: the plugin is ready once spawned.
 *
 * @category constructors
 */
export const none: Handshake = { _tag: "None" }

/**
 * A request handshake. Without `validate`, any non-error result is accepted.
 *
 * @category constructors
 */
export const make = (options: {
  readonly method: string
  readonly params?: unknown
  readonly validate?: ((result: unknown) => Effect.Effect<HandshakeInfo, string>) | undefined
  readonly afterwards?: { readonly method: string; readonly params?: unknown } | undefined
  readonly acceptErrorReplies?: boolean | undefined
}): Handshake => ({
  _tag: "Request",
  method: options.method,
  params: options.params,
  validate: options.validate ?? (() => Effect.succeed({})),
  afterwards: options.afterwards,
  acceptErrorReplies: options.acceptErrorReplies ?? false
})

/**
 * A liveness handshake: sends `method` (default `health`) and accepts any answer, an error
 * reply included; only silence, an exit or garbage fail it.
 *
 * @category presets
 */
export const liveness = (method = "health"): Handshake => make({ method, acceptErrorReplies: true })

const decodeInitialize = Schema.decodeUnknownResult(Protocol.InitializeResult)

/**
 * The Paperclip worker dialect: `initialize` must answer `{ok: true, supportedMethods?}`;
 * `ok: false` is a refusal.
 *
 * @category presets
 */
export const initialize = (params?: unknown): Handshake =>
  make({
    method: "initialize",
    params,
    validate: (result) => {
      const decoded = decodeInitialize(result)
      if (Result.isFailure(decoded)) {
        return Effect.fail(`initialize returned ${JSON.stringify(result)?.slice(0, 200)}, expected {ok, supportedMethods?}`)
      }
      if (!decoded.success.ok) {
        const why = decoded.success.error === undefined ? "" : `: ${JSON.stringify(decoded.success.error).slice(0, 200)}`
        return Effect.fail(`initialize answered ok: false${why}`)
      }
      return Effect.succeed({ supportedMethods: decoded.success.supportedMethods })
    }
  })

/**
 * The devboy secret-source dialect: `secret_source.init` with the source's config; any
 * non-error result is accepted.
 *
 * @category presets
 */
export const secretSource = (config?: unknown): Handshake =>
  make({ method: "secret_source.init", params: config === undefined ? {} : { config } })
