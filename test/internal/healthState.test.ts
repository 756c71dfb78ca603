import { assert, describe, it } from "@effect/vitest"
import * as HealthState from "../../src/internal/healthState.ts"

/** Applies steps to an empty state and returns the transitions and the final state. */
type Step =
  | readonly ["probe", id: string, failure: string | undefined]
  | readonly ["startFailed", id: string, error: string]
  | readonly ["cameUp", id: string]
  | readonly ["tools", id: string, tools: ReadonlyArray<string>]
  | readonly ["stopped", ids: ReadonlyArray<string>]

const run = (steps: ReadonlyArray<Step>) =>
  steps.reduce(
    ({ state, transitions }, step) => {
      switch (step[0]) {
        case "probe": {
          const [transition, next] = HealthState.probed(state, step[1], step[2])
          const label = transition._tag === "Degraded" ? `Degraded(${transition.error})` : transition._tag
          return { state: next, transitions: [...transitions, label] }
        }
        case "startFailed":
          return { state: HealthState.startFailed(state, step[1], step[2]), transitions }
        case "cameUp":
          return { state: HealthState.cameUp(state, step[1]), transitions }
        case "tools":
          return { state: HealthState.toolsDiscovered(state, step[1], step[2]), transitions }
        case "stopped":
          return { state: HealthState.stopped(state, step[1]), transitions }
      }
    },
    { state: HealthState.empty, transitions: [] as ReadonlyArray<string> }
  )

describe("HealthState (the service's one state map)", () => {
  it("probe outcomes: the first failure after a pass degrades, the first pass after a failure recovers, repeats change nothing", () => {
    const table: ReadonlyArray<readonly [string, ReadonlyArray<Step>, ReadonlyArray<string>, string | undefined]> = [
      // title, steps, transitions, probe error remembered for "p" at the end
      ["a pass on a healthy plugin is unchanged", [["probe", "p", undefined]], ["Unchanged"], undefined],
      ["a first failure degrades", [["probe", "p", "timed out"]], ["Degraded(timed out)"], "timed out"],
      ["a second failure is unchanged, and its error is the one remembered", [["probe", "p", "timed out"], ["probe", "p", "warming up"]], ["Degraded(timed out)", "Unchanged"], "warming up"],
      ["a pass after a failure recovers", [["probe", "p", "timed out"], ["probe", "p", undefined]], ["Degraded(timed out)", "Recovered"], undefined],
      ["recovered, then failing again degrades again", [["probe", "p", "a"], ["probe", "p", undefined], ["probe", "p", "b"]], ["Degraded(a)", "Recovered", "Degraded(b)"], "b"],
      ["plugins are independent", [["probe", "q", "down"], ["probe", "p", "timed out"]], ["Degraded(down)", "Degraded(timed out)"], "timed out"],
      ["a deliberate stop forgets a failing probe: the next failure degrades anew", [["probe", "p", "a"], ["stopped", ["p"]], ["probe", "p", "b"]], ["Degraded(a)", "Degraded(b)"], "b"],
      ["a stop of other plugins keeps it", [["probe", "p", "a"], ["stopped", ["q"]]], ["Degraded(a)"], "a"]
    ]
    for (const [title, steps, transitions, probeError] of table) {
      const result = run(steps)
      assert.deepStrictEqual(result.transitions, transitions, title)
      assert.strictEqual(HealthState.overlayOf(result.state, "p").probeError, probeError, title)
    }
  })

  it("a failed start is remembered until the plugin comes up; discovered tools stay", () => {
    const table: ReadonlyArray<readonly [string, ReadonlyArray<Step>, string | undefined, ReadonlyArray<string> | undefined]> = [
      // title, steps, start failure and capabilities remembered for "p" at the end
      ["a failed start is remembered", [["startFailed", "p", "spawn failed"]], "spawn failed", undefined],
      ["coming up forgets it", [["startFailed", "p", "spawn failed"], ["cameUp", "p"]], undefined, undefined],
      ["another plugin coming up does not", [["startFailed", "p", "spawn failed"], ["cameUp", "q"]], "spawn failed", undefined],
      ["the latest failed start wins", [["startFailed", "p", "a"], ["startFailed", "p", "b"]], "b", undefined],
      ["discovered tools survive a failed start and its recovery", [["tools", "p", ["search"]], ["startFailed", "p", "x"], ["cameUp", "p"]], undefined, ["search"]],
      ["the latest discovery wins", [["tools", "p", ["search"]], ["tools", "p", ["read"]]], undefined, ["read"]]
    ]
    for (const [title, steps, startFailure, capabilities] of table) {
      const overlay = HealthState.overlayOf(run(steps).state, "p")
      assert.strictEqual(overlay.startFailure, startFailure, title)
      assert.deepStrictEqual(overlay.capabilities, capabilities, title)
    }
  })

  it("the map holds only plugins with something to remember, and a no-op returns the same map", () => {
    const recovered = run([["probe", "p", "a"], ["startFailed", "q", "x"], ["probe", "p", undefined], ["cameUp", "q"]]).state
    assert.strictEqual(recovered.size, 0)
    const state = HealthState.startFailed(HealthState.empty, "p", "x")
    assert.strictEqual(HealthState.cameUp(state, "q"), state)
    assert.strictEqual(HealthState.stopped(state, ["p", "q"]), state)
    assert.strictEqual(HealthState.probed(state, "p", undefined)[1], state)
    assert.strictEqual(HealthState.empty.size, 0, "transitions never mutate a map in place")
  })
})
