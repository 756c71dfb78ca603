import { assert, describe, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Cgroup from "../../src/internal/cgroup.ts"
import { eventually } from "../support/processes.ts"

const cgroups = Cgroup.available() !== undefined
const ownGroup = () => fs.readFileSync("/proc/self/cgroup", "utf8")
/** The groups this host process has under its group now. */
const groupsOfThisHost = () => fs.readdirSync(Cgroup.available() ?? "/").filter((name) => name.startsWith(`plugin-host-${process.pid}-`))

describe.skipIf(!cgroups)("cgroup (where the host may make groups)", () => {
  it("names the cgroup2 mount its groups are under and whether it has favordynmods, as mountinfo says", () => {
    const mount = Cgroup.favorDynmods()
    assert.isDefined(mount)
    if (mount === undefined) return
    assert.isTrue((Cgroup.available() ?? "").startsWith(mount.mount))
    const line = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === mount.mount && l.includes(" - cgroup2 "))
    assert.isDefined(line)
    assert.strictEqual(mount.enabled, (line?.split(" - ")[1]?.split(" ")[2] ?? "").split(",").includes("favordynmods"))
  })

  it.live("starting the grace period early leaves the host in its own group", () =>
    Effect.gen(function*() {
      const before = ownGroup()
      Cgroup.prime()
      // The primer runs on a libuv thread and lasts at most a grace period or so.
      yield* Effect.sleep("100 millis")
      assert.strictEqual(ownGroup(), before)
    }))

  it.live("the descriptor the host writes its own group through is never inherited by what it spawns", () =>
    Effect.gen(function*() {
      Cgroup.prime()
      yield* Effect.sleep("50 millis")
      const own = fs.readdirSync("/proc/self/fd").map((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`)
        } catch {
          return ""
        }
      })
      const favored = Cgroup.favorDynmods()?.enabled === true
      if (!favored) assert.isTrue(own.some((link) => link.endsWith("cgroup.procs")), "the host holds it")
      const links = spawnSync("/bin/sh", ["-c", "for f in /proc/$$/fd/*; do readlink \"$f\"; done"], { encoding: "utf8" }).stdout
      assert.notStrictEqual(links, "", "the child listed its descriptors")
      assert.notInclude(links, "cgroup.procs")
    }))

  it.live("a group being made for a launch that is interrupted is removed once made", () =>
    Effect.gen(function*() {
      const before = groupsOfThisHost()
      const fiber = yield* Effect.forkChild(Cgroup.prepareEntry({ executable: "/bin/true", args: [] }, { cwd: undefined, env: {} }), { startImmediately: true })
      yield* Fiber.interrupt(fiber)
      yield* Effect.sleep("100 millis")
      assert.deepStrictEqual(groupsOfThisHost(), before)
      const made = yield* Cgroup.prepareEntry({ executable: "/bin/true", args: [] }, { cwd: undefined, env: {} })
      assert.isDefined(made, "an entry is made when nothing interrupts it")
      if (made !== undefined) Cgroup.remove(made.group)
    }))

  it.live("a group is removed off the host's thread when empty, and left (reported) while populated", () =>
    Effect.gen(function*() {
      const entry = yield* Cgroup.prepareEntry({ executable: "/bin/sleep", args: ["30"] }, { cwd: undefined, env: {} })
      assert.isDefined(entry)
      if (entry === undefined) return
      const child = spawn(entry.command.executable, [...entry.command.args], { stdio: "ignore" })
      assert.isTrue(yield* eventually(() => Cgroup.members(entry.group).length > 0, 10_000))
      assert.isFalse(yield* Cgroup.removeAside(entry.group), "a populated group is not removed")
      assert.isTrue(fs.existsSync(entry.group.dir))
      const exited = new Promise((resolve) => child.once("exit", resolve))
      yield* Cgroup.killAside(entry.group)
      yield* Effect.promise(() => exited)
      assert.isTrue(yield* eventually(() => !Cgroup.populated(entry.group), 10_000))
      assert.isTrue(yield* Cgroup.removeAside(entry.group))
      assert.isFalse(fs.existsSync(entry.group.dir))
      assert.isTrue(yield* Cgroup.removeAside(entry.group), "a group already gone counts as removed")
    }))
})

