/**
 * ephemeral ticks: one process per tick (the one-shot poller `bench/workers/oneshot-poller.mjs`:
 * one request line in, one reply line out, exit), ticks run one after another: ticks/s, taken
 * from the median tick (a tick during which the machine's other load held the cores takes
 * several times as long, and the mean moves with how many of those a measurement met); the
 * mean is reported beside it (`meanMsPerTick`).
 *
 * `raw` spawns it with `node:child_process`, writes the line, closes stdin, reads the reply and
 * waits for the exit; `effect-host` runs `router.tick` of a `PollerRouter` (`PollerRouter.layer`)
 * with the plugin registered as an ephemeral poller.
 */
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import * as Effect from "effect/Effect"
import { check, median, node, now, round, workerEnv, workers } from "../lib/common.ts"
import { PluginManifest, PollerRouter } from "../../src/index.ts"
import { runWith } from "../variants/effect.ts"
import { waitForExit } from "../variants/raw.ts"


export const counts = (quick: boolean) => quick ? { warmup: 3, ticks: 40 } : { warmup: 5, ticks: 150 }

const tickLine = () =>
  JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "poll_tick",
    params: {
      kind: "bench",
      job_id: "job",
      agent_id: "agent",
      cursor: null,
      config: {},
      now: new Date().toISOString(),
      interval_hint_secs: 30
    }
  }) + "\n"

const rawTick = async (): Promise<unknown> => {
  const child = spawn(node, [workers.oneshot], { stdio: ["pipe", "pipe", "inherit"], env: workerEnv() })
  try {
    const reply = new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout, crlfDelay: Infinity })
      lines.once("line", (line) => {
        lines.close()
        resolve(line)
      })
      child.once("exit", () => reject(new Error("exited without replying")))
    })
    child.stdin.on("error", () => {})
    child.stdin.end(tickLine())
    const result = JSON.parse(await reply).result
    await waitForExit(child, 1_000)
    return result
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL")
      await waitForExit(child)
    }
  }
}

const manifest = PluginManifest.make({
  name: "oneshot",
  version: "1.0.0",
  executable: node,
  args: [workers.oneshot],
  poller: { kinds: ["bench"], lifecycle: "ephemeral" }
})

export const run = async (variant: string, quick: boolean) => {
  const { warmup, ticks } = counts(quick)
  const tickMs: Array<number> = []
  if (variant === "raw") {
    for (let i = 0; i < warmup; i++) await rawTick()
    for (let i = 0; i < ticks; i++) {
      const start = now()
      const result = await rawTick() as { metrics: { items_seen: number } }
      tickMs.push(now() - start)
      check(result.metrics.items_seen === 1, "tick reply")
    }
  } else {
    await runWith(PollerRouter.layer, "effect-host")(
      Effect.gen(function*() {
        const router = yield* PollerRouter.PollerRouter
        yield* router.register(manifest, { env: workerEnv() })
        const tick = router.tick("bench", { jobId: "job", agentId: "agent", config: {}, now: new Date(), intervalHint: "30 seconds" })
        for (let i = 0; i < warmup; i++) yield* tick
        for (let i = 0; i < ticks; i++) {
          const start = now()
          const ack = yield* tick
          tickMs.push(now() - start)
          check(ack.metrics.itemsSeen === 1, "tick reply")
        }
      })
    )
  }
  const msPerTick = median(tickMs)
  const meanMs = tickMs.reduce((a, b) => a + b, 0) / tickMs.length
  return { ticks, ticksPerSec: round(1000 / msPerTick, 2), msPerTick: round(msPerTick, 2), meanMsPerTick: round(meanMs, 2) }
}
