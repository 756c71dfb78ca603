/**
 * cold start: spawn → handshake done → first `echo` reply, one fresh plugin per sample; the
 * median of the samples (ms). The stop that follows each sample is timed separately (not part
 * of the cold start).
 *
 * The goal is about host cost, so `raw` and `effect-host` run the same raw Node worker;
 * `effect` (PluginWorker worker), `vscode` and `mcp` run their own workers, for reference.
 */
import * as Effect from "effect/Effect"
import { check, echoParams, median, now, round } from "../lib/common.ts"
import { openDriver, type DriverVariant } from "../variants/driver.ts"
import { isEffectVariant, makeClient, run as runEffect } from "../variants/effect.ts"


export const counts = (quick: boolean) => quick ? { warmup: 2, samples: 16 } : { warmup: 3, samples: 30 }

export const run = async (variant: string, quick: boolean) => {
  const { warmup, samples } = counts(quick)
  const startMs: Array<number> = []
  const stopMs: Array<number> = []
  const record = (i: number, started: number, replied: number, stopped: number) => {
    if (i < warmup) return
    startMs.push(replied - started)
    stopMs.push(stopped - replied)
  }
  if (isEffectVariant(variant)) {
    // One runtime for all samples (as in an application); each sample is its own Scope, whose
    // closing stops the plugin.
    await runEffect(variant)(Effect.gen(function*() {
      for (let i = 0; i < warmup + samples; i++) {
        const started = now()
        const replied = yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* makeClient(variant)
          const result = yield* client.request("echo", echoParams(i))
          check((result as { n: number }).n === i, "echo")
          return now()
        }))
        record(i, started, replied, now())
      }
    }))
  } else {
    for (let i = 0; i < warmup + samples; i++) {
      const started = now()
      const driver = await openDriver(variant as DriverVariant)
      let replied = Number.NaN
      try {
        const result = await driver.call("echo", echoParams(i))
        replied = now()
        check(variant === "mcp" ? JSON.parse(result as string).n === i : (result as { n: number }).n === i, "echo")
      } finally {
        await driver.close()
      }
      record(i, started, replied, now())
    }
  }
  return { samples, medianMs: round(median(startMs), 2), stopMedianMs: round(median(stopMs), 2) }
}
