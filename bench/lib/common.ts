/**
 * Shared bits of the bench: where the workers are, the environment every worker gets, the
 * echo params, and small statistics helpers.
 */
import * as path from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"

export const benchDir = path.resolve(import.meta.dirname, "..")
export const rootDir = path.resolve(benchDir, "..")
export const workersDir = path.join(benchDir, "workers")

/** The workers, by name. */
export const workers = {
  raw: path.join(workersDir, "raw-worker.mjs"),
  pluginWorker: path.join(workersDir, "plugin-worker.ts"),
  vscode: path.join(workersDir, "vscode-worker.mjs"),
  mcp: path.join(workersDir, "mcp-server.mjs"),
  oneshot: path.join(workersDir, "oneshot-poller.mjs"),
  adversary: path.join(workersDir, "adversary-worker.mjs")
} as const

/** The Node that runs the bench (Node 24 from node_modules under `npm run bench`) runs every worker too. */
export const node = process.execPath

/**
 * The environment of every worker: a tag that lets the harness find any process of this run
 * left behind (see `run.ts`), and `NODE_OPTIONS` from `BENCH_WORKER_NODE_OPTIONS` when set (to
 * profile a worker: `BENCH_WORKER_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=…"`).
 */
export const workerEnv = (): Record<string, string> => ({
  BENCH_RUN_ID: process.env.BENCH_RUN_ID ?? "adhoc",
  ...(process.env.BENCH_WORKER_NODE_OPTIONS === undefined ? {} : { NODE_OPTIONS: process.env.BENCH_WORKER_NODE_OPTIONS })
})

/** What `echo` is called with in the latency and throughput scenarios. */
export const echoParams = (n: number) => ({ n, text: "hello, plugin" })

export const now = () => performance.now()

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The value at quantile `q` (0..1) of samples, nearest-rank. */
export const quantile = (samples: ArrayLike<number>, q: number): number => {
  const sorted = Array.from(samples).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank] as number
}

export const median = (samples: ArrayLike<number>): number => {
  const sorted = Array.from(samples).filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export const round = (x: number, digits = 1): number => {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

const exposedGc = (() => {
  v8.setFlagsFromString("--expose-gc")
  return vm.runInNewContext("gc") as (options?: { type: "major"; execution: "sync"; flavor: "regular" | "last-resort" }) => void
})()

/** A full garbage collection, for RSS measurements (the bench runs without `--expose-gc`). */
export const gc = (): void => {
  exposedGc()
  exposedGc()
}

/**
 * The collection V8 runs before it gives up on memory: full collections until nothing more is
 * freed, compaction, and the heap's free pages given back to the kernel. Each of its collections
 * ages bytecode, so code not run meanwhile would be flushed and compiled again when next run (a
 * stop path timed after a memory reading would pay that): bytecode flushing is turned off in a
 * process that uses it.
 */
export const lastResortGc = (): void => {
  v8.setFlagsFromString("--no-flush-bytecode")
  exposedGc({ type: "major", execution: "sync", flavor: "last-resort" })
}

export const rssKb = () => process.memoryUsage.rss() / 1024

/** Checks a reply once, so a broken variant cannot post a fast time. */
export const check = (condition: boolean, what: string) => {
  if (!condition) throw new Error(`bad reply: ${what}`)
}
