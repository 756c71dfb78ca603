/**
 * payload: `payload` returns a string of 64 KiB, then of 1 MiB (the request is tiny). For each
 * size: sequential latency (p50, p99 in µs) and throughput with 16 calls in flight (calls/s, MiB/s
 * of results, and the host's own CPU time per call in µs). As in `throughput.ts`, the calls with
 * 16 in flight run in blocks and `callsPerSec` is the upper quartile of the blocks' rates.
 */
import * as Effect from "effect/Effect"
import { check, now, quantile, round } from "../lib/common.ts"
import { withDriver, type Driver, type DriverVariant } from "../variants/driver.ts"
import { isEffectVariant, makeClient, run as runEffect } from "../variants/effect.ts"
import { blockRate, lanesEffect, lanesPromise, perSecond } from "./throughput.ts"
import type { PluginClient } from "../../src/index.ts"


export const inFlight = 16
const blocks = 5

export const sizes = [
  { name: "64KiB", bytes: 64 * 1024 },
  { name: "1MiB", bytes: 1024 * 1024 }
] as const

export const counts = (quick: boolean, bytes: number) => {
  const small = bytes <= 64 * 1024
  return quick
    ? small ? { warmup: 100, latencyCalls: 300, throughputCalls: 1_000 } : { warmup: 10, latencyCalls: 30, throughputCalls: 100 }
    : small ? { warmup: 200, latencyCalls: 2_000, throughputCalls: 5_000 } : { warmup: 20, latencyCalls: 200, throughputCalls: 500 }
}

interface Timings {
  readonly samplesMs: Float64Array
  readonly rates: Array<number>
  throughputMs: number
  throughputCpuUs: number
}

const summarize = (bytes: number, calls: number, t: Timings) => ({
  p50Us: round(quantile(t.samplesMs, 0.5) * 1000),
  p99Us: round(quantile(t.samplesMs, 0.99) * 1000),
  callsPerSec: blockRate(t.rates),
  mibPerSec: round((blockRate(t.rates) * bytes) / (1024 * 1024)),
  hostCpuUsPerCall: round(t.throughputCpuUs / calls)
})

const cpuUs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since)
  return used.user + used.system
}

const effectSize = (client: PluginClient.PluginClient, bytes: number, quick: boolean) =>
  Effect.gen(function*() {
    const c = counts(quick, bytes)
    const params = { bytes }
    const first = yield* client.request("payload", params)
    check(typeof first === "string" && first.length === bytes, `payload of ${bytes} bytes`)
    yield* lanesEffect(client, c.warmup, inFlight, "payload", params)
    const t: Timings = { samplesMs: new Float64Array(c.latencyCalls), rates: [], throughputMs: 0, throughputCpuUs: 0 }
    for (let i = 0; i < c.latencyCalls; i++) {
      const start = now()
      yield* client.request("payload", params)
      t.samplesMs[i] = now() - start
    }
    const start = now()
    const cpuStart = process.cpuUsage()
    const perBlock = Math.ceil(c.throughputCalls / blocks)
    for (let b = 0; b < blocks; b++) {
      const blockStart = now()
      yield* lanesEffect(client, perBlock, inFlight, "payload", params)
      t.rates.push(perSecond(perBlock, now() - blockStart))
    }
    t.throughputCpuUs = cpuUs(cpuStart)
    t.throughputMs = now() - start
    return summarize(bytes, c.throughputCalls, t)
  })

const promiseSize = async (driver: Driver, bytes: number, quick: boolean) => {
  const c = counts(quick, bytes)
  const params = { bytes }
  const first = await driver.call("payload", params)
  check(typeof first === "string" && first.length === bytes, `payload of ${bytes} bytes`)
  await lanesPromise(driver, c.warmup, inFlight, "payload", params)
  const t: Timings = { samplesMs: new Float64Array(c.latencyCalls), rates: [], throughputMs: 0, throughputCpuUs: 0 }
  for (let i = 0; i < c.latencyCalls; i++) {
    const start = now()
    await driver.call("payload", params)
    t.samplesMs[i] = now() - start
  }
  const start = now()
  const cpuStart = process.cpuUsage()
  const perBlock = Math.ceil(c.throughputCalls / blocks)
  for (let b = 0; b < blocks; b++) {
    const blockStart = now()
    await lanesPromise(driver, perBlock, inFlight, "payload", params)
    t.rates.push(perSecond(perBlock, now() - blockStart))
  }
  t.throughputCpuUs = cpuUs(cpuStart)
  t.throughputMs = now() - start
  return summarize(bytes, c.throughputCalls, t)
}

export const run = async (variant: string, quick: boolean) => {
  const result: Record<string, object> = {}
  if (isEffectVariant(variant)) {
    await runEffect(variant)(Effect.gen(function*() {
      const client = yield* makeClient(variant)
      for (const size of sizes) result[size.name] = yield* effectSize(client, size.bytes, quick)
    }))
  } else {
    await withDriver(variant as DriverVariant, async (driver) => {
      for (const size of sizes) result[size.name] = await promiseSize(driver, size.bytes, quick)
    })
  }
  return result
}
