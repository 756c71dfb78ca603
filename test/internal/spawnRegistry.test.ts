/**
 * The host's registry: each plugin a launcher spawns is listed (pid, start time, group) while its
 * Scope is open, and the file is gone once none is; the in-memory spawner's fake pids are never
 * recorded nor started through `setpriv`.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Cgroup from "../../src/internal/cgroup.ts"
import * as ProcStat from "../../src/internal/procStat.ts"
import * as SpawnRegistry from "../../src/internal/spawnRegistry.ts"
import * as PluginProcess from "../../src/PluginProcess.ts"
import * as InMemorySpawner from "../../src/testing/InMemorySpawner.ts"
import { eventually, fixture, launchers, liveWith } from "../support/processes.ts"

// This file's host registry lives in a folder of its own (the registry is opened on first use).
const runtime = fs.mkdtempSync(path.join(os.tmpdir(), "spawn-registry-"))
const previousRuntime = process.env["XDG_RUNTIME_DIR"]
process.env["XDG_RUNTIME_DIR"] = runtime
afterAll(() => {
  if (previousRuntime === undefined) delete process.env["XDG_RUNTIME_DIR"]
  else process.env["XDG_RUNTIME_DIR"] = previousRuntime
  fs.rmSync(runtime, { recursive: true, force: true })
})
const registries = path.join(runtime, "effect-plugin-host")
const ownFile = path.join(registries, `${process.pid}.json`)

const readOwn = (): SpawnRegistry.RegistryFile | undefined =>
  fs.existsSync(ownFile) ? Option.getOrUndefined(SpawnRegistry.parse(fs.readFileSync(ownFile, "utf8"))) : undefined

describe("spawnRegistry", () => {
  it("the default folder is per user under XDG_RUNTIME_DIR, else under the OS tmpdir", () => {
    assert.strictEqual(SpawnRegistry.defaultDirectory({ XDG_RUNTIME_DIR: "/run/user/7" }), "/run/user/7/effect-plugin-host")
    assert.strictEqual(SpawnRegistry.defaultDirectory({}), path.join(os.tmpdir(), `effect-plugin-host-${process.getuid?.()}`))
    assert.strictEqual(SpawnRegistry.defaultDirectory({ XDG_RUNTIME_DIR: "relative" }), path.join(os.tmpdir(), `effect-plugin-host-${process.getuid?.()}`))
  })

  it("a folder others can write is not used", () => {
    const open = fs.mkdtempSync(path.join(os.tmpdir(), "open-registry-"))
    fs.chmodSync(open, 0o777)
    assert.isUndefined(SpawnRegistry.usableDirectory(open))
    fs.chmodSync(open, 0o700)
    assert.strictEqual(SpawnRegistry.usableDirectory(open), open)
    fs.rmSync(open, { recursive: true })
  })

  for (const launcher of launchers) {
    it.live(`lists each spawned plugin while its Scope is open, and removes the file after (${launcher.name} launcher)`, () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const proc = yield* PluginProcess.make({ name: "listed", executable: fixture("trap-term.sh") }, { shutdownGrace: "200 millis" }).pipe(
          Scope.provide(scope)
        )
        const registry = readOwn()
        assert.deepStrictEqual(registry?.host, { pid: process.pid, startTime: ProcStat.readStat(process.pid)?.startTime ?? -1 })
        const [{ cgroup, ...entry } = { cgroup: undefined }, ...others] = registry?.processes ?? []
        assert.deepStrictEqual([entry, ...others], [{
          plugin: "listed",
          pid: proc.pid,
          startTime: ProcStat.readStat(proc.pid)?.startTime ?? -1,
          pgid: proc.pid
        }])
        // Where the host may create cgroups, the plugin's own group is recorded (the reaper kills it
        // whole); the plugin enters it itself, as its first step.
        if (Cgroup.available() === undefined) assert.isUndefined(cgroup)
        else {
          const inGroup = () => fs.readFileSync(path.join(cgroup ?? "", "cgroup.procs"), "utf8").split("\n").includes(String(proc.pid))
          assert.isTrue(yield* eventually(inGroup), "the plugin is in its recorded cgroup")
        }
        assert.strictEqual((fs.statSync(ownFile).mode & 0o077), 0, "only this user can read it")
        yield* Scope.close(scope, Exit.void)
        assert.isTrue(yield* eventually(() => !fs.existsSync(ownFile)), "the registry is removed with its last entry")
      }).pipe(Effect.provide(liveWith(launcher))))
  }

  it.effect("the in-memory spawner's fake processes are neither recorded nor started through setpriv or a cgroup's entering shell", () =>
    Effect.gen(function*() {
      yield* PluginProcess.make({ name: "fake", executable: "/bin/sh", args: ["-c", "true"] })
      const [spawn] = yield* InMemorySpawner.spawns
      assert.strictEqual(spawn?.command, "/bin/sh")
      assert.deepStrictEqual(spawn?.args, ["-c", "true"])
      assert.isUndefined(readOwn())
    }).pipe(Effect.scoped, Effect.provide(InMemorySpawner.layer({ "/bin/sh": InMemorySpawner.echo() }))))

  it.live("with several plugins, each spawn and each end is a change of the file: it lists exactly the plugins whose Scopes are open", () =>
    Effect.gen(function*() {
      const scopes = yield* Effect.forEach([0, 1, 2], () => Scope.make())
      const procs = yield* Effect.forEach(scopes, (scope, i) =>
        PluginProcess.make({ name: `several-${i}`, executable: fixture("trap-term.sh") }, { shutdownGrace: "200 millis" }).pipe(Scope.provide(scope)))
      const listed = () => (readOwn()?.processes ?? []).map((entry) => entry.plugin).sort()
      assert.deepStrictEqual(listed(), ["several-0", "several-1", "several-2"])
      yield* Scope.close(scopes[1] ?? (yield* Scope.make()), Exit.void)
      assert.isTrue(yield* eventually(() => listed().join() === "several-0,several-2"), "the ended plugin is no longer listed")
      assert.deepStrictEqual(readOwn()?.processes.map((entry) => entry.pid).sort(), [procs[0]?.pid, procs[2]?.pid].sort())
      yield* Effect.forEach([scopes[0], scopes[2]], (scope) => scope === undefined ? Effect.void : Scope.close(scope, Exit.void))
      assert.isTrue(yield* eventually(() => !fs.existsSync(ownFile)), "the registry is removed with its last entry")
    }).pipe(Effect.provide(liveWith(launchers[0] ?? PluginProcess.nodeLauncher))))

  it("a registry file is its first line with the changes of the lines after it applied; a line cut short is skipped", () => {
    const host = { pid: 1234, startTime: 99 }
    const entry = (pid: number, startTime: number) => ({ plugin: `p${pid}`, pid, startTime, pgid: pid })
    const text = [
      JSON.stringify({ host, bootId: "boot", processes: [entry(10, 1), entry(11, 1)] }),
      JSON.stringify({ add: entry(12, 1) }),
      JSON.stringify({ remove: { pid: 10, startTime: 1 } }),
      // A removal of another process that had the same pid changes nothing.
      JSON.stringify({ remove: { pid: 11, startTime: 7 } }),
      "{\"add\":{\"plugin\":\"p13\",\"pi"
    ].join("\n")
    assert.deepStrictEqual(Option.getOrUndefined(SpawnRegistry.parse(text)), {
      host,
      bootId: "boot",
      processes: [entry(11, 1), entry(12, 1)]
    })
    // A registry written whole (one line, no newline) reads as it is.
    const whole = { host, bootId: "boot", processes: [entry(10, 1)] }
    assert.deepStrictEqual(Option.getOrUndefined(SpawnRegistry.parse(JSON.stringify(whole))), whole)
    assert.isTrue(Option.isNone(SpawnRegistry.parse(JSON.stringify({ add: entry(12, 1) }))))
  })
})
