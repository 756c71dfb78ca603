/**
 * What a plugin client reports of its plugin: where its life stands ({@link PluginState}) and
 * what happened to it ({@link PluginEvent}). The models only, with no behaviour: `PluginClient`
 * re-exports them, and the client's internal parts (the lifecycle, the engine, the plugin's
 * messages) use these same types.
 *
 * @since 0.1.0
 */

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * Where a plugin's life stands.
 *
 * @category models
 */
export type PluginState =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Running" }
  | { readonly _tag: "Stopping" }
  | { readonly _tag: "Recovering" }
  | { readonly _tag: "Backoff"; readonly until: number }
  | { readonly _tag: "Disabled"; readonly reason: string }
  | { readonly _tag: "Stopped" }

/**
 * Constructors for {@link PluginState}.
 *
 * @category models
 */
export const PluginState: {
  readonly Idle: PluginState
  readonly Starting: PluginState
  readonly Running: PluginState
  readonly Stopping: PluginState
  readonly Recovering: PluginState
  readonly Stopped: PluginState
  readonly Backoff: (until: number) => PluginState
  readonly Disabled: (reason: string) => PluginState
} = {
  Idle: { _tag: "Idle" },
  Starting: { _tag: "Starting" },
  Running: { _tag: "Running" },
  Stopping: { _tag: "Stopping" },
  Recovering: { _tag: "Recovering" },
  Stopped: { _tag: "Stopped" },
  Backoff: (until) => ({ _tag: "Backoff", until }),
  Disabled: (reason) => ({ _tag: "Disabled", reason })
}

/**
 * What happened to a plugin, in order. The events of one process (`Ready`, `Exit`, `Reaped`)
 * carry its `generation`: 1 for the client's first process, one more for each spawn. An `Exit`
 * can arrive after the `Ready` of the next generation (a restart does not wait for it to be
 * published); it says nothing about the newer process.
 *
 * @category models
 */
export type PluginEvent =
  | { readonly _tag: "Ready"; readonly plugin: string; readonly pid: number; readonly generation: number }
  | {
    readonly _tag: "Exit"
    readonly plugin: string
    readonly pid: number
    readonly generation: number
    readonly code: number | null
    readonly signal: string | null
    readonly requested: boolean
  }
  | {
    readonly _tag: "Crash"
    readonly plugin: string
    /** The process that crashed, or the launch that failed. */
    readonly generation: number
    readonly reason: string
    readonly code: number | null
    readonly signal: string | null
    readonly willRestart: boolean
  }
  | { readonly _tag: "StateChanged"; readonly plugin: string; readonly from: PluginState; readonly to: PluginState }
  | { readonly _tag: "Log"; readonly plugin: string; readonly level: string; readonly message: string; readonly meta: unknown }
  | { readonly _tag: "Notification"; readonly plugin: string; readonly method: string; readonly params: unknown }
  | { readonly _tag: "Reaped"; readonly plugin: string; readonly pid: number; readonly generation: number }
  | StreamEvent

/**
 * A `streams.open` / `streams.emit` / `streams.close` notification from the plugin (a channel of
 * values it pushes to the host). When the plugin dies, every channel it left open gets a
 * synthetic `close` with `synthetic: true`.
 *
 * @category models
 */
export interface StreamEvent {
  readonly _tag: "Stream"
  readonly plugin: string
  readonly action: "open" | "emit" | "close"
  readonly channel: string
  readonly params: unknown
  readonly synthetic: boolean
}
