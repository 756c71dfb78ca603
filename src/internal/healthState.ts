/**
 * The `PluginHealth` service's state: one immutable map from plugin id to its
 * {@link GroupHealth.ServerOverlay} (the error of its last failed probe, the error of a failed
 * `startup`, the tools it discovered last), and the pure transitions the service applies to it
 * atomically (`Ref.update` / `Ref.modify`).
 *
 * A transition that changes nothing returns the same map, and a plugin with nothing to remember
 * has no entry, so the map holds only what a check must know beyond the live state.
 *
 * @internal
 */
import type * as GroupHealth from "../GroupHealth.ts"

/** Everything the service remembers, by plugin id. */
export type HealthState = ReadonlyMap<string, GroupHealth.ServerOverlay>

/** Nothing remembered yet. */
export const empty: HealthState = new Map()

/** What is remembered about one plugin (nothing is `{}`). */
export const overlayOf = (state: HealthState, id: string): GroupHealth.ServerOverlay => state.get(id) ?? {}

const isEmpty = (overlay: GroupHealth.ServerOverlay): boolean =>
  overlay.probeError === undefined && overlay.startFailure === undefined && overlay.capabilities === undefined

/** The state with one plugin's overlay replaced (dropped when it holds nothing). */
const withOverlay = (state: HealthState, id: string, overlay: GroupHealth.ServerOverlay): HealthState => {
  const next = new Map(state)
  if (isEmpty(overlay)) next.delete(id)
  else next.set(id, overlay)
  return next
}

/** `startup` could not start the plugin: it stays `Failed` with this error until it comes up. */
export const startFailed = (state: HealthState, id: string, error: string): HealthState =>
  withOverlay(state, id, { ...overlayOf(state, id), startFailure: error })

/** The plugin came up (started, `Ready`, or seen `Running`): a failed start is forgotten. */
export const cameUp = (state: HealthState, id: string): HealthState =>
  overlayOf(state, id).startFailure === undefined
    ? state
    : withOverlay(state, id, { ...overlayOf(state, id), startFailure: undefined })

/** Discovery read the plugin's tools: they are its capabilities from now on. */
export const toolsDiscovered = (state: HealthState, id: string, tools: ReadonlyArray<string>): HealthState =>
  withOverlay(state, id, { ...overlayOf(state, id), capabilities: tools })

/** The plugins were stopped on purpose: their failed probes are forgotten. */
export const stopped = (state: HealthState, ids: ReadonlyArray<string>): HealthState =>
  ids.reduce(
    (current, id) =>
      overlayOf(current, id).probeError === undefined
        ? current
        : withOverlay(current, id, { ...overlayOf(current, id), probeError: undefined }),
    state
  )

/**
 * What a probe outcome changes for the group's readers: `Degraded` (with the error) on the first
 * failure after a pass, `Recovered` on the first pass after a failure, else `Unchanged`.
 */
export type ProbeTransition =
  | { readonly _tag: "Degraded"; readonly error: string }
  | { readonly _tag: "Recovered" }
  | { readonly _tag: "Unchanged" }

const unchanged: ProbeTransition = { _tag: "Unchanged" }

/**
 * Records a probe's outcome (`failure` is its error, `undefined` when it passed): a failure is
 * remembered (the latest error wins), a pass forgets it.
 */
export const probed = (
  state: HealthState,
  id: string,
  failure: string | undefined
): readonly [ProbeTransition, HealthState] => {
  const overlay = overlayOf(state, id)
  const wasFailing = overlay.probeError !== undefined
  if (failure !== undefined) {
    const transition: ProbeTransition = wasFailing ? unchanged : { _tag: "Degraded", error: failure }
    return [transition, withOverlay(state, id, { ...overlay, probeError: failure })]
  }
  return wasFailing ? [{ _tag: "Recovered" }, withOverlay(state, id, { ...overlay, probeError: undefined })] : [unchanged, state]
}
