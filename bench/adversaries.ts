/**
 * `npm run bench:adversaries [-- --quick] [--only a,b] [--verbose]`
 *
 * Measures every figure of issue #16's "Why" against real processes, each adversary in a fresh
 * process (`adversaries/measure.ts`, one run each: these are bounds and counts, not speeds to
 * take medians of), prints the table "figure | issue's value before | now", writes
 * `bench/results/adversaries.json`, and checks that no process of the run is left behind.
 * The adversaries are described in `adversaries/*.ts` and in bench/README.md ("Adversaries").
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { adversaries } from "./adversaries/index.ts"
import { benchDir, round } from "./lib/common.ts"
import { makeHarness, type Result } from "./lib/harness.ts"

const args = process.argv.slice(2)
const quick = args.includes("--quick")
const verbose = args.includes("--verbose")
const onlyAt = args.indexOf("--only")
const only = onlyAt === -1 ? undefined : args[onlyAt + 1]?.split(",")
const selected = adversaries.filter((a) => (only === undefined || only.includes(a.name)) && !(quick && a.fullOnly === true))

const startedAt = performance.now()
const log = (line: string) => process.stderr.write(line + "\n")
const harness = makeHarness({
  script: path.join(benchDir, "adversaries", "measure.ts"),
  verbose,
  timeoutMs: (quick ? 3 : 5) * 60_000,
  log
})

// ---------------------------------------------------------------------------------------------
// measurements
// ---------------------------------------------------------------------------------------------

log(`effect-plugin-host adversaries: ${quick ? "quick" : "full"}, node ${process.version}, ${os.cpus().length} cpus`)
const results: Record<string, Result> = {}
const failures: Array<string> = []
for (const adversary of selected) {
  if (harness.interrupted()) break
  const t = performance.now()
  try {
    results[adversary.name] = await harness.measure([adversary.name, ...(quick ? ["--quick"] : [])])
    log(`  ${adversary.name.padEnd(22)} ${JSON.stringify(results[adversary.name])}  (${round((performance.now() - t) / 1000)} s)`)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    failures.push(`${adversary.name}: ${message.split("\n")[0]}`)
    log(`  ${adversary.name.padEnd(22)} FAILED: ${message}`)
  }
}

// ---------------------------------------------------------------------------------------------
// figures
// ---------------------------------------------------------------------------------------------

const field = (name: string, key: string): unknown => results[name]?.[key]
const num = (name: string, key: string): number | undefined => {
  const value = field(name, key)
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}
const fmt = (x: number) => x.toLocaleString("en-US")
const tags = (name: string) => {
  const counts = field(name, "failureTags")
  if (typeof counts !== "object" || counts === null) return ""
  const entries = Object.entries(counts)
  return entries.length === 0 ? "" : ` (${entries.map(([tag, n]) => `\`${tag}\` ${fmt(Number(n))}`).join(", ")})`
}
/** The batch whose event loop and timeouts are reported: 1M calls in a full run, 100k in a quick one. */
const loopBatch = results["batch-1m"] !== undefined ? "batch-1m" : "batch-client"
const loopCalls = `${fmt(num(loopBatch, "total") ?? 0)} calls`

interface Figure {
  readonly figure: string
  readonly before: string
  /** This run's value, or undefined when its adversary did not run. */
  readonly now: () => string | undefined
}

const when = (name: string, show: (r: Result) => string) => () => results[name] === undefined ? undefined : show(results[name])

const figures: ReadonlyArray<Figure> = [
  {
    figure: "1a. slow listener race, `alwaysOn`, 25 rounds: plugin processes alive after (1 is right)",
    before: "23",
    now: when("race-always-on", (r) => `${r.aliveAfter} (at most ${r.mostAliveAtRoundEnd} at a round's end)`)
  },
  {
    figure: "1b. slow listener race, lazy: rounds ending `Recovering` with a live process",
    before: "every round",
    now: when("race-lazy", (r) => `${r.stuckRecovering} of ${r.rounds}`)
  },
  {
    figure: "2a. one crash in a 100k batch (64 at a time), `PluginClient`: calls failed",
    before: "98,312 of 100,000 (`Closed`)",
    now: when("batch-client", (r) => `${fmt(Number(r.failed))} of ${fmt(Number(r.total))}${tags("batch-client")}`)
  },
  {
    figure: "2b. the same through `PluginManager.call`: calls failed",
    before: "99,744 of 100,000",
    now: when("batch-manager", (r) => `${fmt(Number(r.failed))} of ${fmt(Number(r.total))}${tags("batch-manager")}`)
  },
  {
    figure: "2c. one crash in a 1M batch, `PluginClient`: calls failed",
    before: "–",
    now: when("batch-1m", (r) => `${fmt(Number(r.failed))} of ${fmt(Number(r.total))}${tags("batch-1m")}`)
  },
  {
    figure: `2d. longest event-loop block during the batch (${loopCalls})`,
    before: "52 s (1M calls)",
    now: when(loopBatch, (r) => `${r.longestBlockMs} ms`)
  },
  {
    figure: `2e. worst lateness of a 100 ms \`Timeout\` during the batch (${loopCalls}; target ≤ 100 ms)`,
    before: "not stated",
    now: when(loopBatch, (r) => `${r.worstLatenessMs} ms (p99 ${r.p99LatenessMs} ms, ${r.timeouts} timeouts)`)
  },
  {
    figure: "3a. 20k `notify` × 64 KiB to a plugin that never reads: host RSS before → peak (target < 300 MB)",
    before: "118 MB → 1.5 GB",
    now: when("memory-deaf", (r) => `${r.rssBeforeMb} MB → ${r.peakRssMb} MB`)
  },
  {
    figure: "3a. … of which failed with `Backpressure`",
    before: "–",
    now: when("memory-deaf", (r) => fmt(Number((r.outcomes as Record<string, number> | undefined)?.Backpressure ?? 0)))
  },
  {
    figure: `3b. a plugin that never reads the replies to its requests, ${quick ? 8 : 20} s: host RSS growth over the second half`,
    before: "+100 MB/s",
    now: when("memory-unread-replies", (r) => `${r.growthMbPerSec} MB/s (RSS at each quarter: ${String(r.rssQuartersMb).replaceAll(",", ", ")} MB; ${r.connectionsEnded === 0 ? "no connection ended" : `${r.connectionsEnded} connections ended with \`${r.lastEndReason}\``})`)
  },
  {
    figure: "3b. … host peak RSS (target < 300 MB)",
    before: "1.98 GB",
    now: when("memory-unread-replies", (r) => `${r.peakRssMb} MB (heap after GC ${r.heapAfterGcMb} MB)`)
  },
  {
    figure: `3c. ${quick ? "3k" : "10k"} × 100 KB notifications to a slow handler: host peak RSS (target < 300 MB)`,
    before: "2.7 GB (10k)",
    now: when("memory-slow-handler", (r) => `${r.peakRssMb} MB (${fmt(Number(r.dropped))} dropped and counted)`)
  },
  {
    figure: `3d. ${quick ? "200k" : "1M"} notification flood, instant handler: delivered (target ≥ 99.9 %)`,
    before: "5 % (1M)",
    now: when("memory-flood", (r) => `${r.deliveredPercent} % (peak RSS ${r.peakRssMb} MB)`)
  },
  {
    figure: "4a. releasing a `PluginManager` with 50 plugins, 10 ignoring SIGTERM, grace 2 s: wall time (target ≤ 3 s)",
    before: "22–31 s",
    now: when("shutdown", (r) => `${r.releaseSeconds} s`)
  },
  {
    figure: "4b. … plugin processes left in `/proc` right after (must be 0)",
    before: "–",
    now: when("shutdown", (r) => `${r.processesLeft} (of ${r.aliveBefore} running)`)
  }
]

// ---------------------------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------------------------

const rows = figures.flatMap((f) => {
  const value = f.now()
  return value === undefined ? [] : [{ figure: f.figure, before: f.before, now: value }]
})
const wallSeconds = round((performance.now() - startedAt) / 1000)
const machine = `Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? "cpu"}, ${os.platform()} ${os.release()}`
// The timing figures (event-loop block, timeout lateness, release time) move with the machine's load.
const loadAverage = os.loadavg().map((x) => round(x, 1))
const report = [
  `${quick ? "Quick" : "Full"} adversaries run of ${new Date().toISOString().slice(0, 10)} on ${machine}, load average ${loadAverage.join(" ")}; wall time ${wallSeconds} s.`,
  "",
  "| figure | issue's value before | now |",
  "| --- | --- | --- |",
  ...rows.map((r) => `| ${r.figure} | ${r.before} | ${r.now} |`)
].join("\n")
process.stdout.write(`\n${report}\n`)
if (failures.length > 0) log(`\n${failures.length} adversar${failures.length === 1 ? "y" : "ies"} failed:\n  ${failures.join("\n  ")}`)

const leftovers = await harness.killLeftovers()
const resultsDir = path.join(benchDir, "results")
fs.mkdirSync(resultsDir, { recursive: true })
fs.writeFileSync(
  path.join(resultsDir, "adversaries.json"),
  JSON.stringify(
    { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim(), loadAverage, date: new Date().toISOString(), quick, wallSeconds, figures: rows, results, failures, leftovers },
    null,
    2
  ) + "\n"
)
log(`wrote bench/results/adversaries.json (wall time ${wallSeconds} s)`)
process.exitCode = leftovers > 0 || failures.length > 0 || harness.interrupted() ? 1 : 0
