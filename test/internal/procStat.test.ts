import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as ProcStat from "../../src/internal/procStat.ts"
import { eventually } from "../support/processes.ts"

describe("procStat", () => {
  it("reads this process: its parent, group and a start time", () => {
    const self = ProcStat.readStat(process.pid)
    assert.isDefined(self)
    assert.strictEqual(self?.ppid, process.ppid)
    assert.isAbove(self?.startTime ?? 0, 0)
    assert.isTrue(ProcStat.isLive(self))
  })

  it("a pid that does not exist reads as undefined", () => {
    assert.isUndefined(ProcStat.readStat(2 ** 22 + 1))
  })

  it.live("a command name with spaces and parentheses does not shift the fields", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "proc-stat-"))
      const odd = path.join(dir, "a) b (c")
      fs.copyFileSync("/bin/sleep", odd)
      fs.chmodSync(odd, 0o755)
      const child = spawn(odd, ["30"], { stdio: "ignore", detached: true })
      const pid = child.pid ?? 0
      try {
        assert.isTrue(yield* eventually(() => ProcStat.readStat(pid) !== undefined))
        const stat = ProcStat.readStat(pid)
        assert.strictEqual(stat?.ppid, process.pid)
        assert.strictEqual(stat?.pgid, pid, "detached: it leads its own group")
        assert.strictEqual(stat?.sid, pid, "and its own session")
        assert.isAtLeast(stat?.startTime ?? 0, ProcStat.readStat(process.pid)?.startTime ?? Infinity)
      } finally {
        child.kill("SIGKILL")
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it("lists this process among all processes, and reads a boot id", () => {
    assert.isTrue(ProcStat.allStats().some((stat) => stat.pid === process.pid))
    assert.match(ProcStat.bootId(), /^[0-9a-f-]{36}$/)
  })
})
