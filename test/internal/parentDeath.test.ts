import { assert, describe, it } from "@effect/vitest"
import { withParentDeathSignal, setprivAvailable } from "../../src/internal/parentDeath.ts"
import { fixture } from "../support/processes.ts"

describe.skipIf(!setprivAvailable())("parentDeath (with /usr/bin/setpriv)", () => {
  it("starts an executable through setpriv with SIGKILL as the parent-death signal", () => {
    const command = withParentDeathSignal({ executable: fixture("trap-term.sh"), args: ["--x"] }, { cwd: undefined, env: {} })
    assert.deepStrictEqual(command, {
      executable: "/usr/bin/setpriv",
      args: ["--pdeathsig", "KILL", "--", fixture("trap-term.sh"), "--x"]
    })
  })

  it("resolves a bare command name on the plugin's PATH, as the exec would", () => {
    assert.strictEqual(withParentDeathSignal({ executable: "sh", args: [] }, { cwd: undefined, env: { PATH: "/usr/bin:/bin" } }).executable, "/usr/bin/setpriv")
    const unknown = { executable: "no-such-command-here", args: [] }
    assert.deepStrictEqual(withParentDeathSignal(unknown, { cwd: undefined, env: { PATH: "/usr/bin:/bin" } }), unknown)
  })

  it("leaves a command that would not start as it is, so the spawn itself fails with a Spawn error", () => {
    const missing = { executable: "/nonexistent/plugin", args: [] }
    assert.deepStrictEqual(withParentDeathSignal(missing, { cwd: undefined, env: {} }), missing)
    const notExecutable = { executable: fixture("README.md"), args: [] }
    assert.deepStrictEqual(withParentDeathSignal(notExecutable, { cwd: undefined, env: {} }), notExecutable)
  })
})

if (!setprivAvailable()) {
  describe("parentDeath", () => {
    it("is not tested: /usr/bin/setpriv is missing on this machine", () => {
      console.info("skipped: /usr/bin/setpriv (util-linux) is not installed")
    })
  })
}
