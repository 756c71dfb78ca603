import { assert, describe, it } from "@effect/vitest"
import * as HeldCalls from "../../src/internal/heldCalls.ts"

describe("heldCalls", () => {
  it("a running call is held, then done once it ends; a cancel interrupts it only while it runs", () => {
    const held = HeldCalls.make()
    const interrupted: Array<string> = []
    assert.isTrue(held.start("a", () => interrupted.push("a")))
    assert.strictEqual(held.state("a"), "running")
    assert.strictEqual(held.running(), 1)
    held.cancel("a")
    assert.deepStrictEqual(interrupted, ["a"])
    held.finish("a")
    assert.strictEqual(held.state("a"), "done")
    held.cancel("a")
    assert.deepStrictEqual(interrupted, ["a"], "a call that ended is not interrupted again")
    assert.isTrue(held.start("a", () => undefined), "a cancel of an ended call is not remembered")
    assert.isUndefined(held.state("unknown"))
  })

  it("a cancel that arrives before its call keeps the call from running", () => {
    const held = HeldCalls.make()
    held.cancel("early")
    assert.isFalse(held.start("early", () => undefined))
    assert.isTrue(held.start("early", () => undefined), "only once")
  })

  it("remembers only the latest `capacity` ended and early-cancelled calls", () => {
    const held = HeldCalls.make(2)
    for (const key of ["a", "b", "c"]) {
      held.start(key, () => undefined)
      held.finish(key)
    }
    assert.isUndefined(held.state("a"))
    assert.strictEqual(held.state("b"), "done")
    assert.strictEqual(held.state("c"), "done")
    for (const key of ["x", "y", "z"]) held.cancel(key)
    assert.isTrue(held.start("x", () => undefined), "the oldest early cancel is forgotten")
    assert.isFalse(held.start("z", () => undefined))
  })

  it("a key that ends again is remembered from its latest end; the early cancel a call used up is not counted", () => {
    const held = HeldCalls.make(2)
    for (const key of ["a", "b", "a", "c"]) {
      held.start(key, () => undefined)
      held.finish(key)
    }
    assert.strictEqual(held.state("a"), "done")
    assert.isUndefined(held.state("b"), "b is the oldest end")
    held.cancel("x")
    assert.isFalse(held.start("x", () => undefined))
    held.cancel("y")
    held.cancel("z")
    assert.isFalse(held.start("y", () => undefined), "x, used up, made no room for y to be forgotten")
  })
})
