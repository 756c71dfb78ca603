/**
 * The worker SDK's watch on its host: a worker whose host dies exits even when its stdin stays
 * open (here a sibling `sleep` holds the pipe, so no EOF ever comes).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Effect from "effect/Effect"
import * as ParentWatch from "../../src/internal/parentWatch.ts"
import { eventually, fixture, isAlive, liveGroupMembers, node } from "../support/processes.ts"

describe("parentWatch", () => {
  it.effect("completes at once with the current parent when it is not the one given", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* ParentWatch.parentChanged(process.ppid + 1), process.ppid)
    }))

  it.live("a worker-SDK plugin exits when its host dies, although its stdin stays open", () =>
    Effect.gen(function*() {
      const host = spawn(fixture("containment/parent-watch-host.sh"), [node, fixture("echo-worker.ts")], {
        stdio: ["ignore", "pipe", "inherit"],
        detached: true
      })
      const group = host.pid ?? 0
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          try {
            process.kill(-group, "SIGKILL")
          } catch {
            // Nothing left.
          }
        })
      )
      const line = yield* Effect.callback<string>((resume) => {
        host.stdout.once("data", (chunk: Buffer) => resume(Effect.succeed(chunk.toString().trim())))
      })
      const worker = Number(line)
      assert.isTrue(yield* eventually(() => isAlive(worker), 5_000))
      // Let the worker start serving (its watch starts with it) before its host goes.
      yield* Effect.sleep("1500 millis")
      host.kill("SIGKILL")
      assert.isTrue(yield* eventually(() => !isAlive(worker), 10_000), `worker ${worker} outlived its host`)
      assert.isNotEmpty(liveGroupMembers(group), "the sibling holding its stdin still runs: no EOF was seen")
    }).pipe(Effect.scoped))
})
