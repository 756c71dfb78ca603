import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import { TestClock } from "effect/testing"
import * as LifetimePolicy from "../src/LifetimePolicy.ts"

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const ms = (d: Duration.Duration) => Duration.toMillis(d)

const plainBackoff = (b: LifetimePolicy.Backoff) => ({
  initial: ms(b.initial),
  factor: b.factor,
  jitter: b.jitter,
  max: ms(b.max),
  giveUpAfter: b.giveUpAfter,
  resetAfter: ms(b.resetAfter)
})

/** The policy with every duration in millis, so whole records compare with `deepStrictEqual`. */
const plain = (p: LifetimePolicy.LifetimePolicy) => ({
  start: p.start,
  idleTimeout: p.idleTimeout === undefined ? undefined : ms(p.idleTimeout),
  shutdownGrace: ms(p.shutdownGrace),
  drainTimeout: ms(p.drainTimeout),
  restartWindow: ms(p.restartWindow),
  restartCap: p.restartCap,
  requestTimeout: ms(p.requestTimeout),
  maxRequestTimeout: ms(p.maxRequestTimeout),
  initTimeout: ms(p.initTimeout),
  maxConcurrentRequests: p.maxConcurrentRequests,
  maxLineBytes: p.maxLineBytes,
  maxQueuedBytes: p.maxQueuedBytes,
  consecutiveTimeoutsBeforeRecycle: p.consecutiveTimeoutsBeforeRecycle,
  backoff: p.backoff === undefined ? undefined : plainBackoff(p.backoff),
  cancellation: p.cancellation,
  framing: p.framing,
  containment: p.containment
})

const S = 1000
const MIN = 60 * S

type Plain = ReturnType<typeof plain>

const DEFAULT_PLAIN: Plain = {
  start: "lazy",
  idleTimeout: 60 * S,
  shutdownGrace: 10 * S,
  drainTimeout: 10 * S,
  restartWindow: 60 * S,
  restartCap: 3,
  requestTimeout: 30 * S,
  maxRequestTimeout: 5 * MIN,
  initTimeout: 15 * S,
  maxConcurrentRequests: 64,
  maxLineBytes: 16 * 1024 * 1024,
  maxQueuedBytes: 32 * 1024 * 1024,
  consecutiveTimeoutsBeforeRecycle: 3,
  backoff: undefined,
  cancellation: "none",
  framing: "ndjson",
  containment: "cgroup"
}

const BACKOFF_PLAIN: ReturnType<typeof plainBackoff> = { initial: 1 * S, factor: 2, jitter: 0.25, max: 5 * MIN, giveUpAfter: 10, resetAfter: 10 * MIN }

const ALWAYS_ON_PLAIN: Plain = {
  ...DEFAULT_PLAIN,
  start: "eager",
  idleTimeout: undefined,
  shutdownGrace: 5 * S,
  backoff: BACKOFF_PLAIN
}

const fromEnv = (env: Record<string, string>) =>
  Effect.provideService(LifetimePolicy.config, ConfigProvider.ConfigProvider, ConfigProvider.fromEnvRecord(env))

const configError = (env: Record<string, string>) =>
  Effect.map(Effect.flip(fromEnv(env)), (e) => e.message)

const policyError = (input: LifetimePolicy.Input) => Effect.flip(LifetimePolicy.make(input))

// ---------------------------------------------------------------------------------------------
// presets
// ---------------------------------------------------------------------------------------------

describe("LifetimePolicy presets", () => {
  it("default has exactly the devboy values", () => {
    assert.deepStrictEqual(plain(LifetimePolicy.default), DEFAULT_PLAIN)
    assert.strictEqual(LifetimePolicy.default, LifetimePolicy.defaultPolicy)
    assert.deepStrictEqual(Object.keys(LifetimePolicy.default).sort(), Object.keys(DEFAULT_PLAIN).sort())
  })

  it("alwaysOn has exactly the Paperclip values", () => {
    assert.deepStrictEqual(plain(LifetimePolicy.alwaysOn), ALWAYS_ON_PLAIN)
    assert.deepStrictEqual(plainBackoff(LifetimePolicy.defaultBackoff), BACKOFF_PLAIN)
    assert.strictEqual(LifetimePolicy.alwaysOn.backoff, LifetimePolicy.defaultBackoff)
  })

  it.effect("both presets pass validation unchanged", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(plain(yield* LifetimePolicy.make(LifetimePolicy.default)), DEFAULT_PLAIN)
      assert.deepStrictEqual(plain(yield* LifetimePolicy.make(LifetimePolicy.alwaysOn)), ALWAYS_ON_PLAIN)
    }))
})

// ---------------------------------------------------------------------------------------------
// make
// ---------------------------------------------------------------------------------------------

describe("LifetimePolicy.make", () => {
  it.effect("an empty input is the default", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(plain(yield* LifetimePolicy.make({})), DEFAULT_PLAIN)
    }))

  it.effect("merges a partial over the default, accepting any Duration.Input", () =>
    Effect.gen(function*() {
      const policy = yield* LifetimePolicy.make({
        start: "eager",
        idleTimeout: "5 seconds",
        shutdownGrace: 2500,
        requestTimeout: Duration.seconds(3),
        restartCap: 5,
        maxConcurrentRequests: 1
      })
      assert.deepStrictEqual(plain(policy), {
        ...DEFAULT_PLAIN,
        start: "eager",
        idleTimeout: 5 * S,
        shutdownGrace: 2500,
        requestTimeout: 3 * S,
        restartCap: 5,
        maxConcurrentRequests: 1
      })
    }))

  it.effect("explicit undefined means never reap / no backoff; a missing key means the default", () =>
    Effect.gen(function*() {
      const never = yield* LifetimePolicy.make({ idleTimeout: undefined })
      assert.isUndefined(never.idleTimeout)
      const missing = yield* LifetimePolicy.make({ restartCap: 4 })
      assert.strictEqual(ms(missing.idleTimeout ?? Duration.zero), 60 * S)
      const noBackoff = yield* LifetimePolicy.make({ ...LifetimePolicy.alwaysOn, backoff: undefined })
      assert.isUndefined(noBackoff.backoff)
    }))

  it.effect("a partial backoff merges over defaultBackoff", () =>
    Effect.gen(function*() {
      const policy = yield* LifetimePolicy.make({ backoff: { initial: "2 seconds", giveUpAfter: 4 } })
      assert.deepStrictEqual(plainBackoff(policy.backoff ?? LifetimePolicy.defaultBackoff), {
        ...BACKOFF_PLAIN,
        initial: 2 * S,
        giveUpAfter: 4
      })
    }))

  it.effect("spreading a preset and overriding one knob keeps the rest of the preset", () =>
    Effect.gen(function*() {
      const policy = yield* LifetimePolicy.make({ ...LifetimePolicy.alwaysOn, restartCap: 7 })
      assert.deepStrictEqual(plain(policy), { ...ALWAYS_ON_PLAIN, restartCap: 7 })
    }))

  const invalid: ReadonlyArray<readonly [string, LifetimePolicy.Input, string, string]> = [
    ["zero duration", { shutdownGrace: 0 }, "shutdownGrace", "must be a positive, finite duration"],
    ["negative duration", { drainTimeout: "-1 seconds" }, "drainTimeout", "must be a positive, finite duration"],
    ["infinite duration", { initTimeout: "Infinity" }, "initTimeout", "must be a positive, finite duration"],
    ["zero idle timeout", { idleTimeout: 0 }, "idleTimeout", "must be a positive, finite duration"],
    ["zero restart window", { restartWindow: Duration.zero }, "restartWindow", "must be a positive, finite duration"],
    ["restartCap 0", { restartCap: 0 }, "restartCap", "must be an integer >= 1 (got 0)"],
    ["restartCap 1.5", { restartCap: 1.5 }, "restartCap", "must be an integer >= 1 (got 1.5)"],
    ["maxConcurrentRequests 0", { maxConcurrentRequests: 0 }, "maxConcurrentRequests", "must be an integer >= 1"],
    ["maxLineBytes 1023", { maxLineBytes: 1023 }, "maxLineBytes", "must be an integer >= 1024 (got 1023)"],
    ["maxQueuedBytes 1000", { maxQueuedBytes: 1000 }, "maxQueuedBytes", "must be an integer >= 65536 (got 1000)"],
    [
      "consecutiveTimeoutsBeforeRecycle 0",
      { consecutiveTimeoutsBeforeRecycle: 0 },
      "consecutiveTimeoutsBeforeRecycle",
      "must be an integer >= 1"
    ],
    [
      "requestTimeout > maxRequestTimeout",
      { requestTimeout: "10 minutes" },
      "requestTimeout",
      "(10 min) must not exceed maxRequestTimeout (5 min)"
    ],
    ["jitter 1", { backoff: { jitter: 1 } }, "backoff.jitter", "must be in [0, 1) (got 1)"],
    ["jitter -0.1", { backoff: { jitter: -0.1 } }, "backoff.jitter", "must be in [0, 1) (got -0.1)"],
    ["factor 0.5", { backoff: { factor: 0.5 } }, "backoff.factor", "must be a finite number >= 1 (got 0.5)"],
    ["giveUpAfter 0", { backoff: { giveUpAfter: 0 } }, "backoff.giveUpAfter", "must be an integer >= 1"],
    ["backoff.initial 0", { backoff: { initial: 0 } }, "backoff.initial", "must be a positive, finite duration"],
    [
      "backoff.initial > max",
      { backoff: { initial: "10 minutes", max: "1 minute" } },
      "backoff.initial",
      "(10 min) must not exceed backoff.max (1 min)"
    ],
    ["resetAfter 0", { backoff: { resetAfter: 0 } }, "backoff.resetAfter", "must be a positive, finite duration"]
  ]

  for (const [name, input, knob, detail] of invalid) {
    it.effect(`rejects ${name} with a PolicyError naming \`${knob}\``, () =>
      Effect.gen(function*() {
        const error = yield* policyError(input)
        assert.strictEqual(error._tag, "PolicyError")
        assert.strictEqual(error.knob, knob)
        assert.include(error.detail, detail)
        assert.strictEqual(error.message, `invalid lifetime policy: \`${knob}\` ${error.detail}`)
      }))
  }

  it.effect("rejects a start that is neither lazy nor eager (untyped callers)", () =>
    Effect.gen(function*() {
      const input: Record<string, unknown> = { start: "sometimes" }
      const error = yield* Effect.flip(LifetimePolicy.make(input))
      assert.strictEqual(error.knob, "start")
      assert.include(error.message, `must be "lazy" or "eager" (got "sometimes")`)
    }))

  it("makeUnsafe returns the policy or throws the PolicyError", () => {
    assert.strictEqual(LifetimePolicy.makeUnsafe({ restartCap: 9 }).restartCap, 9)
    assert.throws(() => LifetimePolicy.makeUnsafe({ restartCap: 0 }), /`restartCap` must be an integer >= 1/)
    try {
      LifetimePolicy.makeUnsafe({ maxLineBytes: 10 })
      assert.fail("should have thrown")
    } catch (e) {
      assert.instanceOf(e, LifetimePolicy.PolicyError)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------------------------

describe("LifetimePolicy.config", () => {
  it.effect("configWithDefaults: unset keys take the application's defaults, set keys override them, PRESET still picks a preset", () =>
    Effect.gen(function*() {
      const appDefaults = LifetimePolicy.makeUnsafe({ shutdownGrace: "2 seconds", idleTimeout: "10 minutes" })
      const read = (env: Record<string, string>) =>
        Effect.provideService(LifetimePolicy.configWithDefaults(appDefaults), ConfigProvider.ConfigProvider, ConfigProvider.fromEnvRecord(env))
      const unset = yield* read({})
      assert.strictEqual(Duration.toMillis(unset.shutdownGrace), 2 * S)
      assert.strictEqual(Duration.toMillis(unset.idleTimeout ?? Duration.zero), 600 * S)
      const overridden = yield* read({ PLUGIN_HOST_SHUTDOWN_GRACE: "7s", PLUGIN_HOST_RESTART_CAP: "1" })
      assert.strictEqual(Duration.toMillis(overridden.shutdownGrace), 7 * S)
      assert.strictEqual(Duration.toMillis(overridden.idleTimeout ?? Duration.zero), 600 * S)
      assert.strictEqual(overridden.restartCap, 1)
      const preset = yield* read({ PLUGIN_HOST_PRESET: "default" })
      assert.strictEqual(Duration.toMillis(preset.shutdownGrace), 10 * S)
      const bad = yield* Effect.flip(read({ PLUGIN_HOST_RESTART_CAP: "0" }))
      assert.include(bad.message, "restartCap must be an integer >= 1")
    }))

  it.effect("an empty environment is the default", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(plain(yield* fromEnv({})), DEFAULT_PLAIN)
    }))

  it.effect("reads every knob with the PLUGIN_HOST_ prefix", () =>
    Effect.gen(function*() {
      const policy = yield* fromEnv({
        PLUGIN_HOST_START: "eager",
        PLUGIN_HOST_IDLE_TIMEOUT: "30s",
        PLUGIN_HOST_SHUTDOWN_GRACE: "2 seconds",
        PLUGIN_HOST_DRAIN_TIMEOUT: "1500ms",
        PLUGIN_HOST_RESTART_WINDOW: "2m",
        PLUGIN_HOST_RESTART_CAP: "5",
        PLUGIN_HOST_REQUEST_TIMEOUT: "1m 30s",
        PLUGIN_HOST_MAX_REQUEST_TIMEOUT: "10 minutes",
        PLUGIN_HOST_INIT_TIMEOUT: "20s",
        PLUGIN_HOST_MAX_CONCURRENT_REQUESTS: "1",
        PLUGIN_HOST_MAX_LINE_BYTES: "1 MiB",
        PLUGIN_HOST_MAX_QUEUED_BYTES: "8 MiB",
        PLUGIN_HOST_CONSECUTIVE_TIMEOUTS_BEFORE_RECYCLE: "7",
        PLUGIN_HOST_CANCELLATION: "mcp",
        PLUGIN_HOST_FRAMING: "content-length",
        PLUGIN_HOST_CONTAINMENT: "process-tree",
        PLUGIN_HOST_BACKOFF_INITIAL: "500ms",
        PLUGIN_HOST_BACKOFF_FACTOR: "3",
        PLUGIN_HOST_BACKOFF_JITTER: "0.1",
        PLUGIN_HOST_BACKOFF_MAX: "1m",
        PLUGIN_HOST_BACKOFF_GIVE_UP_AFTER: "4",
        PLUGIN_HOST_BACKOFF_RESET_AFTER: "1h"
      })
      assert.deepStrictEqual(plain(policy), {
        start: "eager",
        idleTimeout: 30 * S,
        shutdownGrace: 2 * S,
        drainTimeout: 1500,
        restartWindow: 2 * MIN,
        restartCap: 5,
        requestTimeout: 90 * S,
        maxRequestTimeout: 10 * MIN,
        initTimeout: 20 * S,
        maxConcurrentRequests: 1,
        maxLineBytes: 1024 * 1024,
        maxQueuedBytes: 8 * 1024 * 1024,
        consecutiveTimeoutsBeforeRecycle: 7,
        backoff: { initial: 500, factor: 3, jitter: 0.1, max: 1 * MIN, giveUpAfter: 4, resetAfter: 60 * MIN },
        cancellation: "mcp",
        framing: "content-length",
        containment: "process-tree"
      })
    }))

  it.effect("IDLE_TIMEOUT=never disables reaping; MAX_LINE_BYTES takes a plain integer", () =>
    Effect.gen(function*() {
      const policy = yield* fromEnv({ PLUGIN_HOST_IDLE_TIMEOUT: "never", PLUGIN_HOST_MAX_LINE_BYTES: "4096" })
      assert.deepStrictEqual(plain(policy), { ...DEFAULT_PLAIN, idleTimeout: undefined, maxLineBytes: 4096 })
    }))

  it.effect("PRESET=alwaysOn starts from alwaysOn; BACKOFF=off removes its backoff", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(plain(yield* fromEnv({ PLUGIN_HOST_PRESET: "alwaysOn" })), ALWAYS_ON_PLAIN)
      assert.deepStrictEqual(
        plain(yield* fromEnv({ PLUGIN_HOST_PRESET: "always-on", PLUGIN_HOST_RESTART_CAP: "4" })),
        { ...ALWAYS_ON_PLAIN, restartCap: 4 }
      )
      assert.deepStrictEqual(
        plain(yield* fromEnv({ PLUGIN_HOST_PRESET: "alwaysOn", PLUGIN_HOST_BACKOFF: "off" })),
        { ...ALWAYS_ON_PLAIN, backoff: undefined }
      )
    }))

  it.effect("BACKOFF=on, or any BACKOFF_* key, enables defaultBackoff with overrides", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(plain(yield* fromEnv({ PLUGIN_HOST_BACKOFF: "on" })).backoff, BACKOFF_PLAIN)
      assert.deepStrictEqual(
        plain(yield* fromEnv({ PLUGIN_HOST_BACKOFF_GIVE_UP_AFTER: "3" })).backoff,
        { ...BACKOFF_PLAIN, giveUpAfter: 3 }
      )
    }))

  const bad: ReadonlyArray<readonly [string, Record<string, string>, ReadonlyArray<string>]> = [
    ["a duration that is not one", { PLUGIN_HOST_IDLE_TIMEOUT: "soon" }, [
      `expected a duration such as "30s"`,
      `"soon"`,
      `["PLUGIN_HOST"]["IDLE_TIMEOUT"]`
    ]],
    ["a duration without a unit", { PLUGIN_HOST_REQUEST_TIMEOUT: "30" }, [
      `expected a duration`,
      `["PLUGIN_HOST"]["REQUEST_TIMEOUT"]`
    ]],
    ["a fractional integer", { PLUGIN_HOST_RESTART_CAP: "2.5" }, ["Expected an integer", `["PLUGIN_HOST"]["RESTART_CAP"]`]],
    ["an unknown start", { PLUGIN_HOST_START: "sometimes" }, [`"lazy" | "eager"`, `["PLUGIN_HOST"]["START"]`]],
    ["an unknown preset", { PLUGIN_HOST_PRESET: "turbo" }, [`["PLUGIN_HOST"]["PRESET"]`]],
    ["an unknown cancellation dialect", { PLUGIN_HOST_CANCELLATION: "grpc" }, [`"lsp" | "mcp" | "none"`, `["PLUGIN_HOST"]["CANCELLATION"]`]],
    ["an unknown framing", { PLUGIN_HOST_FRAMING: "lines" }, [`"ndjson" | "content-length"`, `["PLUGIN_HOST"]["FRAMING"]`]],
    ["an unknown containment", { PLUGIN_HOST_CONTAINMENT: "jail" }, [`"cgroup" | "process-tree"`, `["PLUGIN_HOST"]["CONTAINMENT"]`]],
    ["a bad byte size", { PLUGIN_HOST_MAX_LINE_BYTES: "lots" }, [
      `expected a byte count such as 16777216 or "16 MiB"`,
      `["PLUGIN_HOST"]["MAX_LINE_BYTES"]`
    ]],
    ["restartCap 0 (validation)", { PLUGIN_HOST_RESTART_CAP: "0" }, [
      "restartCap must be an integer >= 1 (got 0)",
      `["PLUGIN_HOST"]["RESTART_CAP"]`
    ]],
    ["maxLineBytes below 1024", { PLUGIN_HOST_MAX_LINE_BYTES: "100" }, [
      "maxLineBytes must be an integer >= 1024 (got 100)",
      `["PLUGIN_HOST"]["MAX_LINE_BYTES"]`
    ]],
    ["a zero duration", { PLUGIN_HOST_SHUTDOWN_GRACE: "0s" }, [
      "shutdownGrace must be a positive, finite duration",
      `["PLUGIN_HOST"]["SHUTDOWN_GRACE"]`
    ]],
    ["requestTimeout above maxRequestTimeout", { PLUGIN_HOST_REQUEST_TIMEOUT: "6m" }, [
      "requestTimeout (6 min) must not exceed maxRequestTimeout (5 min)",
      `["PLUGIN_HOST"]["REQUEST_TIMEOUT"]`
    ]],
    ["jitter 1", { PLUGIN_HOST_BACKOFF_JITTER: "1" }, [
      "backoff.jitter must be in [0, 1) (got 1)",
      `["PLUGIN_HOST"]["BACKOFF_JITTER"]`
    ]],
    ["factor below 1", { PLUGIN_HOST_BACKOFF_FACTOR: "0.5" }, [
      "backoff.factor must be a finite number >= 1",
      `["PLUGIN_HOST"]["BACKOFF_FACTOR"]`
    ]],
    ["BACKOFF=off with a BACKOFF_* key", { PLUGIN_HOST_BACKOFF: "off", PLUGIN_HOST_BACKOFF_MAX: "1m" }, [
      `backoff.max is set but PLUGIN_HOST_BACKOFF is "off"`,
      `["PLUGIN_HOST"]["BACKOFF_MAX"]`
    ]]
  ]

  for (const [name, env, fragments] of bad) {
    it.effect(`fails with a ConfigError for ${name}`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(fromEnv(env))
        assert.strictEqual(error._tag, "ConfigError")
        const message = yield* configError(env)
        for (const fragment of fragments) assert.include(message, fragment)
      }))
  }
})

// ---------------------------------------------------------------------------------------------
// backoff
// ---------------------------------------------------------------------------------------------

const b = LifetimePolicy.defaultBackoff
const lower = (n: number) => ms(b.initial) * 2 ** (n - 1) * 0.75
const upper = (n: number) => Math.min(ms(b.max), ms(b.initial) * 2 ** (n - 1) * 1.25)

/** A `Random` that always returns `value`. */
const fixedRandom = (value: number) => ({ nextDoubleUnsafe: () => value, nextIntUnsafe: () => 0 })

describe("LifetimePolicy.backoffDelay", () => {
  it("stays within [initial·2^(n-1)·0.75, min(max, initial·2^(n-1)·1.25)] and never above max", () => {
    for (let n = 1; n <= 12; n++) {
      for (const random of [0, 0.5, 0.999]) {
        const delay = ms(LifetimePolicy.backoffDelay(b, n, random))
        assert.isAtMost(delay, ms(b.max), `n=${n} random=${random}`)
        assert.isAtMost(delay, upper(n), `n=${n} random=${random}`)
        // when the cap is below the jittered lower bound, the delay is the cap itself
        assert.isAtLeast(delay, Math.min(lower(n), ms(b.max)), `n=${n} random=${random}`)
      }
    }
  })

  it("is exactly initial·factor^(n-1) at random 0.5, and spans the jitter at 0 and 0.999", () => {
    assert.deepStrictEqual(
      [1, 2, 3, 4, 8].map((n) => ms(LifetimePolicy.backoffDelay(b, n, 0.5))),
      [1000, 2000, 4000, 8000, 128_000]
    )
    assert.strictEqual(ms(LifetimePolicy.backoffDelay(b, 1, 0)), 750)
    assert.closeTo(ms(LifetimePolicy.backoffDelay(b, 1, 0.999)), 1249.5, 1e-6)
  })

  it("applies the cap after the jitter", () => {
    // n = 10: 512 s before jitter. Jitter then cap: min(300, 384) = 300 s. Cap then jitter would give 225 s.
    assert.strictEqual(ms(LifetimePolicy.backoffDelay(b, 10, 0)), 300_000)
    // n = 9: 256 s, +25 % would be 320 s, the cap keeps it at 300 s.
    assert.strictEqual(ms(LifetimePolicy.backoffDelay(b, 9, 0.999)), 300_000)
    // n = 9 with low jitter stays below the cap.
    assert.strictEqual(ms(LifetimePolicy.backoffDelay(b, 9, 0)), 192_000)
  })

  it("treats a crash count below 1 as the first crash", () => {
    assert.strictEqual(ms(LifetimePolicy.backoffDelay(b, 0, 0.5)), 1000)
    assert.strictEqual(ms(LifetimePolicy.backoffDelay(b, -3, 0.5)), 1000)
  })

  it("nextConsecutiveCrashes resets once the previous crash is resetAfter old; givesUp after giveUpAfter restarts", () => {
    assert.strictEqual(LifetimePolicy.nextConsecutiveCrashes(b, 0, undefined, 0), 1)
    assert.strictEqual(LifetimePolicy.nextConsecutiveCrashes(b, 4, 0, 10 * MIN - 1), 5)
    assert.strictEqual(LifetimePolicy.nextConsecutiveCrashes(b, 4, 0, 10 * MIN), 1)
    // Crashes 1–10 are each followed by a restart; the 11th comes after 10 restarts and is not.
    assert.isFalse(LifetimePolicy.givesUp(b, 10))
    assert.isTrue(LifetimePolicy.givesUp(b, 11))
  })
})

describe("LifetimePolicy.backoffSchedule", () => {
  it.effect("step by step: the delays of backoffDelay, jitter from Random, done after giveUpAfter restarts", () =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(LifetimePolicy.backoffSchedule(b))
      const outputs: Array<number> = []
      const delays: Array<number> = []
      let now = 0
      for (let n = 1; n <= 10; n++) {
        const [output, delay] = yield* step(now, undefined)
        outputs.push(output)
        delays.push(ms(delay))
        now += ms(delay)
      }
      assert.deepStrictEqual(outputs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      assert.deepStrictEqual(
        delays,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => ms(LifetimePolicy.backoffDelay(b, n, 0.999)))
      )
      assert.strictEqual(delays[8], 300_000) // 256 s · 1.2495 capped
      assert.strictEqual(delays[9], 300_000)
      const eleventh = yield* Effect.exit(step(now, undefined))
      assert.isTrue(Exit.isFailure(eleventh), "the 11th consecutive crash, after 10 restarts, gives up")
    }).pipe(Effect.provideService(Random.Random, fixedRandom(0.999))))

  it.effect("a crash resetAfter after the previous one starts the count again", () =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(LifetimePolicy.backoffSchedule(b))
      const [first] = yield* step(0, undefined)
      const [second] = yield* step(5 * S, undefined)
      const [third, delay] = yield* step(5 * S + 10 * MIN, undefined)
      assert.deepStrictEqual([first, second, third], [1, 2, 1])
      assert.strictEqual(ms(delay), 1000)
    }).pipe(Effect.provideService(Random.Random, fixedRandom(0.5))))

  it.effect("drives Effect.retry under TestClock: 10 retries (11 attempts), gaps within the jitter bounds", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      const crash = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        attempts.push(now)
        return Effect.fail(`crash ${attempts.length}`)
      })
      const fiber = yield* Effect.retry(crash, LifetimePolicy.backoffSchedule(b)).pipe(Effect.forkChild)
      yield* TestClock.adjust("1 hour")
      const exit = yield* Fiber.await(fiber)
      assert.deepStrictEqual(exit, Exit.fail("crash 11"))
      assert.strictEqual(attempts.length, 11)
      const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] ?? 0))
      gaps.forEach((gap, i) => {
        const n = i + 1
        // Instants are sums of float milliseconds, so differences carry rounding noise.
        const epsilon = 1e-6
        assert.isAtLeast(gap, Math.floor(Math.min(lower(n), ms(b.max))) - epsilon, `gap before restart ${n}`)
        assert.isAtMost(gap, Math.ceil(upper(n)) + epsilon, `gap before restart ${n}`)
      })
      // Not every gap is the un-jittered value: Random was really used.
      assert.isTrue(gaps.some((gap, i) => gap !== 1000 * 2 ** i), `gaps: ${gaps.join(", ")}`)
    }))
})
