/**
 * Durations as a person reads them: `350 ms`, `1.1 s`, `2 min 5 s`, `1 h 3 min`, `2 d 4 h`.
 *
 * `Duration.format` is exact, so a measured duration prints as `1s 75ms 591176ns`; every text a
 * person reads (error messages, the doctor table, the `run` view, the demo) goes through
 * {@link formatDuration} instead, which rounds to at most two units. Machine-readable text
 * (encoded config values) keeps `Duration.format`, which round-trips.
 *
 * @internal
 */
import * as Duration from "effect/Duration"

const SECOND = 1_000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

/** `1.0` → `1`, `1.25` → `1.3`: one decimal, none when it is zero. */
const oneDecimal = (n: number): string => {
  const tenths = Math.round(n * 10)
  return tenths % 10 === 0 ? String(tenths / 10) : (tenths / 10).toFixed(1)
}

/** `big` and `small` units of a whole count of `smallUnit`s, the second dropped when zero. */
const twoUnits = (count: number, perBig: number, big: string, small: string): string => {
  const whole = Math.floor(count / perBig)
  const rest = count % perBig
  return rest === 0 ? `${whole} ${big}` : `${whole} ${big} ${rest} ${small}`
}

/**
 * The duration in at most two units, rounded: below 1 ms in `µs`/`ns`, below 10 ms with one
 * decimal (`2.5 ms`), below 1 s in whole `ms`, below 1 min in seconds with one decimal
 * (`1.1 s`, `30 s`), below 1 h in `min` and whole `s`, below 1 day in `h` and `min`, above in
 * `d` and `h`. A rounding that reaches the next unit moves to it (`59.96 s` is `1 min`).
 * Negative durations get a `-`; an infinite one is `infinity`.
 *
 * @internal
 */
export const formatDuration = (input: Duration.Input): string => {
  const duration = Duration.fromInputUnsafe(input)
  if (!Duration.isFinite(duration)) return "infinity"
  const millis = Duration.toMillis(duration)
  if (millis < 0) return `-${formatDuration(Duration.millis(-millis))}`
  if (millis === 0) return "0 ms"
  if (millis < 0.001) return `${Math.round(millis * 1e6)} ns`
  if (millis < 1) {
    const micros = Math.round(millis * 1e3)
    if (micros < 1000) return `${micros} µs`
  }
  if (millis < 10 && Math.round(millis * 10) < 100) return `${oneDecimal(millis)} ms`
  if (Math.round(millis) < SECOND) return `${Math.round(millis)} ms`
  if (Math.round(millis / 100) < 600) return `${oneDecimal(millis / SECOND)} s`
  const seconds = Math.round(millis / SECOND)
  if (seconds < 3600) return twoUnits(seconds, 60, "min", "s")
  const minutes = Math.round(millis / MINUTE)
  if (minutes < 24 * 60) return twoUnits(minutes, 60, "h", "min")
  return twoUnits(Math.round(millis / HOUR), DAY / HOUR, "d", "h")
}
