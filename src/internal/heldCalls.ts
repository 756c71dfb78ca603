/**
 * The calls an instance of a remote worker holds, by the key the host gave them: what it
 * answers when a host asks whether a call is still alive (`<prefix>.held`), and whom a
 * broadcast cancel (`<prefix>.cancel`) interrupts. A call that just ended is remembered as
 * `done` (its reply may still be on the wire, so the host must keep waiting for it), and a
 * cancel that arrives before its call is remembered so the call never runs; both memories keep
 * only the latest `capacity` keys, so a busy instance stays bounded.
 *
 * @internal
 */
import type * as RemoteWire from "./remoteWire.ts"

/** The registry of one instance. */
export interface HeldCalls {
  /**
   * Registers a call about to run, with how to interrupt it; false when it was cancelled
   * before it arrived (then it must not run).
   */
  readonly start: (key: string, interrupt: () => void) => boolean
  /** The call ended (replied, failed or was interrupted). */
  readonly finish: (key: string) => void
  /** Interrupts the call if it runs here; remembers the cancel otherwise. */
  readonly cancel: (key: string) => void
  /** What this instance knows of a call: running, done, or nothing (undefined). */
  readonly state: (key: string) => RemoteWire.HeldState | undefined
  /** How many calls run now. */
  readonly running: () => number
}

/** Keeps at most `capacity` keys, dropping the oldest. */
const remember = (set: Set<string>, key: string, capacity: number): void => {
  set.add(key)
  if (set.size > capacity) {
    const oldest = set.values().next()
    if (oldest.done !== true) set.delete(oldest.value)
  }
}

/** An empty registry remembering the last `capacity` ended and early-cancelled calls. */
export const make = (capacity = 4_096): HeldCalls => {
  const running = new Map<string, () => void>()
  const done = new Set<string>()
  const cancelledEarly = new Set<string>()
  return {
    start: (key, interrupt) => {
      if (cancelledEarly.delete(key)) return false
      running.set(key, interrupt)
      return true
    },
    finish: (key) => {
      if (running.delete(key)) remember(done, key, capacity)
    },
    cancel: (key) => {
      const interrupt = running.get(key)
      if (interrupt !== undefined) interrupt()
      else if (!done.has(key)) remember(cancelledEarly, key, capacity)
    },
    state: (key) => running.has(key) ? "running" : done.has(key) ? "done" : undefined,
    running: () => running.size
  }
}
