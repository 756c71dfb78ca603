import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as ProcessGroup from "../../src/internal/processGroup.ts"
import { eventually, fixture, liveGroupMembers, node } from "../support/processes.ts"

/** Spawns the leader of a new process group and waits for its first stdout line. */
const spawnLeader = (command: string, args: ReadonlyArray<string> = []) =>
  Effect.callback<{ readonly child: ChildProcess; readonly pid: number }>((resume) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "ignore"], detached: true })
    child.stdout?.once("data", () => {
      if (child.pid !== undefined) resume(Effect.succeed({ child, pid: child.pid }))
    })
  })

/** How the leader ended, once Node reported it. */
const exitOf = (child: ChildProcess) =>
  Effect.callback<NodeJS.Signals | number | null>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.succeed(child.signalCode ?? child.exitCode))
    child.once("exit", (code, signal) => resume(Effect.succeed(signal ?? code)))
  })

describe("ProcessGroup (signals to a plugin's process group)", () => {
  it.live("terminateGroup ends the leader and its grandchild, with SIGKILL when they ignore SIGTERM", () =>
    Effect.gen(function*() {
      const { child, pid } = yield* spawnLeader(fixture("trap-term.sh"))
      assert.isTrue(ProcessGroup.groupAlive(pid))
      yield* ProcessGroup.terminateGroup(child, pid)
      assert.strictEqual(yield* exitOf(child), "SIGKILL")
      assert.isTrue(yield* eventually(() => liveGroupMembers(pid).length === 0), `left: ${liveGroupMembers(pid).join(", ")}`)
    }))

  it.live("a leader that honours SIGTERM is not sent SIGKILL", () =>
    Effect.gen(function*() {
      const { child, pid } = yield* spawnLeader(fixture("grandchild.sh"))
      yield* ProcessGroup.terminateGroup(child, pid)
      assert.strictEqual(yield* exitOf(child), "SIGTERM")
      assert.isTrue(yield* eventually(() => liveGroupMembers(pid).length === 0), `left: ${liveGroupMembers(pid).join(", ")}`)
    }))

  it.live("a group that is gone is reported gone, and signalling it throws nothing", () =>
    Effect.gen(function*() {
      // A leader without children: no orphan is left for init to reap.
      const { child, pid } = yield* spawnLeader(node, ["-e", "console.log('ready'); setInterval(() => {}, 1000)"])
      ProcessGroup.signalGroup(child, pid, "SIGKILL")
      yield* exitOf(child)
      assert.isTrue(yield* eventually(() => !ProcessGroup.groupAlive(pid)))
      ProcessGroup.signalGroup(child, pid, "SIGTERM")
      yield* ProcessGroup.terminateGroup(child, pid)
    }))
})
