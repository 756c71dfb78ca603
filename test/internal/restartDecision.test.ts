import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as RestartDecision from "../../src/internal/restartDecision.ts"
import * as LifetimePolicy from "../../src/LifetimePolicy.ts"

const S = 1_000
const MIN = 60 * S

const lazy = LifetimePolicy.defaultPolicy
const alwaysOn = LifetimePolicy.alwaysOn

/** The history after crashes at `instants`, with a successful start after those listed in `startedAfter`. */
const historyOf = (
  policy: LifetimePolicy.LifetimePolicy,
  instants: ReadonlyArray<number>,
  startedAfter: ReadonlyArray<number> = []
): RestartDecision.RestartHistory =>
  instants.reduce((history, t, i) => {
    const next = RestartDecision.record(policy, history, t)
    return startedAfter.includes(i) ? RestartDecision.started(next) : next
  }, RestartDecision.empty)

/** What `decide` says, in a form a table can hold (the delay in millis). */
const summary = (decision: RestartDecision.RestartDecision): string => {
  switch (decision._tag) {
    case "Recover":
      return "Recover"
    case "Backoff":
      return `Backoff(${decision.restart}, ${Duration.toMillis(decision.delay)} ms)`
    case "Disable":
      return `Disable(${RestartDecision.describeDisableReason(decision.reason)})`
  }
}

/** Crash instants `gap` apart: `n` of them starting at 0. */
const every = (gap: number, n: number) => Array.from({ length: n }, (_, i) => i * gap)

describe("RestartDecision.decide (pure)", () => {
  const table: ReadonlyArray<readonly [string, LifetimePolicy.LifetimePolicy, ReadonlyArray<number>, ReadonlyArray<number>, number, string]> = [
    // title, policy, crash instants, started after crash i, random, decision after the last crash
    ["default: the first crash recovers", lazy, [0], [], 0.5, "Recover"],
    ["default: 2 crashes within 60 s recover", lazy, [0, 59 * S], [], 0.5, "Recover"],
    ["default: 3 crashes within 60 s disable", lazy, [0, 20 * S, 40 * S], [], 0.5, "Disable(crashed 3 times within 1 min)"],
    ["default: 3 crashes within 59.999 s disable", lazy, [0, 30 * S, 60 * S - 1], [], 0.5, "Disable(crashed 3 times within 1 min)"],
    ["default: a crash exactly 60 s old is out of the window", lazy, [0, 30 * S, 60 * S], [], 0.5, "Recover"],
    ["default: spread-out crashes never disable", lazy, every(31 * S, 20), [], 0.5, "Recover"],
    ["default: a successful start in between does not empty the window", lazy, [0, 10 * S, 20 * S], [0, 1], 0.5, "Disable(crashed 3 times within 1 min)"],
    ["alwaysOn: crash 1 → restart 1 after 1 s", alwaysOn, [0], [], 0.5, "Backoff(1, 1000 ms)"],
    ["alwaysOn: jitter 0 is -25 %", alwaysOn, [0], [], 0, "Backoff(1, 750 ms)"],
    ["alwaysOn: crash 4 → 8 s", alwaysOn, every(S, 4), [], 0.5, "Backoff(4, 8000 ms)"],
    ["alwaysOn: crash 9 → 256 s", alwaysOn, every(S, 9), [], 0.5, "Backoff(9, 256000 ms)"],
    ["alwaysOn: crash 9 with +25 % is capped at 5 min", alwaysOn, every(S, 9), [], 0.999, "Backoff(9, 300000 ms)"],
    ["alwaysOn: crash 10 is still followed by restart 10", alwaysOn, every(S, 10), [], 0.5, "Backoff(10, 300000 ms)"],
    ["alwaysOn: crash 11 comes after 10 restarts and gives up", alwaysOn, every(S, 11), [], 0.5, "Disable(crashed 11 times in a row (gave up after 10 restarts))"],
    ["alwaysOn: the sliding window does not apply (the backoff decides)", alwaysOn, [0, S, 2 * S], [], 0.5, "Backoff(3, 4000 ms)"],
    ["alwaysOn: a successful initialize starts the run again", alwaysOn, every(S, 11), [9], 0.5, "Backoff(1, 1000 ms)"],
    ["alwaysOn: crashes that each follow a successful initialize never give up", alwaysOn, every(S, 30), every(1, 29), 0.5, "Backoff(1, 1000 ms)"],
    ["alwaysOn: a crash resetAfter after the previous one starts the run again", alwaysOn, [0, S, S + 10 * MIN], [], 0.5, "Backoff(1, 1000 ms)"],
    ["alwaysOn: a crash just under resetAfter continues the run", alwaysOn, [0, S, S + 10 * MIN - 1], [], 0.5, "Backoff(3, 4000 ms)"]
  ]
  for (const [title, policy, instants, startedAfter, random, expected] of table) {
    it(title, () => {
      const history = historyOf(policy, instants, startedAfter)
      const now = instants[instants.length - 1] ?? 0
      assert.strictEqual(summary(RestartDecision.decide(policy, history, now, random)), expected)
    })
  }
})

describe("RestartHistory (pure)", () => {
  it("giveUpAfter 10: crashes 1–10 are each followed by a restart, the 11th is not", () => {
    let history = RestartDecision.empty
    const decisions: Array<string> = []
    for (let n = 1; n <= 11; n++) {
      const [next, decision] = RestartDecision.afterCrash(alwaysOn, history, n * S, 0.5)
      history = next
      decisions.push(decision._tag)
    }
    assert.deepStrictEqual(decisions, [...Array<string>(10).fill("Backoff"), "Disable"])
    assert.strictEqual(history.consecutive, 11)
  })

  it("giveUpAfter 1: one restart, then the second crash gives up", () => {
    const policy = LifetimePolicy.makeUnsafe({ ...alwaysOn, backoff: { giveUpAfter: 1 } })
    const [first, one] = RestartDecision.afterCrash(policy, RestartDecision.empty, 0, 0.5)
    const [, two] = RestartDecision.afterCrash(policy, first, S, 0.5)
    assert.deepStrictEqual([one._tag, two._tag], ["Backoff", "Disable"])
  })

  it("record prunes the window and counts the run; started ends the run and keeps the window and the last crash", () => {
    const history = historyOf(lazy, [0, 30 * S, 70 * S])
    assert.deepStrictEqual(history, { crashes: [30 * S, 70 * S], consecutive: 3, lastCrashAt: 70 * S })
    assert.deepStrictEqual(RestartDecision.started(history), { crashes: [30 * S, 70 * S], consecutive: 0, lastCrashAt: 70 * S })
    assert.strictEqual(RestartDecision.crashesInWindow(lazy, history, 90 * S - 1), 2)
    assert.strictEqual(RestartDecision.crashesInWindow(lazy, history, 90 * S), 1)
  })

  it("cleared forgets the window and the run, not when the plugin last crashed", () => {
    const history = historyOf(alwaysOn, every(S, 5))
    assert.deepStrictEqual(RestartDecision.cleared(history), { crashes: [], consecutive: 0, lastCrashAt: 4 * S })
    const [, decision] = RestartDecision.afterCrash(alwaysOn, RestartDecision.cleared(history), 5 * S, 0.5)
    assert.strictEqual(summary(decision), "Backoff(1, 1000 ms)")
  })
})
