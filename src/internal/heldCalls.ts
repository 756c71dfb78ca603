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

/** The latest `capacity` keys added, by the order they were added. */
interface Recent {
  readonly add: (key: string) => void
  readonly has: (key: string) => boolean
  readonly delete: (key: string) => boolean
}

/**
 * A {@link Recent} asked often: a ring of the keys beside a map of the stamp each was added
 * under, so forgetting the oldest is O(1) (a key added again, or deleted, is not forgotten by
 * its old slot). Deleting the first entry of a JS `Set` again and again instead makes each
 * `values().next()` skip the holes the earlier deletes left, until the table is rebuilt.
 */
const recentIndexed = (capacity: number): Recent => {
  const ring = new Array<string | undefined>(capacity)
  const stamps = new Map<string, number>()
  let added = 0
  return {
    add: (key) => {
      const slot = added % capacity
      const oldest = ring[slot]
      if (oldest !== undefined && stamps.get(oldest) === added - capacity) stamps.delete(oldest)
      ring[slot] = key
      stamps.set(key, added++)
    },
    has: (key) => stamps.has(key),
    delete: (key) => stamps.delete(key)
  }
}

/**
 * The ended calls: every call adds one, and only a liveness question or a cancel about a call
 * not running asks, so adding is one array store and asking a scan of the ring.
 */
const recentlyEnded = (capacity: number) => {
  const ring = new Array<string | undefined>(capacity)
  let added = 0
  return {
    add: (key: string) => {
      ring[added++ % capacity] = key
    },
    has: (key: string) => ring.includes(key)
  }
}

/** An empty registry remembering the last `capacity` ended and early-cancelled calls. */
export const make = (capacity = 4_096): HeldCalls => {
  const running = new Map<string, () => void>()
  const done = recentlyEnded(capacity)
  const cancelledEarly = recentIndexed(capacity)
  return {
    start: (key, interrupt) => {
      if (cancelledEarly.delete(key)) return false
      running.set(key, interrupt)
      return true
    },
    finish: (key) => {
      if (running.delete(key)) done.add(key)
    },
    cancel: (key) => {
      const interrupt = running.get(key)
      if (interrupt !== undefined) interrupt()
      else if (!done.has(key)) cancelledEarly.add(key)
    },
    state: (key) => running.has(key) ? "running" : done.has(key) ? "done" : undefined,
    running: () => running.size
  }
}
