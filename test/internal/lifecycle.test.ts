import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Lifecycle from "../../src/internal/lifecycle.ts"
import * as LifetimePolicy from "../../src/LifetimePolicy.ts"
import * as PluginClientError from "../../src/PluginClientError.ts"

interface Refs {
  readonly incarnation: { readonly generation: number }
  readonly waiter: string
  readonly settler: string
  readonly reply: string
}
type Life = Lifecycle.Life<Refs>
type Event = Lifecycle.LifeEvent<Refs>
type Action = Lifecycle.LifeAction<Refs>

const lazy = LifetimePolicy.makeUnsafe({ restartCap: 3, restartWindow: "60 seconds" })
const withBackoff = LifetimePolicy.makeUnsafe({
  ...LifetimePolicy.alwaysOn,
  backoff: { initial: "1 second", max: "1 minute", factor: 2, jitter: 0, giveUpAfter: 2 }
})
const exited = new PluginClientError.Exited({ code: 1, signal: null, requested: false, stderrExcerpt: "" })

/** Runs `events` from `life`; returns the last life and every action, in order. */
const run = (events: ReadonlyArray<Event>, policy = lazy, life: Life = Lifecycle.initial()): readonly [Life, Array<Action>] => {
  const actions: Array<Action> = []
  let current = life
  for (const event of events) {
    const [next, more] = Lifecycle.step(current, event, policy)
    current = next
    actions.push(...more)
  }
  return [current, actions]
}

/** An action as a short label: `Launch(1)`, `Idle→Starting`, `Admit(a,b@1)`… */
const label = (action: Action): string => {
  switch (action._tag) {
    case "Launch":
    case "Abort":
      return `${action._tag}(${action.generation})`
    case "Retire":
      return `Retire(${action.incarnation.generation}${action.graceful ? ", graceful" : ""})`
    case "Admit":
      return `Admit(${action.waiters.join(",")}@${action.incarnation.generation})`
    case "Refuse":
      return `Refuse(${action.waiters.join(",")}: ${action.refusal._tag})`
    case "Settle":
      return `Settle(${action.settlers.join(",")})`
    case "Answer":
      return `Answer(${action.reply}: ${action.tripped})`
    case "Changed":
      return `${action.from._tag}→${action.to._tag}`
    case "Crash":
      return `Crash(${action.generation}: ${action.decision._tag})`
    case "Up":
    case "Reaped":
      return `${action._tag}(${action.incarnation.generation})`
    case "ScheduleRestart":
      return `ScheduleRestart(${action.until})`
    default:
      return action._tag
  }
}

const inc = (generation: number) => ({ generation })
const crash = (generation: number, now = 0, reply?: string): Event => ({
  _tag: "Crashed",
  generation,
  failure: exited,
  stderr: "",
  exit: { code: 1, signal: null },
  now,
  random: 0.5,
  reply
})
const startFailed = (generation: number, now = 0): Event => ({
  _tag: "StartFailed",
  generation,
  failure: new PluginClientError.Spawn({ path: "plugin", detail: "ENOENT" }),
  stderr: undefined,
  now,
  random: 0.5
})
const acquire = (waiter: string, patience = 0): Event => ({ _tag: "Acquire", waiter, patience })
const retired = (generation: number): Event => ({ _tag: "Retired", generation, stderr: "bye" })

describe("lifecycle: the step, as tables", () => {
  const table: ReadonlyArray<readonly [string, ReadonlyArray<Event>, string, LifetimePolicy.LifetimePolicy | undefined]> = [
    ["a first call launches generation 1", [acquire("a")], "Idle→Starting Launch(1)", undefined],
    [
      "concurrent first calls share one launch",
      [acquire("a"), acquire("b"), { _tag: "Ready", incarnation: inc(1) }],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a,b@1)",
      undefined
    ],
    [
      "a crash retires the process at once and the next call waits for it to be gone before launching",
      [acquire("a"), { _tag: "Ready", incarnation: inc(1) }, crash(1), acquire("b"), retired(1)],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a@1) DisarmIdle Retire(1) Crash(1: Recover) Running→Recovering Recovering→Starting Launch(2)",
      undefined
    ],
    [
      "a crash of an older generation changes nothing; its reporter learns what that crash decided",
      [acquire("a"), { _tag: "Ready", incarnation: inc(1) }, crash(1, 0, "first"), retired(1), acquire("b"), { _tag: "Ready", incarnation: inc(2) }, crash(1, 0, "late")],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a@1) DisarmIdle Retire(1) Crash(1: Recover) Running→Recovering Answer(first: false) Recovering→Starting Launch(2) Starting→Running Up(2) Admit(b@2) Answer(late: false)",
      undefined
    ],
    [
      "restart: the full stop, then a new generation",
      [acquire("a"), { _tag: "Ready", incarnation: inc(1) }, { _tag: "Restart", waiter: "r" }, retired(1), { _tag: "Ready", incarnation: inc(2) }],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a@1) Running→Stopping DisarmIdle Retire(1, graceful) Stopping→Idle Idle→Starting Launch(2) Starting→Running Up(2) Admit(r@2)",
      undefined
    ],
    [
      "a restart while starting joins the start",
      [acquire("a"), { _tag: "Restart", waiter: "r" }, { _tag: "Ready", incarnation: inc(1) }],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a,r@1)",
      undefined
    ],
    [
      "stop while starting abandons the launch: its callers are refused, its late Ready only retires it",
      [acquire("a"), { _tag: "Stop", settler: "s", shutdown: false }, { _tag: "Ready", incarnation: inc(1) }, retired(1)],
      "Idle→Starting Launch(1) CancelRestart DisarmIdle Abort(1) Refuse(a: Stopped) Starting→Stopping Retire(1) Stopping→Stopped CloseStreams Settle(s)",
      undefined
    ],
    [
      "a call during a reap waits for it and starts the plugin again",
      [acquire("a"), { _tag: "Ready", incarnation: inc(1) }, { _tag: "IdleExpired", generation: 1 }, acquire("b"), retired(1)],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a@1) Running→Stopping DisarmIdle Retire(1, graceful) Stopping→Idle Reaped(1) Idle→Starting Launch(2)",
      undefined
    ],
    [
      "the idle expiry of an older generation reaps nothing",
      [acquire("a"), { _tag: "Ready", incarnation: inc(1) }, crash(1), retired(1), acquire("b"), { _tag: "Ready", incarnation: inc(2) }, { _tag: "IdleExpired", generation: 1 }],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a@1) DisarmIdle Retire(1) Crash(1: Recover) Running→Recovering Recovering→Starting Launch(2) Starting→Running Up(2) Admit(b@2)",
      undefined
    ],
    [
      "three failed starts within the window disable: the third caller learns it tripped the cap",
      [acquire("a"), startFailed(1), acquire("b"), startFailed(2), acquire("c"), startFailed(3), acquire("d"), { _tag: "ClearDisabled" }],
      "Idle→Starting Launch(1) Crash(1: Recover) Starting→Recovering Refuse(a: StartFailed) Recovering→Starting Launch(2) Crash(2: Recover) Starting→Recovering Refuse(b: StartFailed) Recovering→Starting Launch(3) Crash(3: Disable) Starting→Disabled Refuse(c: StartFailed) Refuse(d: Disabled) Disabled→Idle",
      undefined
    ],
    [
      "backoff: a caller whose patience covers the restart waits for it; one with less is refused",
      [{ _tag: "Start", waiter: "s" }, { _tag: "Ready", incarnation: inc(1) }, crash(1, 10_000), acquire("late", 10_500), acquire("patient", 11_000), retired(1), { _tag: "BackoffExpired", until: 10_999 }, { _tag: "BackoffExpired", until: 11_000 }],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(s@1) DisarmIdle Retire(1) Crash(1: Backoff) Running→Backoff ScheduleRestart(11000) Refuse(late: Backoff) Backoff→Starting Launch(2)",
      withBackoff
    ],
    [
      "shutdown: later calls and starts are refused for good",
      [{ _tag: "Stop", settler: "s", shutdown: true }, acquire("a"), { _tag: "Start", waiter: "b" }, { _tag: "Restart", waiter: "c" }],
      "CancelRestart DisarmIdle Idle→Stopping Stopping→Stopped CloseStreams Settle(s) Refuse(a: Stopped) Refuse(b: Stopped) Refuse(c: Stopped)",
      undefined
    ],
    [
      "stop after a crash waits for the crashed process to be gone",
      [acquire("a"), { _tag: "Ready", incarnation: inc(1) }, crash(1), { _tag: "Stop", settler: "s", shutdown: false }, retired(1)],
      "Idle→Starting Launch(1) Starting→Running Up(1) Admit(a@1) DisarmIdle Retire(1) Crash(1: Recover) Running→Recovering CancelRestart DisarmIdle Recovering→Stopping Stopping→Stopped CloseStreams Settle(s)",
      undefined
    ]
  ]
  for (const [name, events, expected, policy] of table) {
    it(name, () => {
      const [, actions] = run(events, policy)
      assert.strictEqual(actions.map(label).join(" "), expected)
    })
  }

  it("a successful start ends the run of consecutive crashes; the window keeps them", () => {
    const [life] = run([acquire("a"), startFailed(1), acquire("b"), { _tag: "Ready", incarnation: inc(2) }])
    assert.strictEqual(life.history.consecutive, 0)
    assert.strictEqual(life.history.crashes.length, 1)
    assert.strictEqual(life.totalCrashes, 1)
  })
})

// ---------------------------------------------------------------------------------------------
// the machine against a model of the world around it
// ---------------------------------------------------------------------------------------------

/** What the world does next: a caller's request, or the answer to an action still pending. */
type Move =
  | { readonly _tag: "Acquire" | "Start" | "Restart" | "Stop" | "Shutdown" | "ClearDisabled"; readonly patience: number }
  | { readonly _tag: "Answer"; readonly pick: number; readonly outcome: "ready" | "fail" | "crash" | "idle" | "backoff"; readonly advance: number }

const moveArbitrary: fc.Arbitrary<Move> = fc.oneof(
  fc.record({
    _tag: fc.constantFrom("Acquire", "Start", "Restart", "Stop", "Shutdown", "ClearDisabled"),
    patience: fc.integer({ min: 0, max: 5_000 })
  }),
  fc.record({
    _tag: fc.constant("Answer"),
    pick: fc.nat(),
    outcome: fc.constantFrom("ready", "fail", "crash", "idle", "backoff"),
    advance: fc.integer({ min: 0, max: 3_000 })
  })
)

/** The world: live processes, launches and teardowns in progress, and every caller's fate. */
interface World {
  life: Life
  now: number
  readonly live: Set<number>
  readonly launching: Set<number>
  readonly aborted: Set<number>
  readonly tearingDown: Set<number>
  readonly settled: Map<string, number>
  readonly callers: Array<string>
  readonly log: Array<string>
}

const apply = (world: World, event: Event, policy: LifetimePolicy.LifetimePolicy): void => {
  const [life, actions] = Lifecycle.step(world.life, event, policy)
  world.life = life
  world.log.push(`${event._tag} → ${actions.map(label).join(" ")}`)
  for (const action of actions) {
    switch (action._tag) {
      case "Launch":
        assert.strictEqual(world.live.size, 0, `a launch with a live process: ${world.log.join("\n")}`)
        world.launching.add(action.generation)
        world.live.add(action.generation)
        break
      case "Abort":
        world.aborted.add(action.generation)
        break
      case "Retire":
        world.tearingDown.add(action.incarnation.generation)
        break
      case "Admit":
      case "Refuse":
        for (const waiter of action.waiters) world.settled.set(waiter, (world.settled.get(waiter) ?? 0) + 1)
        break
      case "Settle":
        for (const settler of action.settlers) world.settled.set(settler, (world.settled.get(settler) ?? 0) + 1)
        break
      case "Answer":
        world.settled.set(action.reply, (world.settled.get(action.reply) ?? 0) + 1)
        break
      default:
        break
    }
  }
}

/** The answers the world could give now, to the actions still pending. */
const pending = (world: World): Array<() => Event> => {
  const answers: Array<() => Event> = []
  for (const generation of world.launching) {
    answers.push(() => {
      world.launching.delete(generation)
      if (world.aborted.has(generation)) {
        world.live.delete(generation)
        return retired(generation)
      }
      return { _tag: "Ready", incarnation: inc(generation) }
    })
    answers.push(() => {
      world.launching.delete(generation)
      world.live.delete(generation)
      return startFailed(generation, world.now)
    })
  }
  for (const generation of world.tearingDown) {
    answers.push(() => {
      world.tearingDown.delete(generation)
      world.live.delete(generation)
      return retired(generation)
    })
  }
  return answers
}

const play = (world: World, move: Move, policy: LifetimePolicy.LifetimePolicy, counter: { next: number }): void => {
  const caller = () => {
    const name = `c${counter.next++}`
    world.callers.push(name)
    return name
  }
  switch (move._tag) {
    case "Acquire":
      return apply(world, acquire(caller(), world.now + move.patience), policy)
    case "Start":
    case "Restart":
      return apply(world, { _tag: move._tag, waiter: caller() }, policy)
    case "Stop":
    case "Shutdown":
      return apply(world, { _tag: "Stop", settler: caller(), shutdown: move._tag === "Shutdown" }, policy)
    case "ClearDisabled":
      return apply(world, { _tag: "ClearDisabled" }, policy)
    case "Answer": {
      world.now += move.advance
      const running = Lifecycle.runningIncarnation(world.life)
      const phase = world.life.phase
      if (move.outcome === "crash" && running !== undefined) return apply(world, crash(running.generation, world.now, caller()), policy)
      if (move.outcome === "idle" && running !== undefined) return apply(world, { _tag: "IdleExpired", generation: running.generation }, policy)
      if (move.outcome === "backoff" && phase._tag === "Backoff") {
        world.now = Math.max(world.now, phase.until)
        return apply(world, { _tag: "BackoffExpired", until: phase.until }, policy)
      }
      const answers = pending(world)
      if (answers.length === 0) return
      const answer = answers[move.pick % answers.length]
      if (answer !== undefined) apply(world, answer(), policy)
    }
  }
}

const checkInvariants = (world: World): void => {
  const trail = () => world.log.join("\n")
  assert.isAtMost(world.live.size, 1, `two live processes:\n${trail()}`)
  const running = Lifecycle.runningIncarnation(world.life)
  if (running !== undefined) assert.isTrue(world.live.has(running.generation), `Running a process that is gone:\n${trail()}`)
  for (const [who, times] of world.settled) assert.strictEqual(times, 1, `${who} settled ${times} times:\n${trail()}`)
}

describe("lifecycle: the machine against a model of its world (fast-check)", () => {
  for (const [name, policy] of [["lazy, a cap", lazy], ["always on, a backoff", withBackoff]] as const) {
    it(`${name}: one live process at most, Running only with its live process, every caller settled exactly once`, () => {
      fc.assert(
        fc.property(fc.array(moveArbitrary, { maxLength: 60 }), (moves) => {
          const world: World = {
            life: Lifecycle.initial(),
            now: 0,
            live: new Set(),
            launching: new Set(),
            aborted: new Set(),
            tearingDown: new Set(),
            settled: new Map(),
            callers: [],
            log: []
          }
          const counter = { next: 0 }
          for (const move of moves) {
            play(world, move, policy, counter)
            checkInvariants(world)
          }
          // The end: a shutdown, and the world answers everything still pending.
          play(world, { _tag: "Shutdown", patience: 0 }, policy, counter)
          for (let answers = pending(world); answers.length > 0; answers = pending(world)) {
            const answer = answers[answers.length - 1]
            if (answer !== undefined) apply(world, answer(), policy)
            checkInvariants(world)
          }
          assert.strictEqual(world.life.phase._tag, "Stopped", world.log.join("\n"))
          assert.strictEqual(world.live.size, 0, `a process outlived the shutdown:\n${world.log.join("\n")}`)
          for (const who of world.callers) assert.strictEqual(world.settled.get(who), 1, `${who} never settled:\n${world.log.join("\n")}`)
        }),
        { numRuns: 3_000 }
      )
    })
  }
})
