/**
 * What the real-process tests check about the machine: which processes exist, whose children
 * they are, and that nothing a test spawned is left behind (read from `/proc`).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as PluginProcess from "../../src/PluginProcess.ts"

export const fixtures = path.resolve(import.meta.dirname, "../fixtures")
export const fixture = (name: string) => path.join(fixtures, name)
/** The Node running the tests (Node 24 from node_modules), for spawning `.mjs`/`.ts` fixtures. */
export const node = process.execPath

interface Stat {
  readonly pid: number
  readonly state: string
  readonly ppid: number
  readonly pgid: number
}

const readStat = (pid: number): Stat | undefined => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name is in parentheses and may contain spaces.
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ")
    return { pid, state: rest[0] ?? "?", ppid: Number(rest[1]), pgid: Number(rest[2]) }
  } catch {
    return undefined
  }
}

const allStats = (): Array<Stat> =>
  fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name)).flatMap((name) => {
    const stat = readStat(Number(name))
    return stat === undefined ? [] : [stat]
  })

/** True while the process exists and is not a zombie. */
export const isAlive = (pid: number): boolean => {
  const stat = readStat(pid)
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X"
}

/** Live (non-zombie) children of this test process. */
export const liveChildren = (): Array<number> =>
  allStats().filter((s) => s.ppid === process.pid && s.state !== "Z").map((s) => s.pid)

/** Live members of a process group. */
export const liveGroupMembers = (pgid: number): Array<number> =>
  allStats().filter((s) => s.pgid === pgid && s.state !== "Z").map((s) => s.pid)

/** Polls (real time) until `check` holds or `timeoutMs` passes; returns the last result. */
export const eventually = (check: () => boolean, timeoutMs = 3_000): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline) {
      if (check()) return true
      yield* Effect.sleep("20 millis")
    }
    return check()
  })

/** Node services plus quiet logs for real-process tests. */
export const live = Layer.mergeAll(
  NodeServices.layer,
  Logger.layer([]),
  Layer.succeed(References.MinimumLogLevel, "Error")
)

/** Both process launchers: every real-process suite runs once with each. */
export const launchers: ReadonlyArray<PluginProcess.Launcher> = [PluginProcess.spawnerLauncher, PluginProcess.nodeLauncher]

/** {@link live} with the given launcher. */
export const liveWith = (launcher: PluginProcess.Launcher) => Layer.merge(live, Layer.succeed(PluginProcess.Launcher, launcher))
