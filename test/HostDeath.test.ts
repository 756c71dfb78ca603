/**
 * No plugin process outlives its host, however the host ends: a separate host process
 * (`fixtures/containment-host.ts`) runs five plugins, eight processes — a worker-SDK plugin, a
 * SIGTERM-ignoring plugin with a child, an EOF-ignoring plugin, a plugin whose grandchild stays in
 * its process group after the plugin exits at EOF, and one whose grandchild calls `setsid` — and
 * is ended with SIGTERM, SIGINT or SIGKILL. After SIGKILL the parent-death signal ends the five
 * plugins at once and the next host (a `PluginManager` being built) reaps the rest from the
 * registry; with the signal switched off, the registry alone does it.
 *
 * The `setsid` grandchild has left the plugin's process group and session: neither a group signal
 * nor the parent-death signal (cleared on fork) reaches it. Where the host may make cgroups, the
 * plugin entered its own before its first instruction (`internal/cgroup.ts`), so the grandchild
 * is in it and the next host reaps the recorded cgroup whole: asserted. Without cgroups it is out
 * of reach of the registry (which knows groups): its fate is reported, not asserted, and the test
 * kills it (the documented escape; a stop's `/proc` walk still ends it, see the SIGTERM tests).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Cgroup from "../src/internal/cgroup.ts"
import { setprivAvailable } from "../src/internal/parentDeath.ts"
import { readStat } from "../src/internal/procStat.ts"
import { eventually, fixture, isAlive, node } from "./support/processes.ts"

interface Started {
  readonly host: number
  readonly plugins: ReadonlyArray<{ readonly name: string; readonly pid: number; readonly children: ReadonlyArray<number> }>
}

/** One process the host started: which plugin, whether it is the plugin itself, and its start time. */
interface Watched {
  readonly plugin: string
  readonly pid: number
  readonly leader: boolean
  readonly startTime: number
}

const firstLine = (child: ChildProcess): Effect.Effect<string> =>
  Effect.callback<string>((resume) => {
    let out = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const end = out.indexOf("\n")
      if (end >= 0) resume(Effect.succeed(out.slice(0, end)))
    })
    child.once("exit", (code, signal) => resume(Effect.succeed(`exited ${code} ${signal}: ${out}`)))
  }).pipe(Effect.timeout("20 seconds"), Effect.orDie)

const hostProcess = (runtimeDir: string, args: ReadonlyArray<string>) =>
  spawn(node, [fixture("containment-host.ts"), ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir }
  })

/** A private runtime folder for the hosts of one test, removed after it. */
const runtimeDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "host-death-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** The same process is still running (its pid not reused since). */
const running = (watched: Watched): boolean => isAlive(watched.pid) && readStat(watched.pid)?.startTime === watched.startTime

/**
 * Starts a host with the five plugins; the eight processes it reports are SIGKILLed when the test
 * ends, whatever it asserted (only those still running with their start time).
 */
const startHost = (dir: string, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const host = hostProcess(dir, ["serve", ...args])
    const line = yield* firstLine(host)
    const started = JSON.parse(line) as Started
    const watched: Array<Watched> = started.plugins.flatMap((plugin) =>
      [plugin.pid, ...plugin.children].map((pid) => ({
        plugin: plugin.name,
        pid,
        leader: pid === plugin.pid,
        startTime: readStat(pid)?.startTime ?? -1
      }))
    )
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const w of watched) {
          if (running(w)) process.kill(w.pid, "SIGKILL")
        }
        if (host.exitCode === null && host.signalCode === null) host.kill("SIGKILL")
      })
    )
    const exited = Effect.callback<void>((resume) => {
      if (host.exitCode !== null || host.signalCode !== null) return resume(Effect.void)
      host.once("exit", () => resume(Effect.void))
    })
    return { host, started, watched, exited }
  })

/** Whether the hosts started here put each plugin in a cgroup of its own (same machine, same rights). */
const cgroups = Cgroup.available() !== undefined

/** The setsid grandchild, which only a cgroup keeps within reach of the registry. */
const isSetsidGrandchild = (w: Watched) => w.plugin === "setsid-grandchild" && !w.leader
/** What the next host must reap after a SIGKILL: every child, the setsid grandchild where there are cgroups. */
const reapable = (w: Watched) => !w.leader && (cgroups || !isSetsidGrandchild(w))

/** Waits (generously) until none of `watched` runs; the ones still running if some do. */
const awaitAllGone = (watched: ReadonlyArray<Watched>, timeoutMs = 15_000) =>
  Effect.map(eventually(() => watched.every((w) => !running(w)), timeoutMs), () => watched.filter(running))

const describeLeft = (left: ReadonlyArray<Watched>) => left.map((w) => `${w.plugin} ${w.leader ? "plugin" : "child"} ${w.pid}`).join(", ")

/** Reports what became of the `setsid` grandchild, which this part does not promise to end. */
const reportSetsid = (label: string, watched: ReadonlyArray<Watched>) =>
  Effect.sync(() => {
    const grandchild = watched.find(isSetsidGrandchild)
    if (grandchild !== undefined) {
      console.info(`${label}: without cgroups, the setsid grandchild ${grandchild.pid} ${running(grandchild) ? "survived (not in the plugin's group: out of reach of group signals, pdeathsig and the registry)" : "is gone"}`)
    }
  })

const reapWithNextHost = (dir: string) =>
  Effect.gen(function*() {
    const line = yield* firstLine(hostProcess(dir, ["reap"]))
    return (JSON.parse(line) as { leftovers: ReadonlyArray<{ plugin: string; pid: number; reaped: boolean }> }).leftovers
  })

const registryFiles = (dir: string) => {
  try {
    return fs.readdirSync(path.join(dir, "effect-plugin-host")).filter((name) => name.endsWith(".json"))
  } catch {
    return []
  }
}

for (const launcher of ["spawner", "node"] as const) {
  describe(`a host with 5 plugins and 8 processes (${launcher} launcher)`, () => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      it.live(`${signal} to the host: its Scopes close and no process of its plugins is left, the setsid grandchild included`, () =>
        Effect.gen(function*() {
          const dir = yield* runtimeDir
          const { exited, host, started, watched } = yield* startHost(dir, [launcher])
          assert.lengthOf(watched, 8)
          assert.isTrue(watched.every(running), "all eight processes run")
          assert.lengthOf(registryFiles(dir), 1, "the host recorded its plugins")
          process.kill(started.host, signal)
          yield* exited
          assert.isNull(host.signalCode, "the host handled the signal: it closed its Scopes and exited, it was not killed by it")
          // Each plugin's stop ends its whole tree (the /proc walk, and its cgroup where there is one).
          const left = yield* awaitAllGone(watched)
          assert.deepStrictEqual(left, [], `left running: ${describeLeft(left)}`)
          assert.deepStrictEqual(registryFiles(dir), [], "a host that closed its Scopes leaves no registry behind")
        }).pipe(Effect.scoped))
    }

    it.live.skipIf(!setprivAvailable())(
      "SIGKILL to the host: the parent-death signal ends the five plugins at once, the next host reaps what stayed in their groups",
      () =>
        Effect.gen(function*() {
          const dir = yield* runtimeDir
          const { exited, started, watched } = yield* startHost(dir, [launcher])
          process.kill(started.host, "SIGKILL")
          yield* exited
          const plugins = watched.filter((w) => w.leader)
          const pluginsLeft = yield* awaitAllGone(plugins)
          assert.deepStrictEqual(pluginsLeft, [], `plugins outlived their SIGKILLed host: ${describeLeft(pluginsLeft)}`)
          const leftovers = yield* reapWithNextHost(dir)
          for (const w of watched.filter(reapable)) {
            assert.deepInclude(leftovers, { plugin: w.plugin, pid: w.pid, reaped: true }, `the next host reaped ${w.plugin}'s child`)
          }
          const left = yield* awaitAllGone(watched.filter((w) => w.leader || reapable(w)))
          assert.deepStrictEqual(left, [], `left running: ${describeLeft(left)}`)
          assert.deepStrictEqual(registryFiles(dir), [], "the reaped registry is removed")
          if (!cgroups) yield* reportSetsid(`${launcher}, host SIGKILL`, watched)
        }).pipe(Effect.scoped)
    )

    it.live("SIGKILL to the host without the parent-death signal: the next host reaps every plugin left from the registry", () =>
      Effect.gen(function*() {
        const dir = yield* runtimeDir
        const { exited, started, watched } = yield* startHost(dir, [launcher, "no-pdeathsig"])
        process.kill(started.host, "SIGKILL")
        yield* exited
        // Those that ignore stdin EOF outlive the host: only the registry can end them now.
        const ignoringEof = watched.filter((w) => w.plugin === "ignore-term" || w.plugin === "ignore-eof")
        assert.isTrue(ignoringEof.every(running), "the plugins that ignore EOF outlived the host")
        const leftovers = yield* reapWithNextHost(dir)
        for (const w of [...ignoringEof, ...watched.filter((w) => cgroups && isSetsidGrandchild(w))]) {
          assert.deepInclude(leftovers, { plugin: w.plugin, pid: w.pid, reaped: true })
        }
        const left = yield* awaitAllGone(watched.filter((w) => w.leader || reapable(w)))
        assert.deepStrictEqual(left, [], `left running: ${describeLeft(left)}`)
        assert.deepStrictEqual(registryFiles(dir), [], "the reaped registry is removed")
        if (!cgroups) yield* reportSetsid(`${launcher}, host SIGKILL without pdeathsig`, watched)
      }).pipe(Effect.scoped))
  })
}

if (!setprivAvailable()) {
  describe("the parent-death signal", () => {
    it("is not tested here: /usr/bin/setpriv (util-linux) is not installed", () => {
      console.info("skipped the parent-death signal assertions: /usr/bin/setpriv is missing; the registry path is still tested")
    })
  })
}
