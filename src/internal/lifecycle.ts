/**
 * A plugin client's life as one explicit state machine: the {@link Life} record, the
 * {@link LifeEvent}s that change it, and the one pure function {@link step} that turns a life
 * and an event into the next life and the {@link LifeAction}s to carry out.
 *
 * `PluginClient` holds one `Life` and changes it only by `step`: calls, `start`, `restart`,
 * `stop`, the idle timer, the backoff timer and every incarnation (one spawned process) report
 * events; the interpreter runs the actions (launch a process, retire one, settle the callers
 * waiting, publish state changes). Nothing here runs an effect or reads a clock: time and
 * randomness arrive inside events, so every transition is replayed in a table test.
 *
 * The rules it enforces:
 *
 * - **Generations.** Every launch takes the next generation. An event of an incarnation carries
 *   its generation; one from an older generation never changes the state of a newer one (a late
 *   `Ready` of a launch a stop abandoned only retires that process).
 * - **One live process.** A launch waits until every retiring process (a crashed, stopped,
 *   reaped or abandoned one) has been torn down (`Retired`), so a client never has two.
 * - **Shared starts.** Callers that need the plugin while it starts join that start (the way an
 *   `RcRef` shares its acquisition); a `restart` while starting joins it too (it is a fresh
 *   process already).
 * - **One restart decision.** A crash of the running incarnation or a failed start is recorded
 *   in the restart history and `RestartDecision.decide` says what follows: `Recovering` (the next
 *   call launches), `Backoff` (a restart is scheduled), or `Disabled`.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import type * as LifetimePolicy from "../LifetimePolicy.ts"
import type * as PluginClientError from "../PluginClientError.ts"
import type * as PluginEvent from "../PluginEvent.ts"
import * as RestartDecision from "./restartDecision.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/** What the machine needs to know of one incarnation (one spawned, handshaken process). */
export interface Generational {
  readonly generation: number
}

/**
 * The types the interpreter fills in: its incarnation, what a caller waiting for the plugin
 * holds (settled with the incarnation or a refusal), what a `stop` waits on, and what a call
 * that saw a crash waits on (whether the crash disabled the plugin).
 */
export interface Refs {
  readonly incarnation: Generational
  readonly waiter: unknown
  readonly settler: unknown
  readonly reply: unknown
}

/** Where the plugin stands, with what each stage is waiting for. */
export type Phase<T extends Refs> =
  | { readonly _tag: "Idle" }
  /**
   * Generation `generation` is being launched (`launched`), or will be once the retiring
   * processes are gone; `waiters` get it when it is ready.
   */
  | {
    readonly _tag: "Starting"
    readonly generation: number
    readonly launched: boolean
    readonly waiters: ReadonlyArray<T["waiter"]>
  }
  | { readonly _tag: "Running"; readonly incarnation: T["incarnation"] }
  /**
   * Waiting for the retiring processes to be gone; `then` says what follows: `Idle` (a reap,
   * `reaped` is the process it stopped), `Stopped` (a stop), or a new start for `waiters`
   * (a restart, or calls that came during a reap).
   */
  | {
    readonly _tag: "Stopping"
    readonly then: "Idle" | "Stopped" | "Start"
    readonly settlers: ReadonlyArray<T["settler"]>
    readonly waiters: ReadonlyArray<T["waiter"]>
    readonly reaped: T["incarnation"] | undefined
  }
  | { readonly _tag: "Recovering" }
  /** Waiting out a backoff until `until`; `waiters` are calls willing to wait that long for the restart. */
  | { readonly _tag: "Backoff"; readonly until: number; readonly waiters: ReadonlyArray<T["waiter"]> }
  | { readonly _tag: "Disabled"; readonly reason: string }
  | { readonly _tag: "Stopped" }

/** The phase without what it waits for: what `PluginClient` publishes as its `PluginState`. */
export type State = PluginEvent.PluginState

/** A client's whole life. */
export interface Life<T extends Refs> {
  readonly phase: Phase<T>
  /** Of the newest launch (0 before the first). */
  readonly generation: number
  /** Generations whose process is being torn down; a launch waits until there is none. */
  readonly retiring: ReadonlyArray<number>
  /** Set by `shutdown`: the client is done for good. */
  readonly closed: boolean
  readonly history: RestartDecision.RestartHistory
  readonly totalCrashes: number
  readonly lastError: PluginClientError.Reason | undefined
  /** The generation of the last crash recorded and whether it disabled the plugin. */
  readonly lastCrash: { readonly generation: number; readonly tripped: boolean } | undefined
  /** The stderr excerpt of the last process torn down. */
  readonly lastStderr: string
}

/** How a process ended, when it is known. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
}

/** What can happen to a client. */
export type LifeEvent<T extends Refs> =
  /** A call needs the plugin; it would wait for a restart due by `patience` (epoch ms). */
  | { readonly _tag: "Acquire"; readonly waiter: T["waiter"]; readonly patience: number }
  /** `start`: like a call, and also from `Stopped` or `Backoff` (without waiting it out). */
  | { readonly _tag: "Start"; readonly waiter: T["waiter"] }
  /** `restart`: stop the running process (if any) and start a new one. */
  | { readonly _tag: "Restart"; readonly waiter: T["waiter"] }
  /** `stop` (or `shutdown`, for good). */
  | { readonly _tag: "Stop"; readonly settler: T["settler"]; readonly shutdown: boolean }
  | { readonly _tag: "ClearDisabled" }
  /** A launch is done: the process runs and answered the handshake. */
  | { readonly _tag: "Ready"; readonly incarnation: T["incarnation"] }
  /** A launch failed (its process, if any, is already torn down). */
  | {
    readonly _tag: "StartFailed"
    readonly generation: number
    readonly failure: PluginClientError.Reason
    /** What the process wrote to stderr, if it got that far. */
    readonly stderr: string | undefined
    readonly now: number
    readonly random: number
  }
  /** A running process crashed: it exited, its connection broke, or it timed out too often. */
  | {
    readonly _tag: "Crashed"
    readonly generation: number
    readonly failure: PluginClientError.Reason
    /** What the process wrote to stderr so far (its teardown reports the rest). */
    readonly stderr: string
    readonly exit: ExitStatus | undefined
    readonly now: number
    readonly random: number
    readonly reply: T["reply"] | undefined
  }
  /** A retiring process (or an abandoned launch) is gone. */
  | { readonly _tag: "Retired"; readonly generation: number; readonly stderr: string | undefined }
  | { readonly _tag: "IdleExpired"; readonly generation: number }
  | { readonly _tag: "BackoffExpired"; readonly until: number }

/** Why a caller is turned away. */
export type Refusal =
  | { readonly _tag: "Disabled"; readonly reason: string }
  | { readonly _tag: "Stopped"; readonly shutDown: boolean }
  | { readonly _tag: "Stopping" }
  | { readonly _tag: "Backoff"; readonly until: number }
  /** The start they waited for failed; `tripped` when its crash disabled the plugin. */
  | { readonly _tag: "StartFailed"; readonly failure: PluginClientError.Reason; readonly tripped: boolean }

/** What the interpreter does after a step, in order. */
export type LifeAction<T extends Refs> =
  | { readonly _tag: "Launch"; readonly generation: number }
  /** Abandon a launch in progress (its process is torn down; `Retired` follows). */
  | { readonly _tag: "Abort"; readonly generation: number }
  /** Tear a process down (`graceful`: the full stop sequence; else at once); `Retired` follows. */
  | { readonly _tag: "Retire"; readonly incarnation: T["incarnation"]; readonly graceful: boolean }
  | { readonly _tag: "Admit"; readonly waiters: ReadonlyArray<T["waiter"]>; readonly incarnation: T["incarnation"] }
  | { readonly _tag: "Refuse"; readonly waiters: ReadonlyArray<T["waiter"]>; readonly refusal: Refusal }
  | { readonly _tag: "Settle"; readonly settlers: ReadonlyArray<T["settler"]> }
  | { readonly _tag: "Answer"; readonly reply: T["reply"]; readonly tripped: boolean }
  | { readonly _tag: "Changed"; readonly from: State; readonly to: State }
  /** A crash was recorded: publish it, close the dead plugin's stream channels, log `decision`. */
  | {
    readonly _tag: "Crash"
    readonly generation: number
    readonly failure: PluginClientError.Reason
    readonly exit: ExitStatus | undefined
    readonly decision: RestartDecision.RestartDecision
  }
  | { readonly _tag: "Up"; readonly incarnation: T["incarnation"] }
  | { readonly _tag: "Reaped"; readonly incarnation: T["incarnation"] }
  | { readonly _tag: "ScheduleRestart"; readonly until: number }
  | { readonly _tag: "CancelRestart" }
  | { readonly _tag: "DisarmIdle" }
  /** A stop without a running process: close the stream channels a crashed one left open. */
  | { readonly _tag: "CloseStreams" }

/** What `step` returns. */
export type Step<T extends Refs> = readonly [Life<T>, ReadonlyArray<LifeAction<T>>]

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

/** A client that has not launched anything yet. */
export const initial = <T extends Refs>(): Life<T> => ({
  phase: { _tag: "Idle" },
  generation: 0,
  retiring: [],
  closed: false,
  history: RestartDecision.empty,
  totalCrashes: 0,
  lastError: undefined,
  lastCrash: undefined,
  lastStderr: ""
})

// ---------------------------------------------------------------------------------------------
// reading
// ---------------------------------------------------------------------------------------------

/** The public view of a phase. */
export const stateOf = <T extends Refs>(phase: Phase<T>): State => {
  switch (phase._tag) {
    case "Starting":
      return starting
    case "Running":
      return running
    case "Stopping":
      return stopping
    case "Backoff":
      return { _tag: "Backoff", until: phase.until }
    default:
      return phase
  }
}
const starting: State = { _tag: "Starting" }
const running: State = { _tag: "Running" }
const stopping: State = { _tag: "Stopping" }

/** The running incarnation, if the plugin runs. */
export const runningIncarnation = <T extends Refs>(life: Life<T>): T["incarnation"] | undefined =>
  life.phase._tag === "Running" ? life.phase.incarnation : undefined

/** Why the phase turns a call away, if it does (a start or a reap in progress is waited for). */
export const refusalOf = <T extends Refs>(life: Life<T>): Refusal | undefined => {
  const phase = life.phase
  if (life.closed) return { _tag: "Stopped", shutDown: true }
  switch (phase._tag) {
    case "Disabled":
      return { _tag: "Disabled", reason: phase.reason }
    case "Stopped":
      return { _tag: "Stopped", shutDown: false }
    case "Stopping":
      return phase.then === "Stopped" ? { _tag: "Stopping" } : undefined
    case "Backoff":
      return { _tag: "Backoff", until: phase.until }
    default:
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// the step
// ---------------------------------------------------------------------------------------------

/** The next life and what to do, for one event. */
export const step = <T extends Refs>(life: Life<T>, event: LifeEvent<T>, policy: LifetimePolicy.LifetimePolicy): Step<T> => {
  switch (event._tag) {
    case "Acquire":
      return acquire(life, event.waiter, event.patience)
    case "Start":
      return start(life, event.waiter)
    case "Restart":
      return restart(life, event.waiter)
    case "Stop":
      return stop(life, event.settler, event.shutdown)
    case "ClearDisabled":
      return clearDisabled(life)
    case "Ready":
      return ready(life, event.incarnation)
    case "StartFailed":
      return startFailed(life, event, policy)
    case "Crashed":
      return crashed(life, event, policy)
    case "Retired":
      return retired(life, event.generation, event.stderr)
    case "IdleExpired":
      return idleExpired(life, event.generation)
    case "BackoffExpired":
      return life.phase._tag === "Backoff" && life.phase.until === event.until && !life.closed
        ? beginStart(life, life.phase.waiters)
        : [life, []]
  }
}

const moveTo = <T extends Refs>(life: Life<T>, phase: Phase<T>, changes?: Partial<Life<T>>): Step<T> => {
  const from = stateOf(life.phase)
  const to = stateOf(phase)
  const next: Life<T> = { ...life, ...changes, phase }
  return [next, sameState(from, to) ? [] : [{ _tag: "Changed", from, to }]]
}

/** A change of `Backoff` or `Disabled` to another of the same tag is still a change. */
const sameState = (from: State, to: State): boolean => from === to || (from._tag === to._tag && from._tag !== "Backoff" && from._tag !== "Disabled")

const andThen = <T extends Refs>([life, actions]: Step<T>, ...more: ReadonlyArray<LifeAction<T>>): Step<T> => [life, [...actions, ...more]]

const chain = <T extends Refs>([life, actions]: Step<T>, next: (life: Life<T>) => Step<T>): Step<T> => {
  const [after, more] = next(life)
  return [after, [...actions, ...more]]
}

/** A new generation: launched now, or once the retiring processes are gone. */
const beginStart = <T extends Refs>(life: Life<T>, waiters: ReadonlyArray<T["waiter"]>): Step<T> => {
  const generation = life.generation + 1
  const launched = life.retiring.length === 0
  const step = moveTo(life, { _tag: "Starting", generation, launched, waiters }, { generation })
  return launched ? andThen(step, { _tag: "Launch", generation }) : step
}

const acquire = <T extends Refs>(life: Life<T>, waiter: T["waiter"], patience: number): Step<T> => {
  const phase = life.phase
  if (phase._tag === "Backoff" && !life.closed && phase.until <= patience) {
    // The restart is due before the caller would give up: it waits for it.
    return [{ ...life, phase: { ...phase, waiters: [...phase.waiters, waiter] } }, []]
  }
  const refusal = refusalOf(life)
  if (refusal !== undefined) return [life, [{ _tag: "Refuse", waiters: [waiter], refusal }]]
  switch (phase._tag) {
    case "Running":
      return [life, [{ _tag: "Admit", waiters: [waiter], incarnation: phase.incarnation }]]
    case "Starting":
      return [{ ...life, phase: { ...phase, waiters: [...phase.waiters, waiter] } }, []]
    case "Stopping":
      // A reap (or a restart) in progress: the call waits for it and starts the plugin again.
      return [{ ...life, phase: { ...phase, then: "Start", waiters: [...phase.waiters, waiter] } }, []]
    default:
      return beginStart(life, [waiter])
  }
}

const start = <T extends Refs>(life: Life<T>, waiter: T["waiter"]): Step<T> => {
  const phase = life.phase
  if (life.closed) return [life, [{ _tag: "Refuse", waiters: [waiter], refusal: { _tag: "Stopped", shutDown: true } }]]
  switch (phase._tag) {
    case "Stopped":
      return startAfresh(life, [waiter])
    case "Backoff":
      return prepend([{ _tag: "CancelRestart" }], startAfresh(life, [...phase.waiters, waiter]))
    case "Stopping":
      return [{ ...life, phase: { ...phase, then: "Start", waiters: [...phase.waiters, waiter] } }, []]
    default:
      return acquire(life, waiter, Number.NEGATIVE_INFINITY)
  }
}

/** A start the host asked for, from a state that does not start by itself: through `Idle`. */
const startAfresh = <T extends Refs>(life: Life<T>, waiters: ReadonlyArray<T["waiter"]>): Step<T> =>
  chain(moveTo(life, { _tag: "Idle" }), (idle) => beginStart(idle, waiters))

const restart = <T extends Refs>(life: Life<T>, waiter: T["waiter"]): Step<T> => {
  const phase = life.phase
  if (life.closed) return [life, [{ _tag: "Refuse", waiters: [waiter], refusal: { _tag: "Stopped", shutDown: true } }]]
  switch (phase._tag) {
    case "Disabled":
      return [life, [{ _tag: "Refuse", waiters: [waiter], refusal: { _tag: "Disabled", reason: phase.reason } }]]
    case "Running":
      return retireThen(life, phase.incarnation, { _tag: "Stopping", then: "Start", settlers: [], waiters: [waiter], reaped: undefined })
    case "Starting":
      return [{ ...life, phase: { ...phase, waiters: [...phase.waiters, waiter] } }, []]
    case "Stopping":
      return [{ ...life, phase: { ...phase, then: "Start", waiters: [...phase.waiters, waiter] } }, []]
    case "Backoff":
      return prepend([{ _tag: "CancelRestart" }], startAfresh(life, [...phase.waiters, waiter]))
    default:
      return startAfresh(life, [waiter])
  }
}

/** Moves to a `Stopping` phase that waits for `incarnation` to be torn down with the full stop sequence. */
const retireThen = <T extends Refs>(life: Life<T>, incarnation: T["incarnation"], phase: Phase<T>): Step<T> =>
  andThen(
    moveTo(life, phase, { retiring: [...life.retiring, incarnation.generation] }),
    { _tag: "DisarmIdle" },
    { _tag: "Retire", incarnation, graceful: true }
  )

const stop = <T extends Refs>(life: Life<T>, settler: T["settler"], shutdown: boolean): Step<T> => {
  const closing: Life<T> = shutdown && !life.closed ? { ...life, closed: true } : life
  const phase = closing.phase
  const cancel: ReadonlyArray<LifeAction<T>> = [{ _tag: "CancelRestart" }, { _tag: "DisarmIdle" }]
  const refusal: Refusal = { _tag: "Stopped", shutDown: closing.closed }
  const stopping: Phase<T> = { _tag: "Stopping", then: "Stopped", settlers: [settler], waiters: [], reaped: undefined }
  switch (phase._tag) {
    case "Stopped":
      return [closing, [...cancel, { _tag: "Settle", settlers: [settler] }]]
    case "Running":
      return prepend(cancel, retireThen(closing, phase.incarnation, stopping))
    case "Starting": {
      if (!phase.launched) return prepend([...cancel, { _tag: "Refuse", waiters: phase.waiters, refusal }], moveTo(closing, stopping))
      const aborting = moveTo(closing, stopping, { retiring: [...closing.retiring, phase.generation] })
      return prepend([...cancel, { _tag: "Abort", generation: phase.generation }, { _tag: "Refuse", waiters: phase.waiters, refusal }], aborting)
    }
    case "Stopping":
      return [
        { ...closing, phase: { ...phase, then: "Stopped", settlers: [...phase.settlers, settler], waiters: [] } },
        [...cancel, { _tag: "Refuse", waiters: phase.waiters, refusal }]
      ]
    default: {
      // Nothing runs; a crashed process may still be on its way out: the stop waits for it.
      const [waiting, actions] = moveTo(closing, stopping)
      const refused: ReadonlyArray<LifeAction<T>> = phase._tag === "Backoff" ? [{ _tag: "Refuse", waiters: phase.waiters, refusal }] : []
      return prepend([...cancel, ...refused], closing.retiring.length > 0 ? [waiting, actions] : stopped(waiting, [settler], actions))
    }
  }
}

const prepend = <T extends Refs>(first: ReadonlyArray<LifeAction<T>>, [life, actions]: Step<T>): Step<T> => [life, [...first, ...actions]]

/** The end of a stop: `Stopped`, the stop's callers settled, the dead plugin's channels closed. */
const stopped = <T extends Refs>(life: Life<T>, settlers: ReadonlyArray<T["settler"]>, before: ReadonlyArray<LifeAction<T>>): Step<T> => {
  const [next, actions] = moveTo(life, { _tag: "Stopped" })
  return [next, [...before, ...actions, { _tag: "CloseStreams" }, { _tag: "Settle", settlers }]]
}

const clearDisabled = <T extends Refs>(life: Life<T>): Step<T> => {
  const cleared: Life<T> = { ...life, history: RestartDecision.cleared(life.history) }
  return life.phase._tag === "Disabled" ? moveTo(cleared, { _tag: "Idle" }) : [cleared, []]
}

const ready = <T extends Refs>(life: Life<T>, incarnation: T["incarnation"]): Step<T> => {
  const phase = life.phase
  if (phase._tag !== "Starting" || phase.generation !== incarnation.generation) {
    // A launch a stop abandoned finished anyway: its process goes (the abort's `Retired` is its).
    return [life, [{ _tag: "Retire", incarnation, graceful: false }]]
  }
  // A successful (re)initialize ends the run of consecutive crashes (the Paperclip rule).
  const [next, actions] = moveTo(life, { _tag: "Running", incarnation }, { history: RestartDecision.started(life.history) })
  return [next, [...actions, { _tag: "Up", incarnation }, { _tag: "Admit", waiters: phase.waiters, incarnation }]]
}

/** Records a crash at `now` and moves to what the decision says. */
const recordCrash = <T extends Refs>(
  life: Life<T>,
  generation: number,
  crash: { readonly failure: PluginClientError.Reason; readonly exit: ExitStatus | undefined; readonly now: number; readonly random: number },
  policy: LifetimePolicy.LifetimePolicy
): readonly [Step<T>, boolean] => {
  const [history, decision] = RestartDecision.afterCrash(policy, life.history, crash.now, crash.random)
  const tripped = decision._tag === "Disable"
  const recorded: Partial<Life<T>> = {
    history,
    totalCrashes: life.totalCrashes + 1,
    lastError: crash.failure,
    lastCrash: { generation, tripped }
  }
  const report: LifeAction<T> = { _tag: "Crash", generation, failure: crash.failure, exit: crash.exit, decision }
  switch (decision._tag) {
    case "Disable": {
      const reason = `${RestartDecision.describeDisableReason(decision.reason)}; last: ${crash.failure.message}`
      const [next, actions] = moveTo(life, { _tag: "Disabled", reason }, recorded)
      return [[next, [report, ...actions]], tripped]
    }
    case "Recover": {
      const [next, actions] = moveTo(life, { _tag: "Recovering" }, recorded)
      return [[next, [report, ...actions]], tripped]
    }
    case "Backoff": {
      const until = crash.now + Duration.toMillis(decision.delay)
      const [next, actions] = moveTo(life, { _tag: "Backoff", until, waiters: [] }, recorded)
      return [[next, [report, ...actions, { _tag: "ScheduleRestart", until }]], tripped]
    }
  }
}

const startFailed = <T extends Refs>(
  life: Life<T>,
  event: Extract<LifeEvent<T>, { readonly _tag: "StartFailed" }>,
  policy: LifetimePolicy.LifetimePolicy
): Step<T> => {
  const phase = life.phase
  // The launch tore its own process down before it failed.
  const gone = retiredOnly(life, event.generation)
  if (phase._tag !== "Starting" || phase.generation !== event.generation) return retired(life, event.generation, undefined)
  const withStderr = event.stderr === undefined ? gone : { ...gone, lastStderr: event.stderr }
  const [[next, actions], tripped] = recordCrash(withStderr, event.generation, { ...event, exit: undefined }, policy)
  return [next, [...actions, { _tag: "Refuse", waiters: phase.waiters, refusal: { _tag: "StartFailed", failure: event.failure, tripped } }]]
}

const crashed = <T extends Refs>(
  life: Life<T>,
  event: Extract<LifeEvent<T>, { readonly _tag: "Crashed" }>,
  policy: LifetimePolicy.LifetimePolicy
): Step<T> => {
  const phase = life.phase
  if (phase._tag !== "Running" || phase.incarnation.generation !== event.generation) {
    // History: an older process, or one the host is already stopping. Its caller learns what the
    // crash it saw decided, if that one was recorded.
    const tripped = life.lastCrash?.generation === event.generation && life.lastCrash.tripped
    return [life, event.reply === undefined ? [] : [{ _tag: "Answer", reply: event.reply, tripped }]]
  }
  const retiring: Life<T> = { ...life, retiring: [...life.retiring, event.generation], lastStderr: event.stderr }
  const [[next, actions], tripped] = recordCrash(retiring, event.generation, event, policy)
  const answer: ReadonlyArray<LifeAction<T>> = event.reply === undefined ? [] : [{ _tag: "Answer", reply: event.reply, tripped }]
  return [next, [{ _tag: "DisarmIdle" }, { _tag: "Retire", incarnation: phase.incarnation, graceful: false }, ...actions, ...answer]]
}

const retiredOnly = <T extends Refs>(life: Life<T>, generation: number): Life<T> =>
  life.retiring.includes(generation) ? { ...life, retiring: life.retiring.filter((g) => g !== generation) } : life

/** A retiring process is gone: what waited for the last of them goes on. */
const retired = <T extends Refs>(life: Life<T>, generation: number, stderr: string | undefined): Step<T> => {
  const gone = retiredOnly(life, generation)
  const next = stderr === undefined ? gone : { ...gone, lastStderr: stderr }
  if (next.retiring.length > 0) return [next, []]
  const phase = next.phase
  switch (phase._tag) {
    case "Starting":
      return phase.launched
        ? [next, []]
        : [{ ...next, phase: { ...phase, launched: true } }, [{ _tag: "Launch", generation: phase.generation }]]
    case "Stopping":
      return afterStopping(next, phase)
    default:
      return [next, []]
  }
}

const afterStopping = <T extends Refs>(life: Life<T>, phase: Extract<Phase<T>, { readonly _tag: "Stopping" }>): Step<T> => {
  const settle: ReadonlyArray<LifeAction<T>> = phase.settlers.length === 0 ? [] : [{ _tag: "Settle", settlers: phase.settlers }]
  const reaped: ReadonlyArray<LifeAction<T>> = phase.reaped === undefined ? [] : [{ _tag: "Reaped", incarnation: phase.reaped }]
  switch (phase.then) {
    case "Stopped":
      return stopped(life, phase.settlers, [])
    case "Idle":
      return andThen(moveTo(life, { _tag: "Idle" }), ...reaped, ...settle)
    case "Start":
      return andThen(chain(andThen(moveTo(life, { _tag: "Idle" }), ...reaped), (idle) => beginStart(idle, phase.waiters)), ...settle)
  }
}

const idleExpired = <T extends Refs>(life: Life<T>, generation: number): Step<T> => {
  const phase = life.phase
  if (phase._tag !== "Running" || phase.incarnation.generation !== generation) return [life, []]
  return retireThen(life, phase.incarnation, { _tag: "Stopping", then: "Idle", settlers: [], waiters: [], reaped: phase.incarnation })
}
