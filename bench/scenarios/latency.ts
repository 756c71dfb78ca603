/**
 * latency: sequential round trips (one call in flight) of `echo`, after a warm-up: p50 and p99
 * in microseconds, and the host's own CPU time per call (µs).
 */
import * as Effect from "effect/Effect"
import { check, echoParams, now, quantile, round } from "../lib/common.ts"
import { withDriver, type DriverVariant } from "../variants/driver.ts"
import { isEffectVariant, makeClient, run as runEffect } from "../variants/effect.ts"


export const counts = (quick: boolean) => quick ? { warmup: 1_000, calls: 5_000 } : { warmup: 2_000, calls: 20_000 }

const summarize = (samplesMs: Float64Array, cpu: NodeJS.CpuUsage) => ({
  calls: samplesMs.length,
  p50Us: round(quantile(samplesMs, 0.5) * 1000),
  p99Us: round(quantile(samplesMs, 0.99) * 1000),
  hostCpuUsPerCall: round((cpu.user + cpu.system) / samplesMs.length)
})

const isEcho = (result: unknown, n: number) =>
  typeof result === "object" && result !== null && (result as { n?: unknown }).n === n ||
  typeof result === "string" && JSON.parse(result).n === n // MCP returns the echo as text

export const run = async (variant: string, quick: boolean) => {
  const { warmup, calls } = counts(quick)
  const samples = new Float64Array(calls)
  let cpu = { user: 0, system: 0 }
  if (isEffectVariant(variant)) {
    await runEffect(variant)(Effect.gen(function*() {
      const client = yield* makeClient(variant)
      check(isEcho(yield* client.request("echo", echoParams(-1)), -1), "echo")
      for (let i = 0; i < warmup; i++) yield* client.request("echo", echoParams(i))
      const cpuStart = process.cpuUsage()
      for (let i = 0; i < calls; i++) {
        const start = now()
        yield* client.request("echo", echoParams(i))
        samples[i] = now() - start
      }
      cpu = process.cpuUsage(cpuStart)
    }))
  } else {
    await withDriver(variant as DriverVariant, async (driver) => {
      check(isEcho(await driver.call("echo", echoParams(-1)), -1), "echo")
      for (let i = 0; i < warmup; i++) await driver.call("echo", echoParams(i))
      const cpuStart = process.cpuUsage()
      for (let i = 0; i < calls; i++) {
        const start = now()
        await driver.call("echo", echoParams(i))
        samples[i] = now() - start
      }
      cpu = process.cpuUsage(cpuStart)
    })
  }
  return summarize(samples, cpu)
}
