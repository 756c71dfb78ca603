/**
 * No process outlives its plugin on stop or Scope close: the whole tree, `setsid` descendants
 * included, with a cgroup where the host may create one and with the `/proc` walk (always tested:
 * cgroups are switched off for it), with both launchers. Real processes; every test checks
 * `/proc` that nothing of the tree is left.
 */
import { afterAll, afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Framing from "../src/Framing.ts"
import * as Cgroup from "../src/internal/cgroup.ts"
import * as ProcessTree from "../src/internal/processTree.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import { eventually, fixture, isAlive, launchers, liveChildren, liveWith } from "./support/processes.ts"

const cgroupDir = Cgroup.available()
if (cgroupDir === undefined) {
  console.log("ProcessTree: cgroup tests skipped: this host may not create a cgroup v2 child group under its own (no cgroup2 mount, or not writable / not delegated)")
}

interface Notification {
  readonly method: string
  readonly params: { readonly pid?: number }
}

/**
 * The pids of the plugin's members, read until it said `ready` and `expected` members announced
 * themselves (a loaded machine may run a member after the plugin said `ready`).
 */
const membersOf = (proc: PluginProcess.PluginProcess, expected: number) => {
  let ready = false
  let members = 0
  return proc.stdout.pipe(
    Framing.frames(),
    Stream.filter((f): f is string => typeof f === "string"),
    Stream.map((line): Notification => JSON.parse(line)),
    Stream.takeUntil((n) => {
      if (n.method === "ready") ready = true
      if (n.method === "member") members++
      return ready && members >= expected
    }),
    Stream.runCollect,
    Effect.map((all) => all.flatMap((n) => n.method === "member" && n.params.pid !== undefined ? [n.params.pid] : []))
  )
}

/** How many members `process-tree.sh` starts, by its first argument. */
const expectedMembers = (args: ReadonlyArray<string>) => args[0] === "deep" ? 5 : 1

/** Spawns `process-tree.sh` with `args` in `scope`, and reads its members' pids. */
const start = (scope: Scope.Scope, args: ReadonlyArray<string>, beforeMembers?: (proc: PluginProcess.PluginProcess) => void) =>
  Effect.gen(function*() {
    const proc = yield* PluginProcess.make(
      { name: "tree", executable: fixture("process-tree.sh"), args },
      { shutdownGrace: "300 millis", killTimeout: "2 seconds" }
    ).pipe(Scope.provide(scope))
    beforeMembers?.(proc)
    const members = yield* membersOf(proc, expectedMembers(args))
    return { proc, members }
  })

const alive = (pids: ReadonlyArray<number>) => pids.filter(isAlive)

/** Groups this test process made, still under the cgroup directory. */
const ownGroups = () =>
  cgroupDir === undefined ? [] : fs.readdirSync(cgroupDir).filter((name) => name.startsWith(`plugin-host-${process.pid}-`))

const modes = [
  { name: "cgroup", enabled: undefined, skip: cgroupDir === undefined },
  { name: "process tree", enabled: false, skip: false }
] as const

for (const launcher of launchers) {
  for (const mode of modes) {
    describe.skipIf(mode.skip)(`whole plugin tree (${launcher.name} launcher, ${mode.name})`, () => {
      beforeAll(() => Cgroup.setEnabled(mode.enabled))
      afterAll(() => Cgroup.setEnabled(undefined))
      afterEach(async () => {
        const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
        assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
        assert.deepStrictEqual(ownGroups(), [], "cgroups left behind")
      })

      it.live("a setsid grandchild, out of the plugin's group and session, dies when the plugin is stopped", () =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const { proc, members } = yield* start(scope, ["setsid"])
          assert.lengthOf(members, 1)
          assert.deepStrictEqual(alive(members), members)
          const exit = yield* proc.stop()
          assert.isTrue(exit.requested)
          assert.deepStrictEqual(alive([proc.pid, ...members]), [], "left after stop")
          yield* Scope.close(scope, Exit.void)
        }).pipe(Effect.provide(liveWith(launcher))))

      it.live("a deeper tree (5 members, 2 in sessions of their own, one ignoring SIGTERM) dies at Scope close", () =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const { proc, members } = yield* start(scope, ["deep"])
          assert.lengthOf(members, 5)
          assert.deepStrictEqual(alive(members), members)
          yield* Scope.close(scope, Exit.void)
          assert.deepStrictEqual(alive([proc.pid, ...members]), [], "left after Scope close")
        }).pipe(Effect.provide(liveWith(launcher))))

      it.live("a plugin that ignores EOF and SIGTERM: it and its setsid grandchild die at the SIGKILL rung", () =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const { proc, members } = yield* start(scope, ["setsid", "ignore-eof"])
          assert.lengthOf(members, 1)
          const exit = yield* proc.stop()
          assert.strictEqual(exit.signal, "SIGKILL")
          assert.deepStrictEqual(alive([proc.pid, ...members]), [], "left after stop")
          yield* Scope.close(scope, Exit.void)
        }).pipe(Effect.provide(liveWith(launcher))))

      if (mode.name === "cgroup") {
        it.live("an orphan made by a double fork before the stop is in the plugin's cgroup, and dies with it", () =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const { proc, members } = yield* start(scope, ["double-fork"], (p) => void p.writeLine("go"))
            assert.lengthOf(members, 1)
            assert.deepStrictEqual(alive(members), members)
            yield* Scope.close(scope, Exit.void)
            assert.deepStrictEqual(alive([proc.pid, ...members]), [], "left after Scope close")
          }).pipe(Effect.provide(liveWith(launcher))))

        it.live("an orphan made at the plugin's first instruction is in its cgroup (entered before the plugin ran), and dies with it", () =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const { proc, members } = yield* start(scope, ["double-fork-at-once"])
            assert.lengthOf(members, 1)
            const groupOf = (pid: number) => fs.readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").find((l) => l.startsWith("0::"))
            assert.match(groupOf(proc.pid) ?? "", /\/plugin-host-\d+-\d+$/, "the plugin runs in a group of its own")
            assert.strictEqual(groupOf(members[0]!), groupOf(proc.pid), "its first fork is in the same group")
            yield* Scope.close(scope, Exit.void)
            assert.deepStrictEqual(alive([proc.pid, ...members]), [], "left after Scope close")
          }).pipe(Effect.provide(liveWith(launcher))))
      } else {
        it.live("without a cgroup, an orphan made by a double fork before the stop is out of reach (the documented escape)", () =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const { members } = yield* start(scope, ["double-fork"], (p) => void p.writeLine("go"))
            assert.lengthOf(members, 1)
            yield* Scope.close(scope, Exit.void)
            try {
              assert.deepStrictEqual(alive(members), members, "the walk cannot link this orphan to the plugin")
            } finally {
              for (const pid of members) process.kill(pid, "SIGKILL")
            }
            assert.isTrue(yield* eventually(() => alive(members).length === 0, 3_000))
          }).pipe(Effect.provide(liveWith(launcher))))
      }
    })
  }
}

describe.skipIf(cgroupDir === undefined)("containment \"process-tree\" on a host that may make cgroups", () => {
  for (const launcher of launchers) {
    it.live(`makes no cgroup (no grace period to wait for), and still ends a setsid grandchild at the stop (${launcher.name} launcher)`, () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const proc = yield* PluginProcess.make(
          { name: "tree", executable: fixture("process-tree.sh"), args: ["setsid"] },
          { shutdownGrace: "300 millis", killTimeout: "2 seconds", containment: "process-tree" }
        ).pipe(Scope.provide(scope))
        const members = yield* membersOf(proc, 1)
        assert.deepStrictEqual(ownGroups(), [], "no cgroup was made")
        assert.notMatch(fs.readFileSync(`/proc/${proc.pid}/cgroup`, "utf8"), /plugin-host-/, "the plugin is in the host's group")
        yield* proc.stop()
        assert.deepStrictEqual(alive([proc.pid, ...members]), [], "left after stop")
        yield* Scope.close(scope, Exit.void)
      }).pipe(Effect.provide(liveWith(launcher))))
  }
})

describe.skipIf(cgroupDir === undefined)("entering the cgroup", () => {
  it.live("a plugin whose shell cannot enter its group exits 125 before running anything, saying why", () =>
    Effect.gen(function*() {
      const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cgroup-entry-")), "ran")
      const entry = yield* Cgroup.prepareEntry({ executable: "/bin/sh", args: ["-c", `touch ${marker}`] }, { cwd: undefined, env: {} })
      assert.isDefined(entry)
      if (entry === undefined) return
      // The group is gone before the plugin starts: its shell cannot write to it.
      Cgroup.remove(entry.group)
      const result = spawnSync(entry.command.executable, [...entry.command.args], { encoding: "utf8", env: {} })
      assert.strictEqual(result.status, 125)
      assert.include(result.stderr, "the plugin cannot enter its cgroup")
      assert.isFalse(fs.existsSync(marker), "the plugin did not run")
    }))
})

describe.skipIf(cgroupDir === undefined)("cgroups a killed host left", () => {
  it.live("the empty groups of a host that is gone are removed; a populated one and a live host's stay", () =>
    Effect.gen(function*() {
      const dir = cgroupDir ?? ""
      // A pid that was a process and is gone: a host killed before its stops.
      const gone = spawn("true")
      yield* Effect.promise(() => new Promise((resolve) => gone.once("exit", resolve)))
      const deadHost = gone.pid ?? 0
      const sleeper = spawn("sleep", ["1000"], { stdio: "ignore" })
      const [empty, populated, live] = [`plugin-host-${deadHost}-1`, `plugin-host-${deadHost}-2`, `plugin-host-${process.pid}-999999`]
      for (const name of [empty, populated, live]) fs.mkdirSync(path.join(dir, name))
      try {
        fs.writeFileSync(path.join(dir, populated, "cgroup.procs"), String(sleeper.pid))
        const removed = Cgroup.removeStale(dir)
        assert.notInclude(removed, populated)
        assert.notInclude(removed, live)
        // Another test process probing at the same moment may have removed it first.
        assert.isFalse(fs.existsSync(path.join(dir, empty)))
        assert.isTrue(fs.existsSync(path.join(dir, populated)))
        assert.isTrue(fs.existsSync(path.join(dir, live)))
      } finally {
        sleeper.kill("SIGKILL")
        yield* Effect.promise(() => new Promise((resolve) => sleeper.once("exit", resolve)))
        yield* eventually(() => Cgroup.populated({ dir: path.join(dir, populated) }) === false)
        for (const name of [empty, populated, live]) Cgroup.remove({ dir: path.join(dir, name) })
      }
      assert.deepStrictEqual(ownGroups(), [])
    }))
})

describe("the /proc walk", () => {
  beforeAll(() => Cgroup.setEnabled(false))
  afterAll(() => Cgroup.setEnabled(undefined))

  it.live("stopping 10 plugins at once scans /proc far fewer times than once per plugin and rung", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const started = yield* Effect.forEach(Array.from({ length: 10 }, () => ["setsid"]), (args) => start(scope, args), { concurrency: "unbounded" })
      const before = ProcessTree.scanCount()
      yield* Scope.close(scope, Exit.void)
      const scans = ProcessTree.scanCount() - before
      // Unshared, each plugin would scan at least twice (the walk as its stop begins, and the sweep).
      assert.isBelow(scans, 20, `${scans} scans`)
      assert.deepStrictEqual(alive(started.flatMap(({ proc, members }) => [proc.pid, ...members])), [])
    }).pipe(Effect.provide(liveWith(PluginProcess.nodeLauncher))))

  it("a pid that is not a live child of the host is never contained (the in-memory spawner's fake pids)", () => {
    assert.isUndefined(ProcessTree.contain(1))
    assert.isUndefined(ProcessTree.contain(process.pid))
  })
})
