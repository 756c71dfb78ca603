/**
 * How a bench run drives its measurements: each one in a fresh Node process of its own process
 * group, tagged with the run's `BENCH_RUN_ID`, which prints its result as one line
 * `BENCH_RESULT <json>` on stdout; a hung one is stopped after a deadline; SIGINT/SIGTERM stop
 * the current one; and at the end every process of the run still alive is found in `/proc`,
 * reported and killed. Used by `run.ts` (the comparison bench) and `adversaries.ts`.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import { sleep } from "./common.ts"

export type Result = Record<string, unknown>

export interface HarnessOptions {
  /** The measurement entry (run with Node's type stripping), e.g. `bench/measure.ts`. */
  readonly script: string
  /** Echo every line a measurement prints. */
  readonly verbose: boolean
  /** Bound on one measurement: SIGTERM to its process group, then SIGKILL 5 s later. */
  readonly timeoutMs: number
  readonly log: (line: string) => void
}

export interface Harness {
  readonly runId: string
  /** Runs `script ...args` in a fresh process and resolves with its result. */
  readonly measure: (args: ReadonlyArray<string>) => Promise<Result>
  /** True once SIGINT or SIGTERM asked the run to stop. */
  readonly interrupted: () => boolean
  /**
   * Waits a moment for the last exits, then kills every process of this run still alive and
   * returns how many there were.
   */
  readonly killLeftovers: () => Promise<number>
}

/** The live processes whose environment carries `name=value` (zombies are already dead). */
export const processesWithEnv = (name: string, value: string): Array<{ pid: number; command: string }> =>
  fs.readdirSync("/proc").flatMap((entry) => {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) return []
    try {
      const environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8")
      if (!environ.split("\0").includes(`${name}=${value}`)) return []
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return []
      return [{ pid, command: fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim() }]
    } catch {
      return [] // gone meanwhile, or not ours to read
    }
  })

const killGroup = (child: ChildProcess, signal: NodeJS.Signals) => {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}

/** Stops a measurement: SIGTERM to its group (its Scopes close, its plugins stop), SIGKILL after 5 s. */
const stopMeasurement = (child: ChildProcess) => {
  killGroup(child, "SIGTERM")
  setTimeout(() => killGroup(child, "SIGKILL"), 5_000).unref()
}

/**
 * Runs `script ...args` in a fresh process of its own group and resolves with its result;
 * `track` is told of the child while it runs (and `undefined` once it exited).
 */
const measureIn = (
  options: HarnessOptions,
  runId: string,
  args: ReadonlyArray<string>,
  track: (child: ChildProcess | undefined) => void
): Promise<Result> =>
  new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--experimental-strip-types", "--no-warnings", options.script, ...args],
      // Its own process group, so a timeout can stop it with everything it spawned.
      { stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, BENCH_RUN_ID: runId } }
    )
    track(child)
    let result: Result | undefined
    const tail: Array<string> = []
    const keep = (line: string) => {
      if (options.verbose) options.log(`    | ${line}`)
      tail.push(line)
      if (tail.length > 30) tail.shift()
    }
    let stdout = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
      let nl: number
      while ((nl = stdout.indexOf("\n")) !== -1) {
        const line = stdout.slice(0, nl)
        stdout = stdout.slice(nl + 1)
        if (line.startsWith("BENCH_RESULT ")) result = JSON.parse(line.slice("BENCH_RESULT ".length))
        else keep(line)
      }
    })
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
      const lines = stderr.split("\n")
      stderr = lines.pop() ?? ""
      lines.forEach(keep)
    })
    const timer = setTimeout(() => {
      keep(`timed out after ${options.timeoutMs / 1000} s`)
      stopMeasurement(child)
    }, options.timeoutMs)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      track(undefined)
      if (code === 0 && result !== undefined) resolve(result)
      else reject(new Error(`exit ${code ?? signal}\n${tail.join("\n")}`))
    })
  })

/** A harness for one run; installs the SIGINT/SIGTERM handlers. */
export const makeHarness = (options: HarnessOptions): Harness => {
  const runId = randomUUID()
  const { log } = options
  let current: ChildProcess | undefined
  let interrupted = false
  const measure = (args: ReadonlyArray<string>) => measureIn(options, runId, args, (child) => void (current = child))

  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = true
    log(`\n${signal}: stopping the current measurement`)
    if (current !== undefined) stopMeasurement(current)
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)

  const killLeftovers = async () => {
    await sleep(300)
    const leftovers = processesWithEnv("BENCH_RUN_ID", runId)
    if (leftovers.length === 0) {
      log("no process of this run is left behind")
      return 0
    }
    log(`${leftovers.length} process(es) of this run left behind; killing them:`)
    for (const p of leftovers) {
      log(`  ${p.pid} ${p.command}`)
      try {
        process.kill(p.pid, "SIGKILL")
      } catch {
        // gone meanwhile
      }
    }
    return leftovers.length
  }

  return { runId, measure, interrupted: () => interrupted, killLeftovers }
}
