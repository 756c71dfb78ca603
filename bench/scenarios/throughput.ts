/**
 * throughput: 64 calls of `echo` in flight (64 lanes, each calling in a loop) until the total is
 * reached, after a warm-up: calls per second, and the host's own CPU time per call (user +
 * system µs of the host process, which is less disturbed by a noisy machine than wall time).
 */
import * as Effect from "effect/Effect"
import { echoParams, now, round } from "../lib/common.ts"
import { withDriver, type Driver, type DriverVariant } from "../variants/driver.ts"
import { isEffectVariant, makeClient, run as runEffect } from "../variants/effect.ts"
import type { PluginClient } from "../../src/index.ts"


export const inFlight = 64

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
  let elapsedMs = 0
  let cpu = { user: 0, system: 0 }
  if (isEffectVariant(variant)) {
    await runEffect(variant)(Effect.gen(function*() {
      const client = yield* makeClient(variant)
      yield* lanesEffect(client, warmup, inFlight)
      const start = now()
      const cpuStart = process.cpuUsage()
      yield* lanesEffect(client, calls, inFlight)
      cpu = process.cpuUsage(cpuStart)
      elapsedMs = now() - start
    }))
  } else {
    await withDriver(variant as DriverVariant, async (driver) => {
      await lanesPromise(driver, warmup, inFlight)
      const start = now()
      const cpuStart = process.cpuUsage()
      await lanesPromise(driver, calls, inFlight)
      cpu = process.cpuUsage(cpuStart)
      elapsedMs = now() - start
    })
  }
  return {
    calls,
    inFlight,
    callsPerSec: Math.round(calls / (elapsedMs / 1000)),
    hostCpuUsPerCall: round((cpu.user + cpu.system) / calls, 2),
    elapsedMs: round(elapsedMs)
  }
}
