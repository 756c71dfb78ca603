/**
 * worker cold start: the same raw host spawns the raw Node worker or the PluginWorker-based
 * worker (`bench/workers/plugin-worker.ts`, which loads effect and the worker SDK from `src/`
 * with Node's type stripping) or its plain-JS copy (`lib/jsBuild.ts`: what a built worker
 * loads); spawn → `initialize` reply → first `echo` reply: median and fast quartile (ms). A start
 * of 200–500 ms on a shared machine is often preempted, which only ever adds time: the fast
 * quartile of the samples (`fastQuartileMs`) moves less with the machine's load than the median,
 * and is what `workerColdStartVsRaw` compares.
 */
import { check, echoParams, median, now, quantile, round, workers } from "../lib/common.ts"
import { ensureJs, jsPath } from "../lib/jsBuild.ts"
import { open } from "../variants/raw.ts"


const workerOf = (variant: string) => {
  switch (variant) {
    case "effect":
      return workers.pluginWorker
    case "effect-js":
      ensureJs()
      return jsPath("bench/workers/plugin-worker.ts")
    default:
      return workers.raw
  }
}

export const counts = (quick: boolean) => quick ? { warmup: 2, samples: 16 } : { warmup: 3, samples: 30 }

export const run = async (variant: string, quick: boolean) => {
  const { warmup, samples } = counts(quick)
  const worker = workerOf(variant)
  const startMs: Array<number> = []
  for (let i = 0; i < warmup + samples; i++) {
    const started = now()
    const driver = await open(worker)
    try {
      const result = await driver.call("echo", echoParams(i))
      if (i >= warmup) startMs.push(now() - started)
      check((result as { n: number }).n === i, "echo")
    } finally {
      await driver.close()
    }
  }
  return { samples, medianMs: round(median(startMs), 2), fastQuartileMs: round(quantile(startMs, 0.25), 2) }
}
