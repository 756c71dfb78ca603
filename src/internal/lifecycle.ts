/**
 * The lifecycle's rules, as pure functions of a client's state: who may change the state (the
 * generation rule), and what a call that needs the plugin finds (use the running process, wait
 * for a crash being recorded, spawn, or be refused). `PluginClient` applies them under its
 * lifecycle lock; they hold no state and run no effects, so they are tested as tables.
 *
 * @internal
 */

/**
 * Where a plugin's life stands, as these rules read it (structurally the public
 * `PluginClient.PluginState`).
 *
 * @internal
 */
export type LifeState =
  | { readonly _tag: "Idle" | "Starting" | "Running" | "Stopping" | "Recovering" | "Stopped" }
  | { readonly _tag: "Backoff"; readonly until: number }
  | { readonly _tag: "Disabled"; readonly reason: string }

/**
 * What the rules need to know of one incarnation (one spawned process).
 *
 * @internal
 */
export interface Generation {
  readonly generation: number
  /** Its crash has been reported and is being (or has been) recorded. */
  readonly crashClaimed: boolean
}

/**
 * Why a call is refused without touching the plugin.
 *
 * @internal
 */
export type Refusal =
  | { readonly _tag: "Disabled"; readonly reason: string }
  | { readonly _tag: "Stopped"; readonly shutDown: boolean }
  | { readonly _tag: "Stopping" }
  | { readonly _tag: "Backoff"; readonly until: number }

/**
 * What a call that needs the plugin does next.
 *
 * @internal
 */
export type Admission<I extends Generation> =
  | { readonly _tag: "Use"; readonly incarnation: I }
  | { readonly _tag: "AwaitCrash"; readonly incarnation: I }
  | { readonly _tag: "Spawn" }
  | { readonly _tag: "Refuse"; readonly refusal: Refusal }

/**
 * Why the state refuses calls, if it does: disabled, stopped (or shut down for good), stopping,
 * or waiting out a backoff.
 *
 * @internal
 */
export const refusal = (state: LifeState, closed: boolean): Refusal | undefined => {
  switch (state._tag) {
    case "Disabled":
      return { _tag: "Disabled", reason: state.reason }
    case "Stopped":
      return { _tag: "Stopped", shutDown: closed }
    case "Stopping":
      return { _tag: "Stopping" }
    case "Backoff":
      return { _tag: "Backoff", until: state.until }
    default:
      return undefined
  }
}

/**
 * What a call finds: a refusal first; else the current incarnation, unless its crash is being
 * recorded (the call waits for that decision, so a spawn never replaces an incarnation whose
 * crash is pending); else a spawn.
 *
 * @internal
 */
export const admit = <I extends Generation>(state: LifeState, closed: boolean, current: I | undefined): Admission<I> => {
  const refused = refusal(state, closed)
  if (refused !== undefined) return { _tag: "Refuse", refusal: refused }
  if (current === undefined) return { _tag: "Spawn" }
  return current.crashClaimed ? { _tag: "AwaitCrash", incarnation: current } : { _tag: "Use", incarnation: current }
}

/**
 * The generation rule: only the current incarnation's events change the state. A crash reported
 * by one that a stop, restart or reap has replaced (or that no longer is current at all) is
 * history: its process is torn down, the state stays.
 *
 * @internal
 */
export const ownsState = (current: Generation | undefined, reporter: Generation): boolean =>
  current !== undefined && current.generation === reporter.generation
