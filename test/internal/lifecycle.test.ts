import { assert, describe, it } from "@effect/vitest"
import * as Lifecycle from "../../src/internal/lifecycle.ts"

const gen = (generation: number, crashClaimed = false): Lifecycle.Generation => ({ generation, crashClaimed })

describe("lifecycle rules", () => {
  it("the generation rule: only the current incarnation's crash changes the state", () => {
    const table: ReadonlyArray<readonly [current: Lifecycle.Generation | undefined, reporter: Lifecycle.Generation, owns: boolean]> = [
      [gen(3), gen(3), true],
      [gen(3, true), gen(3, true), true],
      [gen(4), gen(3), false], // a restart replaced generation 3
      [undefined, gen(3), false], // a stop or reap ended generation 3 first
      [gen(2), gen(3), false]
    ]
    for (const [current, reporter, owns] of table) {
      assert.strictEqual(Lifecycle.ownsState(current, reporter), owns, `current ${current?.generation}, reporter ${reporter.generation}`)
    }
  })

  it("what a call finds, for every state", () => {
    const running = gen(1)
    const crashing = gen(1, true)
    const label = (admission: Lifecycle.Admission<Lifecycle.Generation>): string =>
      admission._tag === "Refuse" ? `Refuse(${admission.refusal._tag})` : admission._tag
    const table: ReadonlyArray<readonly [Lifecycle.LifeState, closed: boolean, Lifecycle.Generation | undefined, string]> = [
      [{ _tag: "Idle" }, false, undefined, "Spawn"],
      [{ _tag: "Recovering" }, false, undefined, "Spawn"],
      [{ _tag: "Running" }, false, running, "Use"],
      [{ _tag: "Running" }, false, crashing, "AwaitCrash"],
      [{ _tag: "Starting" }, false, undefined, "Spawn"],
      [{ _tag: "Stopping" }, false, running, "Refuse(Stopping)"],
      [{ _tag: "Stopped" }, false, undefined, "Refuse(Stopped)"],
      [{ _tag: "Stopped" }, true, undefined, "Refuse(Stopped)"],
      [{ _tag: "Backoff", until: 5_000 }, false, undefined, "Refuse(Backoff)"],
      [{ _tag: "Disabled", reason: "crashed 3 times" }, false, undefined, "Refuse(Disabled)"]
    ]
    for (const [state, closed, current, expected] of table) {
      assert.strictEqual(label(Lifecycle.admit(state, closed, current)), expected, `${state._tag}, current ${current?.generation}`)
    }
  })

  it("a refusal carries what its error needs", () => {
    assert.deepStrictEqual(Lifecycle.refusal({ _tag: "Stopped" }, true), { _tag: "Stopped", shutDown: true })
    assert.deepStrictEqual(Lifecycle.refusal({ _tag: "Stopped" }, false), { _tag: "Stopped", shutDown: false })
    assert.deepStrictEqual(Lifecycle.refusal({ _tag: "Backoff", until: 5_000 }, false), { _tag: "Backoff", until: 5_000 })
    assert.deepStrictEqual(Lifecycle.refusal({ _tag: "Disabled", reason: "r" }, false), { _tag: "Disabled", reason: "r" })
    assert.isUndefined(Lifecycle.refusal({ _tag: "Running" }, false))
  })
})
