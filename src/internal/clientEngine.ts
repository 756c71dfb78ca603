/**
 * The interpreter of `lifecycle.ts` for one client: it holds the client's one `Life`, feeds it
 * every event through `Lifecycle.step` (the only writer), and carries out the actions the step
 * returns: launching and retiring incarnations on fibers the client's scope owns, settling the
 * callers that wait, publishing events, scheduling the backoff restart and the idle reap.
 *
 * Events are applied one at a time, in the order they arrive: an event reported while another
 * is being applied (a fiber started by an action may report at once) waits in the mailbox and is
 * applied right after. Applying an event never waits: the step is pure and the actions either
 * happen at once (settle a `Deferred`, publish, fork) or return a tail (logs, the user's stream
 * handler) that the reporter runs afterwards.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"
import type * as Metric from "effect/Metric"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import type * as LifetimePolicy from "../LifetimePolicy.ts"
import * as PluginClientError from "../PluginClientError.ts"
import type * as PluginEvent from "../PluginEvent.ts"
import { formatDuration } from "./formatDuration.ts"
import * as IdleTimer from "./idleTimer.ts"
import * as Incarnation from "./incarnation.ts"
import * as Lifecycle from "./lifecycle.ts"
import * as RestartDecision from "./restartDecision.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/** The lifecycle's references, as this interpreter fills them in. */
export interface ClientRefs {
  readonly incarnation: Incarnation.Incarnation
  readonly waiter: Deferred.Deferred<Incarnation.Incarnation, PluginClientError.PluginClientError>
  readonly settler: Deferred.Deferred<void>
  readonly reply: Deferred.Deferred<boolean>
}

/** One client's life. */
export type ClientLife = Lifecycle.Life<ClientRefs>

/** The events of a plugin's life this interpreter publishes. */
export type LifeNews = Extract<PluginEvent.PluginEvent, { readonly _tag: "Ready" | "Exit" | "Crash" | "StateChanged" | "Reaped" }>

/** What the engine needs from the client that runs it. */
export interface Options {
  readonly name: string
  readonly policy: LifetimePolicy.LifetimePolicy
  readonly launcher: Incarnation.Launcher
  readonly publish: (news: LifeNews) => void
  /** Closes the stream channels a dead plugin left open (publishes now, returns the handlers' tail). */
  readonly closeOpenStreams: () => Effect.Effect<void>
  /** A new process begins (clear what the previous one left). */
  readonly onLaunch: (generation: number) => void
  /** A launch spawned its process. */
  readonly onSpawned: () => void
  /** The process of `incarnation` is up. */
  readonly onUp: (incarnation: Incarnation.Incarnation) => void
  /** Forks `effect` on a fiber the client's scope owns, in the client's context. */
  readonly run: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
  /** Where the exit watchers live (they outlive the incarnation's own scope). */
  readonly scope: Scope.Scope
  readonly clock: Clock.Clock
  readonly busy: () => boolean
  readonly crashes: Metric.Metric<number, unknown>
  readonly reaps: Metric.Metric<number, unknown>
  /** The context metrics are updated in. */
  readonly context: Context.Context<never>
  readonly annotate: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly logDebug: (message: string) => Effect.Effect<void>
}

/** A running engine. */
export interface Engine {
  readonly life: () => ClientLife
  /** The running incarnation, if the plugin runs. */
  readonly running: () => Incarnation.Incarnation | undefined
  /** The running incarnation, launching one if needed; waits for a restart due by `patience`. */
  readonly acquire: (patience: number) => Effect.Effect<Incarnation.Incarnation, PluginClientError.PluginClientError>
  readonly start: Effect.Effect<void, PluginClientError.PluginClientError>
  readonly restart: Effect.Effect<void, PluginClientError.PluginClientError>
  readonly stop: (shutdown: boolean) => Effect.Effect<void>
  readonly clearDisabled: Effect.Effect<void>
  /**
   * Reports the crash of `incarnation` (only the running one's counts); resolves to whether it
   * disabled the plugin. Whoever sees a crash first reports it; later reporters learn the same.
   */
  readonly crash: (incarnation: Incarnation.Incarnation, failure: PluginClientError.Reason) => Effect.Effect<boolean>
  readonly idle: IdleTimer.IdleTimer
  readonly fail: (reason: PluginClientError.Reason) => PluginClientError.PluginClientError
  readonly capExceeded: () => PluginClientError.PluginClientError
}

type Action = Lifecycle.LifeAction<ClientRefs>
/** A caller's wait, ended after the step that ends it. */
type Settlement = () => void
type Event = Lifecycle.LifeEvent<ClientRefs>

/** The engine's own record: the life, the mailbox, and the fibers its actions started. */
interface Machine {
  readonly options: Options
  life: ClientLife
  readonly mailbox: Array<Event>
  applying: boolean
  launching: { readonly generation: number; readonly fiber: Fiber.Fiber<void> } | undefined
  restartTimer: Fiber.Fiber<void> | undefined
  readonly idle: IdleTimer.IdleTimer
}

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

/** Starts an engine for one client. */
export const make = (options: Options): Engine => {
  const machine: Machine = {
    options,
    life: Lifecycle.initial(),
    mailbox: [],
    applying: false,
    launching: undefined,
    restartTimer: undefined,
    idle: IdleTimer.make({
      idleTimeout: options.policy.idleTimeout,
      clock: options.clock,
      run: options.run,
      running: () => Lifecycle.runningIncarnation(machine.life)?.generation,
      busy: options.busy,
      expire: (generation) => dispatch(machine, { _tag: "IdleExpired", generation })
    })
  }
  const waitFor = (event: (waiter: ClientRefs["waiter"]) => Event) =>
    Effect.suspend(() => {
      const waiter = Deferred.makeUnsafe<Incarnation.Incarnation, PluginClientError.PluginClientError>()
      return Effect.andThen(dispatch(machine, event(waiter)), Deferred.await(waiter))
    })
  return {
    life: () => machine.life,
    running: () => Lifecycle.runningIncarnation(machine.life),
    acquire: (patience) => waitFor((waiter) => ({ _tag: "Acquire", waiter, patience })),
    start: Effect.asVoid(waitFor((waiter) => ({ _tag: "Start", waiter }))),
    restart: Effect.asVoid(waitFor((waiter) => ({ _tag: "Restart", waiter }))),
    stop: (shutdown) =>
      Effect.suspend(() => {
        const settler = Deferred.makeUnsafe<void>()
        return Effect.andThen(dispatch(machine, { _tag: "Stop", settler, shutdown }), Deferred.await(settler))
      }).pipe(Effect.uninterruptible),
    clearDisabled: dispatch(machine, { _tag: "ClearDisabled" }),
    crash: (incarnation, failure) => crash(machine, incarnation, failure),
    idle: machine.idle,
    fail: (reason) => fail(machine, reason),
    capExceeded: () => capExceeded(machine)
  }
}

const fail = (machine: Machine, reason: PluginClientError.Reason) => PluginClientError.make(machine.options.name, reason)

const capExceeded = (machine: Machine) => {
  const policy = machine.options.policy
  return fail(machine, new PluginClientError.RestartCapExceeded({ cap: policy.restartCap, window: policy.restartWindow }))
}

// ---------------------------------------------------------------------------------------------
// the one writer
// ---------------------------------------------------------------------------------------------

/** Applies `event` and every event reported meanwhile; returns the tails of their actions. */
const dispatch = (machine: Machine, event: Event): Effect.Effect<void> =>
  Effect.suspend(() => {
    machine.mailbox.push(event)
    if (machine.applying) return Effect.void
    machine.applying = true
    const tails: Array<Effect.Effect<void>> = []
    const settled: Array<Settlement> = []
    try {
      for (let next = machine.mailbox.shift(); next !== undefined; next = machine.mailbox.shift()) {
        const [life, actions] = Lifecycle.step(machine.life, next, machine.options.policy)
        machine.life = life
        for (const action of actions) {
          const tail = perform(machine, action, settled)
          if (tail !== undefined) tails.push(tail)
        }
      }
    } finally {
      machine.applying = false
    }
    // Completing a Deferred resumes its waiter at once, and a waiter may report the next event
    // (a caller told "stopped" may `start`): waiters are settled once the mailbox is empty.
    for (const settle of settled) settle()
    return tails.length === 0 ? Effect.void : Effect.forEach(tails, (tail) => tail, { discard: true })
  })

/** Carries out one action: at once, or as a tail for the reporter to run. */
const perform = (machine: Machine, action: Action, settled: Array<Settlement>): Effect.Effect<void> | undefined => {
  const options = machine.options
  switch (action._tag) {
    case "Launch":
      return launch(machine, action.generation)
    case "Abort":
      if (machine.launching?.generation === action.generation) machine.launching.fiber.interruptUnsafe()
      return undefined
    case "Retire":
      options.run(Effect.flatMap(Incarnation.teardown(options.launcher, action.incarnation, action.graceful), (stderr) =>
        dispatch(machine, { _tag: "Retired", generation: action.incarnation.generation, stderr })))
      return undefined
    case "Admit":
      for (const waiter of action.waiters) settled.push(() => Deferred.doneUnsafe(waiter, Effect.succeed(action.incarnation)))
      return undefined
    case "Refuse": {
      const error = refused(machine, action.refusal)
      for (const waiter of action.waiters) settled.push(() => Deferred.doneUnsafe(waiter, Effect.fail(error)))
      return undefined
    }
    case "Settle":
      for (const settler of action.settlers) settled.push(() => Deferred.doneUnsafe(settler, Effect.void))
      return undefined
    case "Answer":
      settled.push(() => Deferred.doneUnsafe(action.reply, Effect.succeed(action.tripped)))
      return undefined
    default:
      return announce(machine, action)
  }
}

/** The actions that tell the world (events, logs, metrics) or set a timer. */
const announce = (machine: Machine, action: Action): Effect.Effect<void> | undefined => {
  const { name, policy, clock } = machine.options
  const options = machine.options
  switch (action._tag) {
    case "Changed":
      options.publish({ _tag: "StateChanged", plugin: name, from: action.from, to: action.to })
      return options.logDebug(`state ${action.from._tag} → ${action.to._tag}`)
    case "Crash":
      return crashed(machine, action)
    case "Up":
      options.onUp(action.incarnation)
      options.publish({ _tag: "Ready", plugin: name, pid: action.incarnation.process.pid, generation: action.incarnation.generation })
      machine.idle.arm(clock.currentTimeMillisUnsafe())
      return undefined
    case "Reaped":
      options.reaps.updateUnsafe(1, options.context)
      options.publish({ _tag: "Reaped", plugin: name, pid: action.incarnation.process.pid, generation: action.incarnation.generation })
      return options.annotate(Effect.logInfo(`idle for ${policy.idleTimeout === undefined ? "ever" : formatDuration(policy.idleTimeout)}; stopped`))
    case "ScheduleRestart":
      return scheduleRestart(machine, action.until)
    case "CancelRestart":
      machine.restartTimer?.interruptUnsafe()
      machine.restartTimer = undefined
      return undefined
    case "DisarmIdle":
      machine.idle.disarm()
      return undefined
    case "CloseStreams":
      return options.closeOpenStreams()
    default:
      return undefined
  }
}

/** The error a refused caller gets. */
const refused = (machine: Machine, refusal: Lifecycle.Refusal): PluginClientError.PluginClientError => {
  switch (refusal._tag) {
    case "Disabled":
      return fail(machine, new PluginClientError.Disabled({ reason: refusal.reason }))
    case "Stopped":
      return fail(machine, new PluginClientError.Closed({ detail: refusal.shutDown ? "the client is shut down" : "the plugin is stopped" }))
    case "Stopping":
      return fail(machine, new PluginClientError.Closed({ detail: "the plugin is stopping" }))
    case "Backoff": {
      const lastError = machine.life.lastError
      return fail(machine, new PluginClientError.Unavailable({
        detail: `restarting after a crash, at ${new Date(refusal.until).toISOString()}${lastError === undefined ? "" : ` (last error: ${lastError.message})`}`,
        nextRestartAt: refusal.until
      }))
    }
    case "StartFailed":
      return refusal.tripped ? capExceeded(machine) : fail(machine, refusal.failure)
  }
}

// ---------------------------------------------------------------------------------------------
// actions that start fibers
// ---------------------------------------------------------------------------------------------

const crashFacts = Effect.all({ now: Clock.currentTimeMillis, random: Random.next })

/**
 * Launches a generation on a fiber of its own: `Ready` when it is up, `StartFailed` when it
 * failed, `Retired` when a stop abandoned it (its process is gone either way). The launch yields
 * first, so it never reports inside the step that started it.
 */
const launch = (machine: Machine, generation: number): undefined => {
  const options = machine.options
  options.onLaunch(generation)
  const launched = Effect.andThen(Effect.yieldNow, Incarnation.launch(options.launcher, generation, options.onSpawned))
  const fiber = options.run(Effect.uninterruptibleMask((restore) =>
    restore(launched).pipe(
      Effect.matchCauseEffect({
        onSuccess: (incarnation) => Effect.andThen(watch(machine, incarnation), dispatch(machine, { _tag: "Ready", incarnation })),
        onFailure: (cause) => {
          const failure = cause.reasons.find((reason) => reason._tag === "Fail")
          if (failure === undefined) return dispatch(machine, { _tag: "Retired", generation, stderr: undefined })
          const stderr = failure.error._tag === "InitFailed" ? failure.error.stderrExcerpt : undefined
          return Effect.flatMap(crashFacts, ({ now, random }) =>
            dispatch(machine, { _tag: "StartFailed", generation, failure: failure.error, stderr, now, random }))
        }
      }),
      Effect.ensuring(Effect.sync(() => {
        if (machine.launching?.generation === generation) machine.launching = undefined
      }))
    )
  ))
  if (fiber.pollUnsafe() === undefined) machine.launching = { generation, fiber }
  return undefined
}

/** Watches a running process for its end: a crash unless the host ended it; then its `Exit`. */
const watch = (machine: Machine, incarnation: Incarnation.Incarnation): Effect.Effect<void> =>
  incarnation.peer.ended.pipe(
    // A stop's end is not a crash: its reason is not even built.
    Effect.andThen(Effect.suspend(() =>
      Lifecycle.runningIncarnation(machine.life) !== incarnation
        ? Effect.void
        : Effect.flatMap(incarnation.peer.closed, (reason) =>
          reason._tag === "Exited" && reason.requested ? Effect.void : crash(machine, incarnation, reason))
    )),
    Effect.andThen(incarnation.process.exit),
    Effect.flatMap((exit) =>
      Effect.sync(() =>
        machine.options.publish({
          _tag: "Exit",
          plugin: machine.options.name,
          pid: incarnation.process.pid,
          generation: incarnation.generation,
          ...exit
        })
      )
    ),
    Effect.forkIn(machine.options.scope),
    Effect.asVoid
  )

const scheduleRestart = (machine: Machine, until: number): undefined => {
  const options = machine.options
  machine.restartTimer?.interruptUnsafe()
  const delay = Math.max(0, until - options.clock.currentTimeMillisUnsafe())
  machine.restartTimer = options.run(Effect.andThen(Effect.sleep(Duration.millis(delay)), dispatch(machine, { _tag: "BackoffExpired", until })))
  return undefined
}

// ---------------------------------------------------------------------------------------------
// crashes
// ---------------------------------------------------------------------------------------------

/** Reports the crash of `incarnation` (see `Engine.crash`). */
const crash = (machine: Machine, incarnation: Incarnation.Incarnation, failure: PluginClientError.Reason): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    if (Lifecycle.runningIncarnation(machine.life) !== incarnation) {
      const last = machine.life.lastCrash
      return Effect.succeed(last !== undefined && last.generation === incarnation.generation && last.tripped)
    }
    const reply = Deferred.makeUnsafe<boolean>()
    const exit = failure._tag === "Exited" ? { code: failure.code, signal: failure.signal } : undefined
    return Effect.all({ facts: crashFacts, stderr: incarnation.process.stderrExcerpt }).pipe(
      Effect.flatMap(({ facts: { now, random }, stderr }) =>
        dispatch(machine, { _tag: "Crashed", generation: incarnation.generation, failure, stderr, exit, now, random, reply })),
      Effect.andThen(Deferred.await(reply))
    )
  })

/** A recorded crash: counted, published, the dead plugin's channels closed, logged. */
const crashed = (machine: Machine, action: Extract<Action, { readonly _tag: "Crash" }>): Effect.Effect<void> => {
  const options = machine.options
  const { failure, decision } = action
  options.crashes.updateUnsafe(1, options.context)
  const streams = options.closeOpenStreams()
  options.publish({
    _tag: "Crash",
    plugin: options.name,
    generation: action.generation,
    reason: failure.message,
    code: action.exit?.code ?? null,
    signal: action.exit?.signal ?? null,
    willRestart: decision._tag !== "Disable"
  })
  return Effect.andThen(streams, options.annotate(crashLog(failure.message, decision)))
}

const crashLog = (detail: string, decision: RestartDecision.RestartDecision): Effect.Effect<void> => {
  switch (decision._tag) {
    case "Disable":
      return Effect.logError(`disabled: ${RestartDecision.describeDisableReason(decision.reason)}; last: ${detail}`)
    case "Recover":
      return Effect.logWarning(`crashed: ${detail}`)
    case "Backoff":
      return Effect.logWarning(`crashed (${decision.restart} in a row): ${detail}; restarting in ${formatDuration(decision.delay)}`)
  }
}
