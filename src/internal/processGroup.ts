/**
 * Signals to the process group of a plugin started by `PluginProcess`'s Node launcher. The
 * launcher spawns every plugin detached, so the plugin leads a group of its own and a signal to
 * the group reaches the processes it started too.
 *
 * {@link signalGroup} sends one signal (to the leader alone when the group cannot be signalled),
 * {@link groupAlive} probes whether any member is left, and {@link terminateGroup} is what the
 * launcher runs at Scope close, after its stop sequence: whatever is left of the group gets
 * SIGTERM, then SIGKILL 200 ms later. A probe after a stop usually finds nothing, and Node reports
 * that as a thrown error: its stack trace is not captured, since that was most of the probe's
 * cost.
 *
 * @internal
 */
import type { ChildProcess } from "node:child_process"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** A signal the launcher sends, or `0`, which only probes. */
type GroupSignal = "SIGTERM" | "SIGKILL" | 0

// A frozen `Error` (a hardened realm) keeps its stack traces.
const stackTraceLimitWritable = (() => {
  const descriptor = Object.getOwnPropertyDescriptor(Error, "stackTraceLimit")
  return descriptor === undefined ? Object.isExtensible(Error) : descriptor.writable === true || descriptor.set !== undefined
})()

/**
 * `process.kill` of the group led by `pid`, without the stack trace of the error it throws.
 * Returns the error code, or undefined when the signal went.
 */
const killGroup = (pid: number, signal: GroupSignal): string | undefined => {
  const limit = Error.stackTraceLimit
  if (stackTraceLimitWritable) Error.stackTraceLimit = 0
  try {
    process.kill(-pid, signal)
    return undefined
  } catch (error) {
    return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : "EINVAL"
  } finally {
    if (stackTraceLimitWritable) Error.stackTraceLimit = limit
  }
}

/**
 * Signals the process group led by `pid` (the plugin and its children); the leader alone if
 * that fails.
 *
 * @internal
 */
export const signalGroup = (child: ChildProcess, pid: number, signal: "SIGTERM" | "SIGKILL"): void => {
  if (killGroup(pid, signal) === undefined) return
  try {
    child.kill(signal)
  } catch {
    // Nothing left to signal.
  }
}

/**
 * Whether any member of the process group led by `pid` is still there. EPERM means members
 * exist that we may not signal (zombies on some systems).
 *
 * @internal
 */
export const groupAlive = (pid: number): boolean => {
  const failure = killGroup(pid, 0)
  return failure === undefined || failure === "EPERM"
}

/** How long members left after SIGTERM get before SIGKILL. */
const termToKillMillis = 200
/** How often {@link terminateGroup} looks for members left after SIGTERM. */
const pollMillis = 20
const poll = Duration.millis(pollMillis)

/**
 * Ends whatever is left of the process group led by `pid`: SIGTERM, then SIGKILL to the members
 * still there 200 ms later (polled on the Clock). Nothing is sent to a group that is gone.
 *
 * @internal
 */
export const terminateGroup = (child: ChildProcess, pid: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (!groupAlive(pid)) return
    signalGroup(child, pid, "SIGTERM")
    for (let waited = 0; waited < termToKillMillis && groupAlive(pid); waited += pollMillis) yield* Effect.sleep(poll)
    if (groupAlive(pid)) signalGroup(child, pid, "SIGKILL")
  })
