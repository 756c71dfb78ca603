/**
 * throughput: 64 calls of `echo` in flight (64 lanes, each calling in a loop) until the total is
 * reached, after a warm-up: calls per second, and the host's own CPU time per call (user +
 * system µs of the host process, which is less disturbed by a noisy machine than wall time).
 *
 * The calls run in {@link blocks} blocks one after another, and `callsPerSec` is the upper
 * quartile of the blocks' rates: on a shared machine a block during which another process held
 * a core runs at a fraction of the speed, and the mean over all blocks (`callsPerSecOverall`)
 * moves with how much of that a measurement happened to meet. The host CPU per call is over all
 * blocks.
 */
import * as Effect from "effect/Effect"
import { echoParams, now, quantile, round } from "../lib/common.ts"
import { withDriver, type Driver, type DriverVariant } from "../variants/driver.ts"
import { isEffectVariant, makeClient, run as runEffect } from "../variants/effect.ts"
import type { PluginClient } from "../../src/index.ts"


export const inFlight = 64
/** Blocks the measured calls are split into (each ends with the lanes drained: ≤ 64 calls of bubble). */
export const blocks = 10

export const counts = (quick: boolean) => quick ? { warmup: 20_000, calls: 100_000 } : { warmup: 20_000, calls: 200_000 }

/** `total` calls over `inFlight` lanes, in Effect. */
export const lanesEffect = (client: PluginClient.PluginClient, total: number, lanes: number, method = "echo", params?: unknown) =>
  Effect.suspend(() => {
    let issued = 0
    const lane = Effect.gen(function*() {
      while (issued < total) {
        const n = issued++
        yield* client.request(method, params ?? echoParams(n))
      }
    })
    return Effect.all(Array.from({ length: lanes }, () => lane), { concurrency: "unbounded", discard: true })
  })

/** The rate of a block of `calls` calls that took `ms` milliseconds. */
export const perSecond = (calls: number, ms: number) => calls / (ms / 1000)

/** The upper quartile of blocks' rates (calls/s), see the module comment. */
export const blockRate = (rates: ReadonlyArray<number>) => Math.round(quantile(rates, 0.75))

/** `total` calls over `inFlight` lanes, with Promises. */
export const lanesPromise = async (driver: Driver, total: number, lanes: number, method = "echo", params?: unknown) => {
  let issued = 0
  const lane = async () => {
    while (issued < total) {
      const n = issued++
      await driver.call(method, params ?? echoParams(n))
    }
  }
  await Promise.all(Array.from({ length: lanes }, lane))
}

export const run = async (variant: string, quick: boolean) => {
  const { warmup, calls } = counts(quick)
  const perBlock = Math.ceil(calls / blocks)
  const rates: Array<number> = []
  let elapsedMs = 0
  let cpu = { user: 0, system: 0 }
  if (isEffectVariant(variant)) {
    await runEffect(variant)(Effect.gen(function*() {
      const client = yield* makeClient(variant)
      yield* lanesEffect(client, warmup, inFlight)
      const start = now()
      const cpuStart = process.cpuUsage()
      for (let b = 0; b < blocks; b++) {
        const blockStart = now()
        yield* lanesEffect(client, perBlock, inFlight)
        rates.push(perSecond(perBlock, now() - blockStart))
      }
      cpu = process.cpuUsage(cpuStart)
      elapsedMs = now() - start
    }))
  } else {
    await withDriver(variant as DriverVariant, async (driver) => {
      await lanesPromise(driver, warmup, inFlight)
      const start = now()
      const cpuStart = process.cpuUsage()
      for (let b = 0; b < blocks; b++) {
        const blockStart = now()
        await lanesPromise(driver, perBlock, inFlight)
        rates.push(perSecond(perBlock, now() - blockStart))
      }
      cpu = process.cpuUsage(cpuStart)
      elapsedMs = now() - start
    })
  }
  const measured = perBlock * blocks
  return {
    calls: measured,
    inFlight,
    callsPerSec: blockRate(rates),
    callsPerSecOverall: Math.round(perSecond(measured, elapsedMs)),
    hostCpuUsPerCall: round((cpu.user + cpu.system) / measured, 2),
    elapsedMs: round(elapsedMs)
  }
}
