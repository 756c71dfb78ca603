/**
 * The harness of the model-based test of `PluginClient`: a scenario (a policy, a listener, a
 * plugin the test steers, and a script of commands), the in-memory plugin it steers, and
 * `runScenario`, which plays the script against a real client over the in-memory spawner and the
 * `TestClock`, checking the client's invariants after every command:
 *
 * 1. at most one live process per client;
 * 2. `Running` means exactly that live process (`health.pid` is its pid), and no process lives in
 *    `Idle`, `Stopped`, `Disabled`, `Backoff` or `Recovering`;
 * 3. every call settles exactly once, with a value or a typed error, and none is left pending
 *    after a long wait at the end;
 * 4. no process is left running once the client's scope has closed;
 *
 * and that the published state changes form one chain along the allowed edges. A broken
 * invariant fails with the scenario's script and a trace of what the client did, step by step.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as References from "effect/References"
import * as Scheduler from "effect/Scheduler"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as Handshake from "../../src/Handshake.ts"
import * as LifetimePolicy from "../../src/LifetimePolicy.ts"
import * as PluginClient from "../../src/PluginClient.ts"
import * as PluginClientError from "../../src/PluginClientError.ts"
import { InMemorySpawner } from "../../src/testing/index.ts"

// ---------------------------------------------------------------------------------------------
// scenarios
// ---------------------------------------------------------------------------------------------

/**
 * What a call asks of the plugin: `echo` answers, `crash` makes it exit mid-call, `hang` is never
 * answered (the call times out), `garbage` is answered after a line that is not JSON (counted in
 * concurrent mode, a protocol violation that recycles the plugin in serial mode).
 */
export type CallKind = "echo" | "crash" | "hang" | "garbage"

/** How the next spawn goes wrong: it exits at once (`exit`) or never answers anything (`silent`). */
export type StartFault = "exit" | "silent"

/** One step of a script. Calls and lifetime operations are forked: a step never waits for them. */
export type Command =
  | { readonly _tag: "Request"; readonly kind: CallKind }
  | { readonly _tag: "RequestIfRunning"; readonly kind: CallKind }
  | { readonly _tag: "Notify" }
  | { readonly _tag: "Kill" }
  | { readonly _tag: "FailNextSpawn"; readonly fault: StartFault }
  | { readonly _tag: "Start" }
  | { readonly _tag: "Restart" }
  | { readonly _tag: "Stop" }
  | { readonly _tag: "Shutdown" }
  | { readonly _tag: "ClearDisabled" }
  | { readonly _tag: "Advance"; readonly millis: number }

/** How the `onEvent` listener behaves: absent, instant, or sleeping 1 s (on the clock) per event. */
export type Listener = "none" | "instant" | "slow"

/** Everything one run needs: the client's configuration, the plugin's temper, and the script. */
export interface Scenario {
  /** Durations as numbers of milliseconds, so the policy prints as it reads. */
  readonly policy: LifetimePolicy.Input
  readonly listener: Listener
  /** Whether the client runs the `initialize` handshake (a start fault is then a failed start). */
  readonly handshake: boolean
  /** Whether the plugin ignores SIGTERM and stdin EOF (only SIGKILL after `shutdownGrace` ends it). */
  readonly stubborn: boolean
  /**
   * How the run ends: `false` waits 10 minutes (every call settles) and then closes the client's
   * scope; `true` closes it right after the script, amid calls, stops and backoffs under way.
   */
  readonly closeAtOnce: boolean
  /** Seed of Effect's `Random` (the backoff jitter). */
  readonly seed: number
  readonly commands: ReadonlyArray<Command>
}

/** A command as one short word, for scripts and traces: `request(crash)`, `advance(1500)`. */
export const showCommand = (command: Command): string => {
  switch (command._tag) {
    case "Request":
    case "RequestIfRunning":
      return `${command._tag === "Request" ? "request" : "requestIfRunning"}(${command.kind})`
    case "FailNextSpawn":
      return `failNextSpawn(${command.fault})`
    case "Advance":
      return `advance(${command.millis})`
    default:
      return command._tag.charAt(0).toLowerCase() + command._tag.slice(1)
  }
}

/** A scenario as a person reads it, the script on one line. */
export const showScenario = (scenario: Scenario): string =>
  [
    // An absent `idleTimeout` or `backoff` means the default; one given as undefined means none.
    `policy ${JSON.stringify(scenario.policy, (_key, value: unknown) => value === undefined ? "none" : value)} (durations in ms)`,
    `listener ${scenario.listener}, handshake ${scenario.handshake}, stubborn ${scenario.stubborn}, closeAtOnce ${scenario.closeAtOnce}, seed ${scenario.seed}`,
    `script: ${scenario.commands.map(showCommand).join(", ") || "(empty)"}`
  ].join("\n")

// ---------------------------------------------------------------------------------------------
// the steered plugin
// ---------------------------------------------------------------------------------------------

/** The faults queued for the next spawns, consumed one per spawn. */
interface Steering {
  readonly faults: Array<StartFault>
}

const methodOf = (line: string): unknown => {
  try {
    const message: unknown = JSON.parse(line)
    return typeof message === "object" && message !== null && "method" in message ? message.method : undefined
  } catch {
    return undefined
  }
}

/**
 * The library's `echo`, with two methods of its own read off its stdin before it sees them:
 * `hang` is swallowed (never answered) and `garbage` is preceded by a line that is not JSON.
 */
const steeredEcho: InMemorySpawner.Behaviour = (proc) =>
  InMemorySpawner.echo()({
    ...proc,
    lines: proc.lines.pipe(Stream.filterEffect((line) => {
      const method = methodOf(line)
      if (method === "hang") return Effect.succeed(false)
      if (method === "garbage") return Effect.as(proc.write("this is not json"), true)
      return Effect.succeed(true)
    }))
  })

const steeredPlugin = (steering: Steering, stubborn: boolean): InMemorySpawner.Behaviour => {
  const behaviour: InMemorySpawner.Behaviour = (proc) => {
    switch (steering.faults.shift()) {
      case "exit":
        return InMemorySpawner.crashOnStart({ code: 3, stderr: "cannot start\n" })(proc)
      case "silent":
        return InMemorySpawner.neverReply()(proc)
      default:
        return steeredEcho(proc)
    }
  }
  return stubborn ? InMemorySpawner.ignoreSigterm(behaviour) : behaviour
}

// ---------------------------------------------------------------------------------------------
// invariants
// ---------------------------------------------------------------------------------------------

type StateTag = PluginClient.PluginState["_tag"]

/**
 * States in which, once the client has settled, no process may be alive but one on its way out
 * (stdin closed or signalled: a crashed process that ignores SIGTERM is torn down while the
 * state already says what the crash decided).
 */
const processless: ReadonlySet<StateTag> = new Set<StateTag>(["Idle", "Stopped", "Disabled", "Backoff", "Recovering"])

/**
 * The edges the public contract fixes (any other edge is allowed): a process is `Running` only
 * after `Starting`; `Stopped` is reached only through `Stopping` and left only for `Idle` (by
 * `start` or `restart`); `Disabled` is left only by `clearDisabled` (to `Idle`) or a stop.
 */
const forbiddenEdge = (from: StateTag, to: StateTag): string | undefined => {
  if (to === "Running" && from !== "Starting") return "Running is entered only from Starting"
  if (to === "Stopped" && from !== "Stopping") return "Stopped is entered only from Stopping"
  if (from === "Stopped" && to !== "Idle") return "Stopped is left only for Idle"
  if (from === "Disabled" && to !== "Idle" && to !== "Stopping") return "Disabled is left only for Idle or Stopping"
  return undefined
}

/** A broken invariant: the message says which, where, and what the client did until then. */
export class InvariantViolation extends Error {}

// ---------------------------------------------------------------------------------------------
// the runner
// ---------------------------------------------------------------------------------------------

/** Lets forked fibers reach their next suspension without the clock moving. */
export const settle = Effect.gen(function*() {
  for (let i = 0; i < 30; i++) yield* Effect.yieldNow
})

/**
 * One forked call or operation: how many times it has ended (at most once), how (`"ok"`, the
 * failure's reason tag, or `"defect"` / `"interrupted"`, which no call may end with), and the
 * step after which it had.
 */
export interface Tracked {
  readonly label: string
  ends: number
  result: string | undefined
  settledAfter: string | undefined
}

const resultOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "ok"
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isSome(error)) return error.value instanceof PluginClientError.PluginClientError ? error.value.reason._tag : "unexpected error"
  return Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "defect"
}

/** What a run saw: the state after each step, its calls and its spawns. */
export interface Outcome {
  /** `"<step> → <state>"`, with the live pids, one line per check. */
  readonly trace: ReadonlyArray<string>
  /** The state just before the client's scope closed. */
  readonly finalState: StateTag
  readonly calls: ReadonlyArray<Tracked>
  readonly spawns: number
}

/** One run in progress: the client, its spawner, and what the checks have seen so far. */
interface Harness {
  readonly steering: Steering
  readonly fake: InMemorySpawner.Instance
  readonly client: PluginClient.PluginClient
  readonly clientScope: Scope.Closeable
  readonly tracked: Array<Tracked>
  readonly changes: Array<{ readonly from: StateTag; readonly to: StateTag }>
  checkedChanges: number
  readonly trace: Array<string>
}

const violated = (harness: Harness, message: string) =>
  Effect.die(new InvariantViolation(`${message}\ntrace:\n  ${harness.trace.join("\n  ")}`))

const listenerOf = (listener: Listener, record: (event: PluginClient.PluginEvent) => void) => {
  switch (listener) {
    case "none":
      return undefined
    case "instant":
      return (event: PluginClient.PluginEvent) => Effect.sync(() => record(event))
    case "slow":
      return (event: PluginClient.PluginEvent) => Effect.andThen(Effect.sync(() => record(event)), Effect.sleep("1 second"))
  }
}

/** A fresh spawner and client in a Scope of their own, every state change recorded. */
const setUp = (scenario: Scenario) =>
  Effect.gen(function*() {
    const steering: Steering = { faults: [] }
    const fake = yield* InMemorySpawner.make({ plugin: steeredPlugin(steering, scenario.stubborn) })
    const clientScope = yield* Scope.make()
    const changes: Harness["changes"] = []
    const record = (event: PluginClient.PluginEvent) => {
      if (event._tag === "StateChanged") changes.push({ from: event.from._tag, to: event.to._tag })
    }
    const onEvent = listenerOf(scenario.listener, record)
    const client = yield* PluginClient.make({ name: "model", executable: "plugin" }, {
      policy: LifetimePolicy.makeUnsafe(scenario.policy),
      ...(scenario.handshake ? { handshake: Handshake.initialize() } : {}),
      ...(onEvent === undefined ? {} : { onEvent })
    }).pipe(Effect.provide(fake.layer), Scope.provide(clientScope))
    if (onEvent === undefined) {
      // Without a listener the events stream is the witness. It may miss the first changes of an
      // eager start, but what it sees is contiguous, and the chain is checked on that.
      yield* Stream.runForEach(client.events, (event) => Effect.sync(() => record(event))).pipe(Effect.forkChild)
    }
    const harness: Harness = {
      steering,
      fake,
      client,
      clientScope,
      tracked: [],
      changes,
      checkedChanges: 0,
      trace: []
    }
    return harness
  })

/** Invariants 1 and 2, on the state and the spawner's records: what is wrong, if anything. */
const processViolation = (
  harness: Harness,
  state: StateTag,
  pid: number | undefined,
  live: ReadonlyArray<InMemorySpawner.SpawnRecord>
): string | undefined => {
  const [process] = live
  if (live.length > 1) return `invariant 1: ${live.length} live processes`
  if (state === "Running") {
    if (process === undefined) return "invariant 2: Running with no live process"
    if (pid !== process.pid) return `invariant 2: Running with health.pid ${pid} but the live process is ${process.pid}`
  }
  const onItsWayOut = process !== undefined && (process.stdinClosed || process.signals.length > 0)
  if (processless.has(state) && process !== undefined && !onItsWayOut) return `invariant 2: ${state} with live process ${process.pid} that nothing is stopping`
  if (state !== "Running" && pid !== undefined) return `invariant 2: ${state} with health.pid ${pid}`
  return undefined
}

/** Invariant 3 so far: no call has ended twice, nor with anything but a value or a typed error. */
const callViolation = (harness: Harness): string | undefined => {
  const twice = harness.tracked.find((entry) => entry.ends > 1)
  if (twice !== undefined) return `invariant 3: ${twice.label} ended ${twice.ends} times`
  const untyped = harness.tracked.find((entry) => entry.result === "defect" || entry.result === "interrupted" || entry.result === "unexpected error")
  return untyped === undefined ? undefined : `invariant 3: ${untyped.label} ended with ${untyped.result}`
}

/** The state changes published since the last check: one chain, along allowed edges. */
const transitionViolation = (harness: Harness): string | undefined => {
  for (; harness.checkedChanges < harness.changes.length; harness.checkedChanges++) {
    const change = harness.changes[harness.checkedChanges]
    const previous = harness.changes[harness.checkedChanges - 1]
    if (change === undefined) continue
    if (previous !== undefined && previous.to !== change.from) {
      return `transitions: ${previous.from}→${previous.to} followed by ${change.from}→${change.to}`
    }
    const forbidden = forbiddenEdge(change.from, change.to)
    if (forbidden !== undefined) return `transitions: ${change.from}→${change.to} (${forbidden})`
  }
  return undefined
}

/** Every invariant that holds at any settled instant; `where` names the step just played. */
const check = (harness: Harness, where: string) =>
  Effect.gen(function*() {
    const live = (yield* harness.fake.spawns).filter((spawn) => spawn.running)
    const state = (yield* harness.client.state)._tag
    const pid = state === "Running" ? (yield* harness.client.health).pid : undefined
    harness.trace.push(`${where} → ${state}${live.length === 0 ? "" : ` (live ${live.map((s) => s.pid).join(", ")})`}`)
    for (const entry of harness.tracked) if (entry.ends > 0) entry.settledAfter ??= where
    const violation = processViolation(harness, state, pid, live) ?? callViolation(harness) ?? transitionViolation(harness)
    if (violation !== undefined) return yield* violated(harness, `${violation} (after ${where})`)
  })

/** Runs `effect` on a fiber of its own, counting its ends. */
const fork = (harness: Harness, label: string, effect: Effect.Effect<unknown, unknown>) =>
  Effect.suspend(() => {
    const entry: Tracked = { label, ends: 0, result: undefined, settledAfter: undefined }
    harness.tracked.push(entry)
    return effect.pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          entry.ends++
          entry.result = resultOf(exit)
        })
      ),
      // Detached: after a violation the run ends with this fiber perhaps stuck on a clock nobody
      // moves any more, and a child fiber would hold the run's end until it was interrupted.
      Effect.forkDetach({ startImmediately: true }),
      Effect.asVoid
    )
  })

const execute = (harness: Harness, command: Command, label: string): Effect.Effect<void> => {
  const { client, fake } = harness
  switch (command._tag) {
    case "Request":
      return fork(harness, label, client.request(command.kind, { step: label }))
    case "RequestIfRunning":
      return fork(harness, label, client.requestIfRunning(command.kind, { step: label }))
    case "Notify":
      return fork(harness, label, client.notify("note", { step: label }))
    case "Kill":
      return Effect.flatMap(fake.spawns, (spawns) => {
        const live = spawns.find((spawn) => spawn.running)
        return live === undefined ? Effect.void : Effect.asVoid(fake.signal(live.pid, "SIGKILL"))
      })
    case "FailNextSpawn":
      return Effect.sync(() => void harness.steering.faults.push(command.fault))
    case "Start":
      return fork(harness, label, client.start)
    case "Restart":
      return fork(harness, label, client.restart)
    case "Stop":
      return fork(harness, label, client.stop)
    case "Shutdown":
      return fork(harness, label, client.shutdown)
    case "ClearDisabled":
      return fork(harness, label, client.clearDisabled)
    case "Advance":
      return TestClock.adjust(command.millis)
  }
}

/** Moves the clock 10 minutes, longer than any timer of a generated policy, in steps of a minute. */
const waitLong = Effect.gen(function*() {
  // In steps, so that each timer's consequences run before the clock jumps far past them.
  for (let minute = 0; minute < 10; minute++) {
    yield* TestClock.adjust("1 minute")
    yield* settle
  }
})

/** Invariant 3 at the end: every call and operation has settled. */
const checkNonePending = (harness: Harness, after: string) => {
  for (const entry of harness.tracked) if (entry.ends > 0) entry.settledAfter ??= after
  const pending = harness.tracked.filter((entry) => entry.ends === 0)
  return pending.length === 0
    ? Effect.void
    : violated(harness, `invariant 3: still pending ${after}: ${pending.map((e) => e.label).join(", ")}`)
}

/** Closes the client's scope; a stubborn plugin's stop waits `shutdownGrace`, so the clock moves meanwhile. */
const closeClient = (harness: Harness) =>
  Effect.gen(function*() {
    const closing = yield* Effect.forkDetach(Scope.close(harness.clientScope, Exit.void))
    for (let second = 0; second < 120 && closing.pollUnsafe() === undefined; second++) {
      yield* settle
      if (closing.pollUnsafe() === undefined) yield* TestClock.adjust("1 second")
    }
    harness.trace.push("scope closed")
    if (closing.pollUnsafe() === undefined) {
      return yield* violated(harness, "invariant 4: the client's scope did not close within 2 minutes")
    }
  })

/** Invariant 4: once the client's scope has closed, no process runs, and none is spawned later. */
const checkNothingLeft = (harness: Harness, spawnsAtClose: number) =>
  Effect.gen(function*() {
    const spawns = yield* harness.fake.spawns
    const left = spawns.filter((spawn) => spawn.running)
    if (left.length > 0) {
      return yield* violated(harness, `invariant 4: process ${left.map((s) => s.pid).join(", ")} running after the scope closed`)
    }
    if (spawns.length > spawnsAtClose) {
      return yield* violated(harness, `invariant 4: ${spawns.length - spawnsAtClose} spawn(s) after the scope closed`)
    }
  })

/** The end of a run: settle everything and close the scope, in the order the scenario says. */
const finish = (harness: Harness, closeAtOnce: boolean) =>
  Effect.gen(function*() {
    if (!closeAtOnce) {
      yield* waitLong
      yield* check(harness, "a final wait of 10 minutes")
      yield* checkNonePending(harness, "after 10 minutes")
    }
    const finalState = (yield* harness.client.state)._tag
    yield* closeClient(harness)
    const spawnsAtClose = (yield* harness.fake.spawns).length
    yield* checkNothingLeft(harness, spawnsAtClose)
    if (closeAtOnce) {
      yield* waitLong
      yield* checkNonePending(harness, "10 minutes after the scope closed")
      yield* checkNothingLeft(harness, spawnsAtClose)
    }
    return finalState
  })

const play = (scenario: Scenario) =>
  Effect.gen(function*() {
    const harness = yield* setUp(scenario)
    yield* settle
    yield* check(harness, "make")
    for (const [i, command] of scenario.commands.entries()) {
      const label = `#${i + 1} ${showCommand(command)}`
      yield* execute(harness, command, label)
      yield* settle
      yield* check(harness, label)
    }
    const finalState = yield* finish(harness, scenario.closeAtOnce)
    const outcome: Outcome = {
      trace: harness.trace,
      finalState,
      calls: harness.tracked,
      spawns: (yield* harness.fake.spawns).length
    }
    return outcome
  })

/**
 * Plays `scenario` against a fresh client (own spawner, `TestClock`, Scope and seeded `Random`),
 * checking the invariants after every command, after a final wait of 10 minutes, and once the
 * client's scope has closed. A broken invariant is a defect: an `InvariantViolation` whose
 * message holds the scenario and the trace.
 */
export const runScenario = (scenario: Scenario): Effect.Effect<Outcome> =>
  play(scenario).pipe(
    Effect.catchDefect((defect) =>
      Effect.die(defect instanceof InvariantViolation ? new InvariantViolation(`${defect.message}\n${showScenario(scenario)}`) : defect)
    ),
    Random.withSeed(scenario.seed),
    Effect.provideService(References.MinimumLogLevel, "None"),
    Effect.provide(TestClock.layer()),
    Effect.scoped,
    // Nothing here waits on the outside world: fibers take turns on microtasks, not event-loop turns.
    Effect.provideService(Scheduler.Scheduler, new Scheduler.MixedScheduler("sync"))
  )
