import { assert, describe, it } from "@effect/vitest"
import * as LineBatcher from "../../src/internal/lineBatcher.ts"

/** A batcher recording every write. */
const recording = () => {
  const writes: Array<string> = []
  return { writes, batcher: LineBatcher.make((data) => writes.push(data)) }
}

/** Lets queued microtasks (the end-of-turn flush) run. */
const endOfTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

describe("LineBatcher (the write batching both sides use)", () => {
  it("lines queued in one turn go out in one write at the end of the turn, newline-terminated", async () => {
    const { writes, batcher } = recording()
    batcher.push("a")
    batcher.push("b")
    assert.deepStrictEqual(writes, [])
    await endOfTurn()
    assert.deepStrictEqual(writes, ["a\nb\n"])
  })

  it("a burst is written in slices of 16 lines before the turn ends, the rest at its end", async () => {
    const { writes, batcher } = recording()
    for (let i = 0; i < 40; i++) batcher.push(String(i))
    assert.deepStrictEqual(writes.map((w) => w.split("\n").length - 1), [LineBatcher.sliceLines, LineBatcher.sliceLines])
    await endOfTurn()
    assert.deepStrictEqual(writes.map((w) => w.split("\n").length - 1), [16, 16, 8])
    assert.strictEqual(writes.join(""), Array.from({ length: 40 }, (_, i) => `${i}\n`).join(""))
  })

  it("large lines are written as soon as a slice holds 64 KiB", () => {
    const { writes, batcher } = recording()
    const big = "x".repeat(40 * 1024)
    batcher.push(big)
    assert.deepStrictEqual(writes, [])
    batcher.push(big)
    assert.deepStrictEqual(writes, [`${big}\n${big}\n`])
  })

  it("flush writes at once; clear drops what is queued, so the end of the turn writes nothing", async () => {
    const { writes, batcher } = recording()
    batcher.push("now")
    batcher.flush()
    assert.deepStrictEqual(writes, ["now\n"])
    batcher.push("never")
    batcher.clear()
    await endOfTurn()
    assert.deepStrictEqual(writes, ["now\n"])
  })
})
