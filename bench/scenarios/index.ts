/**
 * The scenarios, in the order they run, with the variants each compares. Each scenario module
 * exports `run(variant, quick)`, which `measure.ts` calls in a fresh process.
 *
 * Variants: `raw` (the baseline), `effect` (our host + PluginWorker worker), `effect-host` (our
 * host + the raw worker), `effect-spawner` (`effect-host` with the default `effect/process`
 * launcher instead of `PluginProcess.layerNode`), `vscode` (vscode-jsonrpc), `mcp` (MCP SDK);
 * the import scenario compares entry points instead (see `importTime.ts`).
 */
import * as fs from "node:fs"
import * as path from "node:path"

export interface Scenario {
  readonly name: string
  readonly title: string
  readonly variants: ReadonlyArray<string>
  /** Runs this many times the rounds (a short, noisy measurement needs more samples for a stable median). */
  readonly roundsFactor?: number
  /** The same for a `--quick` run only, instead of `roundsFactor` (a full run's longer measurements need fewer). */
  readonly quickRoundsFactor?: number
  readonly load: () => Promise<{ readonly run: (variant: string, quick: boolean) => Promise<object> }>
  /** Why this machine cannot run the scenario, if it cannot (the run skips it and says so). */
  readonly unavailable?: () => string | undefined
}

/** `nats-server` where the remote scenario looks for it (see `remote.ts`). */
const natsServerMissing = () =>
  ["/usr/sbin/nats-server", ...(process.env.PATH ?? "").split(":").map((dir) => path.join(dir, "nats-server"))].some((file) => fs.existsSync(file))
    ? undefined
    : "no nats-server installed"

const all = ["raw", "effect", "effect-host", "vscode", "mcp"]

export const scenarios: ReadonlyArray<Scenario> = [
  // Sequential latency has modes per measurement process as well (see bench/README.md), and a
  // measurement is short: twice the rounds.
  { name: "latency", title: "latency (sequential echo)", variants: all, roundsFactor: 2, load: () => import("./latency.ts") },
  // A measurement process lands in a "fast" or a "slow" mode (host CPU per call ~3.8 vs ~5.3 µs,
  // the same code: it is where the scheduler places host and worker on the two cores, see
  // bench/README.md): with 3 rounds, two slow ones set the median, so it takes twice the rounds.
  { name: "throughput", title: "throughput (64 in flight)", variants: [...all, "effect-spawner"], roundsFactor: 2, load: () => import("./throughput.ts") },
  { name: "payload", title: "payload (64 KiB and 1 MiB results)", variants: all, load: () => import("./payload.ts") },
  { name: "coldStart", title: "cold start (spawn → handshake → first reply)", variants: ["raw", "effect-host", "effect-spawner", "effect", "vscode", "mcp"], load: () => import("./coldStart.ts") },
  { name: "workerColdStart", title: "worker cold start (raw host)", variants: ["raw", "effect", "effect-js", "effect-bundle"], load: () => import("./workerColdStart.ts") },
  // A stop-all is ~100 ms of 2 cores shared with 100 dying processes: it varies by ±10 % from
  // one fresh process to the next (per-round ratios to raw from 1.04 to 1.29 in one 9-round run),
  // so its median is taken over five times the rounds.
  { name: "scale", title: "scale (100 plugins)", variants: ["raw", "effect-host", "effect-spawner"], roundsFactor: 5, load: () => import("./scale.ts") },
  // 1000 plugins (quick: 300): a round takes tens of seconds, a full run's 3 are enough; a quick
  // run's stop of 300 is short enough that one slow stop in 3 rounds moves the median.
  { name: "scale1000", title: "scale (1000 plugins; quick: 300)", variants: ["raw", "effect-host"], quickRoundsFactor: 2, load: () => import("./scale1000.ts") },
  // A quick run's 40 ticks (each a Node process) are a few seconds at the machine's load of that moment.
  { name: "ephemeral", title: "ephemeral ticks (spawn per tick)", variants: ["raw", "effect-host"], quickRoundsFactor: 2, load: () => import("./ephemeral.ts") },
  // Calls over NATS through a private nats-server (skipped where none is installed).
  { name: "remote", title: "remote calls over NATS", variants: ["raw", "effect", "effect-host"], unavailable: natsServerMissing, load: () => import("./remote.ts") },
  { name: "import", title: "import in a fresh process", variants: ["effect", "effect-js", "effect-worker", "effect-worker-js", "effect-core", "effect-schema", "effect-floor", "effect-prebundle"], load: () => import("./importTime.ts") }
]
