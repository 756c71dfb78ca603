/**
 * `Leftovers.reap` against hand-written registries and real processes: it ends what a dead host
 * recorded and what stayed in those processes' groups, never a process whose pid was reused,
 * never anything a live host recorded.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as DoctorReport from "../src/DoctorReport.ts"
import * as ProcStat from "../src/internal/procStat.ts"
import type * as SpawnRegistry from "../src/internal/spawnRegistry.ts"
import * as Leftovers from "../src/Leftovers.ts"
import { eventually, fixture, isAlive, liveGroupMembers, node } from "./support/processes.ts"

const ownStart = ProcStat.readStat(process.pid)?.startTime ?? 0

/** A host record that names this test process with another start time: a host that is gone. */
const deadHost = { pid: process.pid, startTime: ownStart + 1 }
const liveHost = { pid: process.pid, startTime: ownStart }

const registryDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "leftovers-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const writeRegistry = (dir: string, registry: SpawnRegistry.RegistryFile, name = "4242.json") => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify(registry))
  return file
}

/** A process in a group of its own, killed with its group when the test ends. */
const detached = (command: string, args: ReadonlyArray<string>, stdin: "ignore" | "pipe" = "ignore") =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(command, [...args], { detached: true, stdio: [stdin, "pipe", "ignore"] })
      const pid = child.pid ?? 0
      return { child, pid, startTime: ProcStat.readStat(pid)?.startTime ?? -1 }
    }),
    ({ pid }) =>
      Effect.sync(() => {
        try {
          process.kill(-pid, "SIGKILL")
        } catch {
          // Already gone.
        }
      })
  )

const entryOf = (plugin: string, proc: { readonly pid: number; readonly startTime: number }): SpawnRegistry.Entry => ({
  plugin,
  pid: proc.pid,
  startTime: proc.startTime,
  pgid: proc.pid
})

describe("Leftovers.reap", () => {
  it.live("ends a plugin a dead host recorded that still runs, and removes the registry", () =>
    Effect.gen(function*() {
      const dir = yield* registryDir
      const plugin = yield* detached("sleep", ["300"])
      const file = writeRegistry(dir, { host: deadHost, bootId: ProcStat.bootId(), processes: [entryOf("sleeper", plugin)] })
      const leftovers = yield* Leftovers.reap({ directory: dir, grace: "2 seconds" })
      assert.deepStrictEqual(leftovers, [{ plugin: "sleeper", pid: plugin.pid, reaped: true }])
      assert.isFalse(isAlive(plugin.pid))
      assert.isFalse(fs.existsSync(file))
    }).pipe(Effect.scoped))

  it.live("never touches what a live host recorded", () =>
    Effect.gen(function*() {
      const dir = yield* registryDir
      const plugin = yield* detached("sleep", ["300"])
      const file = writeRegistry(dir, { host: liveHost, bootId: ProcStat.bootId(), processes: [entryOf("busy", plugin)] })
      assert.deepStrictEqual(yield* Leftovers.reap({ directory: dir }), [])
      assert.isTrue(isAlive(plugin.pid))
      assert.isTrue(fs.existsSync(file))
    }).pipe(Effect.scoped))

  it.live("never signals a pid whose start time is not the recorded one (a reused pid)", () =>
    Effect.gen(function*() {
      const dir = yield* registryDir
      const stranger = yield* detached("sleep", ["300"])
      writeRegistry(dir, {
        host: deadHost,
        bootId: ProcStat.bootId(),
        processes: [{ ...entryOf("long-gone", stranger), startTime: stranger.startTime - 1 }]
      })
      assert.deepStrictEqual(yield* Leftovers.reap({ directory: dir }), [])
      assert.isTrue(isAlive(stranger.pid), "the process now holding the pid is untouched")
    }).pipe(Effect.scoped))

  it.live("a record from another boot names no process of this one", () =>
    Effect.gen(function*() {
      const dir = yield* registryDir
      const stranger = yield* detached("sleep", ["300"])
      const file = writeRegistry(dir, { host: deadHost, bootId: "another-boot", processes: [entryOf("old", stranger)] })
      assert.deepStrictEqual(yield* Leftovers.reap({ directory: dir }), [])
      assert.isTrue(isAlive(stranger.pid))
      assert.isFalse(fs.existsSync(file), "the stale registry is removed")
    }).pipe(Effect.scoped))

  it.live("ends what stayed in the group of a plugin that exited (its grandchild)", () =>
    Effect.gen(function*() {
      const dir = yield* registryDir
      // The plugin starts a `sleep` in its group, reports it, and exits at stdin EOF.
      const plugin = yield* detached(fixture("containment/eof-grandchild.sh"), [], "pipe")
      const line = yield* Effect.callback<string>((resume) => {
        plugin.child.stdout?.once("data", (chunk: Buffer) => resume(Effect.succeed(chunk.toString())))
      })
      const grandchild = (JSON.parse(line) as { pids: Array<number> }).pids[0] ?? 0
      writeRegistry(dir, { host: deadHost, bootId: ProcStat.bootId(), processes: [entryOf("parent", plugin)] })
      plugin.child.stdin?.end()
      assert.isTrue(yield* eventually(() => !isAlive(plugin.pid), 5_000), "the plugin exited at EOF")
      assert.isTrue(isAlive(grandchild), "its grandchild did not")
      const leftovers = yield* Leftovers.reap({ directory: dir })
      assert.deepStrictEqual(leftovers, [{ plugin: "parent", pid: grandchild, reaped: true }])
      assert.deepStrictEqual(liveGroupMembers(plugin.pid), [])
    }).pipe(Effect.scoped))

  it.live("a leftover that ignores SIGTERM gets SIGKILL after the grace", () =>
    Effect.gen(function*() {
      const dir = yield* registryDir
      const stubborn = yield* detached(fixture("trap-term.sh"), [])
      yield* Effect.callback<void>((resume) => {
        stubborn.child.stdout?.once("data", () => resume(Effect.void))
      })
      writeRegistry(dir, { host: deadHost, bootId: ProcStat.bootId(), processes: [entryOf("stubborn", stubborn)] })
      const leftovers = yield* Leftovers.reap({ directory: dir, grace: "300 millis" })
      assert.deepInclude(leftovers, { plugin: "stubborn", pid: stubborn.pid, reaped: true })
      assert.isFalse(isAlive(stubborn.pid))
      assert.isTrue(yield* eventually(() => liveGroupMembers(stubborn.pid).length === 0, 3_000), "its sleep children too")
    }).pipe(Effect.scoped))

  it.live("a folder that does not exist or holds garbage reads as nothing to reap", () =>
    Effect.gen(function*() {
      const dir = yield* registryDir
      assert.deepStrictEqual(yield* Leftovers.reap({ directory: path.join(dir, "missing") }), [])
      fs.writeFileSync(path.join(dir, "17.json"), "{not json")
      assert.deepStrictEqual(yield* Leftovers.reap({ directory: dir }), [])
    }).pipe(Effect.scoped))
})

describe("plugin-host doctor", () => {
  it.live("reaps what a dead host left and lists it in the report", () =>
    Effect.gen(function*() {
      const runtime = yield* registryDir
      const registries = path.join(runtime, "effect-plugin-host")
      fs.mkdirSync(registries, { mode: 0o700 })
      const plugins = fs.mkdtempSync(path.join(runtime, "plugins-"))
      const plugin = yield* detached("sleep", ["300"])
      writeRegistry(registries, { host: deadHost, bootId: ProcStat.bootId(), processes: [entryOf("forgotten", plugin)] })
      const result = spawnSync(node, [path.resolve(import.meta.dirname, "../src/cli/main.ts"), "doctor", "--json", "--dir", plugins], {
        encoding: "utf8",
        timeout: 30_000,
        env: { ...process.env, XDG_RUNTIME_DIR: runtime }
      })
      assert.strictEqual(result.status, 0, result.stderr)
      const report = Schema.decodeUnknownSync(DoctorReport.DoctorReport)(JSON.parse(result.stdout))
      assert.deepStrictEqual(report.leftovers, [{ plugin: "forgotten", pid: plugin.pid, reaped: true }])
      assert.isFalse(isAlive(plugin.pid))
    }).pipe(Effect.scoped))
})

/** A writable cgroup v2 folder for one test, or undefined where the machine has none. */
const makeCgroup = (): string | undefined => {
  try {
    const mounts = fs.readFileSync("/proc/mounts", "utf8").split("\n").map((line) => line.split(" "))
    const root = mounts.find((fields) => fields[2] === "cgroup2")?.[1]
    if (root === undefined || !root.startsWith("/sys/fs/cgroup")) return undefined
    const dir = path.join(root, `leftovers-test-${process.pid}-${Math.floor(Math.random() * 1e9)}`)
    fs.mkdirSync(dir)
    return dir
  } catch {
    return undefined
  }
}

describe("Leftovers.reap with a recorded cgroup", () => {
  it.live("ends a setsid grandchild that left the plugin's group but not its cgroup, and removes the cgroup", () =>
    Effect.gen(function*() {
      const cgroup = makeCgroup()
      if (cgroup === undefined) {
        console.info("skipped: no writable cgroup v2 on this machine; the group-based reaping is tested above")
        return
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        try {
          fs.writeFileSync(path.join(cgroup, "cgroup.kill"), "1")
        } catch {
          // Already removed by the reaping.
        }
      }))
      const dir = yield* registryDir
      // The plugin waits for a line (so it is in the cgroup before it forks), then starts a
      // `setsid` grandchild and reports it.
      const plugin = yield* detached("sh", ["-c", "read -r _; setsid sleep 300 & echo \"$!\"; wait"], "pipe")
      fs.writeFileSync(path.join(cgroup, "cgroup.procs"), String(plugin.pid))
      plugin.child.stdin?.write("go\n")
      const line = yield* Effect.callback<string>((resume) => {
        plugin.child.stdout?.once("data", (chunk: Buffer) => resume(Effect.succeed(chunk.toString().trim())))
      })
      const grandchild = Number(line)
      assert.isTrue(yield* eventually(() => ProcStat.readStat(grandchild)?.sid === grandchild), "the grandchild leads a session of its own")
      writeRegistry(dir, { host: deadHost, bootId: ProcStat.bootId(), processes: [{ ...entryOf("escaper", plugin), cgroup }] })
      process.kill(plugin.pid, "SIGKILL")
      assert.isTrue(yield* eventually(() => !isAlive(plugin.pid)))
      const leftovers = yield* Leftovers.reap({ directory: dir, grace: "300 millis" })
      assert.deepStrictEqual(leftovers, [{ plugin: "escaper", pid: grandchild, reaped: true }])
      assert.isFalse(isAlive(grandchild))
      assert.isFalse(fs.existsSync(cgroup), "the emptied cgroup is removed")
    }).pipe(Effect.scoped))
})
