/**
 * worker cold start: the same raw host spawns the raw Node worker or the PluginWorker-based
 * worker (`bench/workers/plugin-worker.ts`) in three forms — from source with Node's type
 * stripping (`effect`), its plain-JS copy (`effect-js`, `lib/jsBuild.ts`: what an unbundled
 * built worker loads) and bundled into one file with `effect` (`effect-bundle`,
 * `lib/bundleBuild.ts`: the README's recipe for a worker that starts fast); spawn → `initialize`
 * reply → first `echo` reply: median and fast quartile (ms), and the worker's CPU time until that
 * reply (all its threads, `/proc/<pid>/task/<tid>/schedstat`). A start of 50–500 ms on a shared
 * machine is often preempted, which only ever adds wall time: the fast quartile (`fastQuartileMs`)
 * moves less with the machine's load than the median, and is what `workerColdStartVsRaw`
 * (`effect-bundle`) and `workerColdStartUnbundledVsRaw` (`effect-js`) compare; the CPU time
 * (`cpuMedianMs`) moves least of all.
 */
import * as fs from "node:fs"
import { check, echoParams, median, now, quantile, round, workers } from "../lib/common.ts"
import { bundlePath, ensureBundle } from "../lib/bundleBuild.ts"
import { ensureJs, jsPath } from "../lib/jsBuild.ts"
import { open } from "../variants/raw.ts"


const workerOf = async (variant: string) => {
  switch (variant) {
    case "effect":
      return workers.pluginWorker
    case "effect-js":
      ensureJs()
      return jsPath("bench/workers/plugin-worker.ts")
    case "effect-bundle":
      await ensureBundle()
      return bundlePath
    default:
      return workers.raw
  }
}

/** CPU time (ms) a process has used so far, over all its threads; undefined where `/proc` cannot tell. */
const cpuMsOf = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    const tasks = fs.readdirSync(`/proc/${pid}/task`)
    // The first field of `schedstat` is the time spent on a CPU, in ns.
    return tasks.reduce((sum, task) => sum + Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]), 0) / 1e6
  } catch {
    return undefined
  }
}

export const counts = (quick: boolean) => quick ? { warmup: 2, samples: 16 } : { warmup: 3, samples: 30 }

export const run = async (variant: string, quick: boolean) => {
  const { warmup, samples } = counts(quick)
  const worker = await workerOf(variant)
  const startMs: Array<number> = []
  const cpuMs: Array<number> = []
  for (let i = 0; i < warmup + samples; i++) {
    const started = now()
    const driver = await open(worker)
    try {
      const result = await driver.call("echo", echoParams(i))
      const elapsed = now() - started
      const cpu = cpuMsOf(driver.pid)
      if (i >= warmup) {
        startMs.push(elapsed)
        if (cpu !== undefined) cpuMs.push(cpu)
      }
      check((result as { n: number }).n === i, "echo")
    } finally {
      await driver.close()
    }
  }
  return {
    samples,
    medianMs: round(median(startMs), 2),
    fastQuartileMs: round(quantile(startMs, 0.25), 2),
    ...(cpuMs.length === samples ? { cpuMedianMs: round(median(cpuMs), 2) } : {})
  }
}
