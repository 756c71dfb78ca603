import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import { formatDuration } from "../../src/internal/formatDuration.ts"

describe("formatDuration (durations a person reads)", () => {
  it("a measured, non-round duration prints in at most two rounded units, never in nanoseconds", () => {
    // What Duration.format prints as "1s 75ms 591176ns".
    assert.strictEqual(formatDuration(Duration.nanos(1_075_591_176n)), "1.1 s")
    assert.strictEqual(formatDuration(Duration.millis(65_432)), "1 min 5 s")
    assert.strictEqual(formatDuration(Duration.millis(3_780_000 + 29_000)), "1 h 3 min")
    assert.strictEqual(formatDuration(Duration.hours(52)), "2 d 4 h")
  })

  it("round values keep one unit", () => {
    for (const [input, text] of [
      ["350 millis", "350 ms"],
      ["30 seconds", "30 s"],
      ["1 minute", "1 min"],
      ["2 hours", "2 h"],
      ["5 minutes", "5 min"],
      ["2500 millis", "2.5 s"]
    ] as const) assert.strictEqual(formatDuration(input), text, input)
  })

  it("sub-millisecond, zero, negative and infinite durations", () => {
    assert.strictEqual(formatDuration(Duration.zero), "0 ms")
    assert.strictEqual(formatDuration(Duration.nanos(500n)), "500 ns")
    assert.strictEqual(formatDuration(Duration.micros(250n)), "250 µs")
    assert.strictEqual(formatDuration(Duration.micros(2_500n)), "2.5 ms")
    assert.strictEqual(formatDuration(-1500), "-1.5 s")
    assert.strictEqual(formatDuration(Duration.infinity), "infinity")
  })

  it("a rounding that reaches the next unit moves to it", () => {
    assert.strictEqual(formatDuration(999.7), "1 s")
    assert.strictEqual(formatDuration(59_960), "1 min")
    assert.strictEqual(formatDuration(3_599_700), "1 h")
    assert.strictEqual(formatDuration(Duration.minutes(24 * 60 - 0.2)), "1 d")
  })
})
