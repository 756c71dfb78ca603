/**
 * latency: sequential round trips (one call in flight) of `echo`, after a warm-up: p50 and p99
 * in microseconds, and the host's own CPU time per call (µs).
 *
 * Where the scheduler puts the host and the worker decides the figure more than anything either
 * does: on a VM a round trip between two cores costs tens of µs of wake-ups that one on a single
 * core does not (raw: 67–79 µs against 17–20 here), and an unpinned measurement process lands in
 * one mode or the other by chance. So after the warm-up the host and its worker are pinned (`taskset`, every thread) and
 * measured twice: host and worker on different cores (`p50Us`, `p99Us`, `hostCpuUsPerCall`:
 * the goal's figure, as a host and its plugins run on a multi-core machine), then on one core
 * (`p50SameCoreUs`: no cross-core wake-up, so what both sides' code costs shows undiluted).
 * Without `taskset` or a second CPU the measurement runs unpinned, once, and says so
 * (`placement`).
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as Effect from "effect/Effect"
import { check, echoParams, now, quantile, round } from "../lib/common.ts"
import { withDriver, type DriverVariant } from "../variants/driver.ts"
import { isEffectVariant, makeClient, run as runEffect } from "../variants/effect.ts"


export const counts = (quick: boolean) => quick ? { warmup: 1_000, calls: 5_000 } : { warmup: 2_000, calls: 20_000 }

type Placement = "cross-core" | "same-core"

interface Phase {
  readonly samplesMs: Float64Array
  readonly cpu: NodeJS.CpuUsage
}

/** Pins every thread of `pid` to `cpu`. */
const pin = (pid: number, cpu: number) => execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" })

/** The children of this process (the worker; a `/bin/sh` entry has exec'd it under the same pid). */
const children = (): Array<number> =>
  fs.readdirSync(`/proc/${process.pid}/task`).flatMap((tid) =>
    fs.readFileSync(`/proc/${process.pid}/task/${tid}/children`, "utf8").trim().split(/\s+/).filter((p) => p !== "").map(Number)
  )

const canPin = (() => {
  if (os.cpus().length < 2) return false
  try {
    execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" })
    return fs.existsSync(`/proc/${process.pid}/task/${process.pid}/children`)
  } catch {
    return false
  }
})()

/** The host on CPU 0, the worker on CPU 1 (cross-core) or 0 (same core). */
const place = (placement: Placement) => {
  pin(process.pid, 0)
  for (const child of children()) pin(child, placement === "cross-core" ? 1 : 0)
}

const placements: ReadonlyArray<Placement | undefined> = canPin ? ["cross-core", "same-core"] : [undefined]

const summarize = (phases: ReadonlyArray<Phase>) => {
  const [goal, same] = phases
  if (goal === undefined) throw new Error("no latency measured")
  const p50 = (p: Phase) => round(quantile(p.samplesMs, 0.5) * 1000)
  return {
    calls: goal.samplesMs.length,
    placement: canPin ? "host on CPU 0, worker on CPU 1; then both on CPU 0" : "unpinned",
    p50Us: p50(goal),
    p99Us: round(quantile(goal.samplesMs, 0.99) * 1000),
    hostCpuUsPerCall: round((goal.cpu.user + goal.cpu.system) / goal.samplesMs.length),
    ...(same === undefined ? {} : { p50SameCoreUs: p50(same), hostCpuUsPerCallSameCore: round((same.cpu.user + same.cpu.system) / same.samplesMs.length) })
  }
}

const isEcho = (result: unknown, n: number) =>
  typeof result === "object" && result !== null && (result as { n?: unknown }).n === n ||
  typeof result === "string" && JSON.parse(result).n === n // MCP returns the echo as text

export const run = async (variant: string, quick: boolean) => {
  const { warmup, calls } = counts(quick)
  const phases: Array<Phase> = []
  if (isEffectVariant(variant)) {
    await runEffect(variant)(Effect.gen(function*() {
      const client = yield* makeClient(variant)
      check(isEcho(yield* client.request("echo", echoParams(-1)), -1), "echo")
      for (let i = 0; i < warmup; i++) yield* client.request("echo", echoParams(i))
      for (const placement of placements) {
        if (placement !== undefined) place(placement)
        const samplesMs = new Float64Array(calls)
        const cpuStart = process.cpuUsage()
        for (let i = 0; i < calls; i++) {
          const start = now()
          yield* client.request("echo", echoParams(i))
          samplesMs[i] = now() - start
        }
        phases.push({ samplesMs, cpu: process.cpuUsage(cpuStart) })
      }
    }))
  } else {
    await withDriver(variant as DriverVariant, async (driver) => {
      check(isEcho(await driver.call("echo", echoParams(-1)), -1), "echo")
      for (let i = 0; i < warmup; i++) await driver.call("echo", echoParams(i))
      for (const placement of placements) {
        if (placement !== undefined) place(placement)
        const samplesMs = new Float64Array(calls)
        const cpuStart = process.cpuUsage()
        for (let i = 0; i < calls; i++) {
          const start = now()
          await driver.call("echo", echoParams(i))
          samplesMs[i] = now() - start
        }
        phases.push({ samplesMs, cpu: process.cpuUsage(cpuStart) })
      }
    })
  }
  return summarize(phases)
}
