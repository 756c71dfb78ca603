import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Framing from "../src/Framing.ts"
import * as PluginClientError from "../src/PluginClientError.ts"
import * as PluginProcess from "../src/PluginProcess.ts"
import * as RpcPeer from "../src/RpcPeer.ts"
import { InMemorySpawner } from "../src/testing/index.ts"
import { eventually, fixture, isAlive, live, liveChildren, liveGroupMembers, node } from "./support/processes.ts"

/** The first stdout line of a process that satisfies `predicate`. */
const firstLine = (proc: PluginProcess.PluginProcess, predicate: (line: string) => boolean) =>
  proc.stdout.pipe(
    Framing.frames(),
    Stream.filter((f): f is string => typeof f === "string" && predicate(f)),
    Stream.runHead,
    Effect.map(Option.getOrThrow)
  )

for (const launcher of [PluginProcess.spawnerLauncher, PluginProcess.nodeLauncher]) {
  const liveWith = Layer.merge(live, Layer.succeed(PluginProcess.Launcher, launcher))

  describe(`PluginProcess (real processes, ${launcher.name} launcher)`, () => {
    afterEach(async () => {
      // No test may leave a child of the test process behind.
      const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
      assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
    })

    it.live("passes only allow-listed host variables that exist, plus explicit extras", () =>
      Effect.gen(function*() {
        const proc = yield* PluginProcess.make({
          name: "env",
          executable: node,
          args: [fixture("rpc-plugin.mjs")],
          allowedEnvVars: ["ALLOWED_ONE", "NOT_SET_ANYWHERE"],
          env: { EXTRA: "fixed" },
          hostEnv: { ALLOWED_ONE: "yes", SECRET_TOKEN: "hunter2", AWS_SECRET_ACCESS_KEY: "k", PATH: "/usr/bin" }
        })
        const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc))
        const env = yield* peer.request("env")
        assert.deepStrictEqual(env, { ALLOWED_ONE: "yes", EXTRA: "fixed" })
      }).pipe(Effect.provide(liveWith)))

    it.live("does not leak the real host environment when no allow-list is given", () =>
      Effect.gen(function*() {
        process.env.PLUGIN_HOST_TEST_SECRET = "must-not-leak"
        const proc = yield* PluginProcess.make({ name: "env", executable: fixture("env-dump.sh") })
        proc.writeLine(`{"jsonrpc":"2.0","id":1,"method":"names"}`)
        const line = yield* firstLine(proc, (l) => l.includes("\"id\":1"))
        const names: string = JSON.parse(line).result
        assert.notInclude(names, "PLUGIN_HOST_TEST_SECRET")
        assert.notInclude(names, "PATH")
        assert.notInclude(names, "HOME")
      }).pipe(Effect.provide(liveWith), Effect.ensuring(Effect.sync(() => delete process.env.PLUGIN_HOST_TEST_SECRET))))

    it.live("drains megabytes of stderr so the plugin never blocks, keeping a bounded excerpt", () =>
      Effect.gen(function*() {
        const proc = yield* PluginProcess.make({ name: "flood", executable: fixture("stderr-flood.sh") })
        const done = yield* firstLine(proc, (l) => l.includes("\"done\"")).pipe(Effect.timeoutOption("10 seconds"))
        assert.isTrue(Option.isSome(done), "the plugin blocked on a full stderr pipe")
        const excerpt = yield* proc.stderrExcerpt
        assert.isAtMost(excerpt.length, 8_000)
        assert.isAtLeast(excerpt.length, 7_000)
        assert.match(excerpt, /^e+$/m)
      }).pipe(Effect.provide(liveWith)))

    it.live("stops a SIGTERM-ignoring plugin with SIGKILL after the grace period", () =>
      Effect.gen(function*() {
        const proc = yield* PluginProcess.make({ name: "trap", executable: fixture("trap-term.sh") }, { shutdownGrace: "300 millis" })
        yield* firstLine(proc, (l) => l === "ready")
        const started = performance.now()
        const exit = yield* proc.stop()
        const took = performance.now() - started
        assert.deepStrictEqual(exit, { code: null, signal: "SIGKILL", requested: true })
        assert.isAtLeast(took, 290)
        assert.isBelow(took, 300 + 1_000)
        assert.isFalse(isAlive(proc.pid))
        // The group's SIGKILL reaches the `sleep` child too; its death is not the leader's exit.
        assert.isTrue(yield* eventually(() => liveGroupMembers(proc.pid).length === 0, 2_000), "a group member survived SIGKILL")
      }).pipe(Effect.provide(liveWith)))

    it.live("closing the Scope kills the plugin and its grandchild", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const proc = yield* PluginProcess.make({ name: "gc", executable: fixture("grandchild.sh") }, { shutdownGrace: "500 millis" }).pipe(
          Scope.provide(scope)
        )
        const line = yield* firstLine(proc, (l) => l.includes("grandchild"))
        const grandchild: number = JSON.parse(line).params.pid
        assert.isTrue(isAlive(grandchild))
        yield* Scope.close(scope, Exit.void)
        assert.isFalse(isAlive(proc.pid))
        assert.isTrue(yield* eventually(() => !isAlive(grandchild), 2_000), "grandchild survived")
      }).pipe(Effect.provide(liveWith)))

    it.live("reports the exit as data: code, signal, and whether the host asked for it", () =>
      Effect.gen(function*() {
        const crashing = yield* PluginProcess.make({ name: "crash", executable: node, args: [fixture("rpc-plugin.mjs")] })
        crashing.writeLine(`{"jsonrpc":"2.0","id":1,"method":"crash","params":{"code":3,"stderr":"fatal: out of cheese\\n"}}`)
        assert.deepStrictEqual(yield* crashing.exit, { code: 3, signal: null, requested: false })
        assert.include(yield* crashing.stderrExcerpt, "out of cheese")

        const killed = yield* PluginProcess.make({ name: "kill", executable: node, args: [fixture("rpc-plugin.mjs")] })
        killed.writeLine(`{"jsonrpc":"2.0","id":1,"method":"kill-self","params":{"signal":"SIGKILL"}}`)
        assert.deepStrictEqual(yield* killed.exit, { code: null, signal: "SIGKILL", requested: false })

        const stopped = yield* PluginProcess.make({ name: "stop", executable: node, args: [fixture("rpc-plugin.mjs")] })
        const exit = yield* stopped.stop()
        assert.isTrue(exit.requested)
        assert.deepStrictEqual(yield* stopped.exit, exit)
        // A second stop waits for the first and returns the same exit.
        assert.deepStrictEqual(yield* stopped.stop(), exit)
      }).pipe(Effect.provide(liveWith)))

    it.live("runs the graceful hook first: a plugin that honours shutdown exits 0", () =>
      Effect.gen(function*() {
        const proc = yield* PluginProcess.make({ name: "graceful", executable: node, args: [fixture("rpc-plugin.mjs"), "--ignore-eof"] })
        const peer = yield* RpcPeer.make(RpcPeer.fromProcess(proc))
        const exit = yield* proc.stop({ graceful: peer.request("shutdown") })
        assert.deepStrictEqual(exit, { code: 0, signal: null, requested: true })
      }).pipe(Effect.provide(liveWith)))

    it.live("runs in the given working directory, with args passed as given (no shell parsing)", () =>
      Effect.gen(function*() {
        const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-cwd-")))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
        const proc = yield* PluginProcess.make({
          name: "cwd",
          executable: "/bin/sh",
          args: ["-c", "pwd; printf '%s\\n' \"$1\"; cat >/dev/null", "sh", "a b; $(echo injected)"],
          cwd: dir
        })
        const lines = yield* proc.stdout.pipe(
          Framing.frames(),
          Stream.filter((f): f is string => typeof f === "string"),
          Stream.take(2),
          Stream.runCollect
        )
        assert.deepStrictEqual(lines, [dir, "a b; $(echo injected)"])
      }).pipe(Effect.provide(liveWith)))

    it.live("a plugin that closes its stdin but keeps running ends the connection with the write failure", () =>
      Effect.gen(function*() {
        const proc = yield* PluginProcess.make(
          { name: "deaf", executable: "/bin/sh", args: ["-c", "exec 0<&-; echo closed; exec sleep 30"] },
          { shutdownGrace: "500 millis" }
        )
        yield* firstLine(proc, (l) => l === "closed")
        // Writes fail (EPIPE) once the pipe has no reader; keep writing until the failure lands.
        const detail = yield* Effect.raceFirst(
          proc.inputFailure,
          Effect.forever(Effect.andThen(Effect.sync(() => proc.writeLine(`{"jsonrpc":"2.0","id":1,"method":"x"}`)), Effect.sleep("10 millis")))
        ).pipe(Effect.timeoutOption("3 seconds"))
        assert.isTrue(Option.isSome(detail), "no write failure reported")
        const end = yield* proc.ended.pipe(Effect.timeoutOption("2 seconds"))
        assert.isTrue(Option.isSome(end))
        if (Option.isSome(end)) assert.strictEqual(end.value._tag, "InputFailed")
        assert.isTrue(Option.isNone(yield* proc.exitNow), "the plugin is still running")
        assert.isFalse(proc.writeLine("{}"), "writes are refused once stdin is broken")
      }).pipe(Effect.provide(liveWith)))

    it.live("queued stdin bytes grow while the plugin does not read, and fall, with a call to the listener, as it reads", () =>
      Effect.gen(function*() {
        // `sleep 3` does not read its stdin for 3 s; `cat` then reads everything.
        const proc = yield* PluginProcess.make(
          { name: "late-reader", executable: "/bin/sh", args: ["-c", "sleep 3; exec cat >/dev/null"] },
          { shutdownGrace: "500 millis" }
        )
        let written = 0
        yield* proc.listenInputWritten(() => void written++)
        const line = "x".repeat(64 * 1024 - 1)
        for (let i = 0; i < 32; i++) assert.isTrue(proc.writeLine(line))
        yield* Effect.sleep("200 millis")
        // 2 MiB written; the pipe took 64 KiB of it (Linux), a few more lines may be on their way.
        const stuck = proc.queuedInputBytes()
        assert.isAtLeast(stuck, 32 * 64 * 1024 - 256 * 1024)
        assert.isAtMost(stuck, 32 * 64 * 1024)
        assert.isTrue(yield* eventually(() => proc.queuedInputBytes() === 0, 15_000), `still queued: ${proc.queuedInputBytes()}`)
        assert.isAbove(written, 0)
      }).pipe(Effect.scoped, Effect.provide(liveWith)), 30_000)

    it.live("an exit while a grandchild holds the pipes is reported at once; the grandchild goes with the Scope", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const proc = yield* PluginProcess.make(
          { name: "leaver", executable: "/bin/sh", args: ["-c", "sleep 30 & echo $!; exit 0"] },
          { shutdownGrace: "500 millis" }
        ).pipe(Scope.provide(scope))
        const grandchild = Number(yield* firstLine(proc, (l) => /^\d+$/.test(l)))
        const exit = yield* proc.exit.pipe(Effect.timeoutOption("2 seconds"))
        assert.deepStrictEqual(Option.getOrUndefined(exit), { code: 0, signal: null, requested: false })
        assert.isTrue(isAlive(grandchild))
        yield* Scope.close(scope, Exit.void)
        assert.isTrue(yield* eventually(() => !isAlive(grandchild), 2_000), "grandchild survived its Scope")
      }).pipe(Effect.provide(liveWith)))

    it.live("an executable without the execute bit is a Spawn error", () =>
      Effect.gen(function*() {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-noexec-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
        const file = path.join(dir, "plugin.sh")
        fs.writeFileSync(file, "#!/bin/sh\necho hi\n", { mode: 0o644 })
        const error = yield* PluginProcess.make({ name: "noexec", executable: file }).pipe(Effect.flip)
        assert.instanceOf(error.reason, PluginClientError.Spawn)
        assert.include(error.message, "plugin `noexec` failed to spawn")
        assert.match(error.message, /EACCES|PermissionDenied/)
      }).pipe(Effect.provide(liveWith)))

    it.live("a missing executable is a Spawn error naming the plugin and the path", () =>
      Effect.gen(function*() {
        const error = yield* PluginProcess.make({ name: "ghost", executable: "/nonexistent/plugin-binary" }).pipe(Effect.flip)
        assert.strictEqual(error.plugin, "ghost")
        assert.instanceOf(error.reason, PluginClientError.Spawn)
        assert.include(error.message, "plugin `ghost` failed to spawn `/nonexistent/plugin-binary`")
      }).pipe(Effect.provide(liveWith)))
  })
}

describe("when the host itself is SIGKILLed", () => {
  it.live("a worker plugin sees stdin close and exits: nothing is orphaned", () =>
    Effect.gen(function*() {
      const host = spawn(node, [fixture("host-that-dies.ts")], { stdio: ["ignore", "pipe", "inherit"] })
      let out = ""
      host.stdout.on("data", (d: Buffer) => void (out += d.toString()))
      const started = yield* eventually(() => /plugin \d+/.test(out), 10_000)
      assert.isTrue(started, out)
      const pid = Number(/plugin (\d+)/.exec(out)?.[1])
      assert.isTrue(isAlive(pid))
      host.kill("SIGKILL")
      assert.isTrue(yield* eventually(() => !isAlive(pid), 3_000), `plugin ${pid} outlived its SIGKILLed host`)
    }))
})

for (const launcher of [PluginProcess.spawnerLauncher, PluginProcess.nodeLauncher]) {
  describe(`PluginProcess stderr logging (${launcher.name} launcher)`, () => {
    it.live("logs every stderr line annotated with the plugin's name", () =>
      Effect.gen(function*() {
        const lines: Array<{ message: unknown; plugin: unknown; stream: unknown }> = []
        const capture = Logger.make(({ fiber, message }) => {
          const annotations = fiber.getRef(References.CurrentLogAnnotations)
          lines.push({ message, plugin: annotations.plugin, stream: annotations.stream })
        })
        yield* Effect.gen(function*() {
          const proc = yield* PluginProcess.make(
            { name: "chatty", executable: node, args: [fixture("rpc-plugin.mjs"), "--banner"] },
            { stderrLogLevel: "Info" }
          )
          assert.isTrue(yield* eventually(() => lines.some((l) => String(l.message).includes("plugin ready"))))
          yield* proc.stop()
        }).pipe(Effect.scoped, Effect.provide(Logger.layer([capture])))
        const banner = lines.find((l) => String(l.message).includes("plugin ready"))
        assert.deepInclude(banner, { plugin: "chatty", stream: "stderr" })
      }).pipe(Effect.provide(Layer.merge(NodeServices.layer, Layer.succeed(PluginProcess.Launcher, launcher)))))

    it.live("lines a plugin writes to stderr as it stops are still logged", () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const capture = Logger.make(({ message }) => void lines.push(String(message)))
        yield* Effect.gen(function*() {
          const proc = yield* PluginProcess.make(
            {
              name: "polite",
              executable: "/bin/sh",
              args: ["-c", "trap 'echo goodbye from the plugin >&2; exit 0' TERM; echo ready; while :; do sleep 0.02; done"]
            },
            { stderrLogLevel: "Info", shutdownGrace: "2 seconds" }
          )
          yield* firstLine(proc, (l) => l === "ready")
          assert.deepStrictEqual(yield* proc.stop(), { code: 0, signal: null, requested: true })
        }).pipe(Effect.scoped, Effect.provide(Logger.layer([capture])))
        const logged = yield* eventually(() => lines.some((l) => l.includes("goodbye from the plugin")), 1_000)
        assert.isTrue(logged, `logged: ${lines.join(" | ")}`)
      }).pipe(Effect.provide(Layer.merge(NodeServices.layer, Layer.succeed(PluginProcess.Launcher, launcher)))))
  })
}

describe("PluginProcess stop sequence (TestClock, in-memory spawner)", () => {
  const settle = Effect.gen(function*() {
    for (let i = 0; i < 50; i++) yield* Effect.yieldNow
  })

  it.effect("SIGTERM, SIGKILL after shutdownGrace, then gives up killTimeout later on a process no signal ends", () =>
    Effect.gen(function*() {
      const errors: Array<string> = []
      const capture = Logger.make(({ logLevel, message }) => {
        if (logLevel === "Error") errors.push(String(message))
      })
      const fake = yield* InMemorySpawner.make({
        plugin: (proc) => Effect.andThen(proc.ignoreEverySignal, Effect.as(Effect.sleep("1 hour"), 0))
      })
      const proc = yield* PluginProcess.make({ name: "stuck", executable: "plugin" }, { shutdownGrace: "3 seconds", killTimeout: "2 seconds" }).pipe(
        Effect.provide(fake.layer)
      )
      const stopping = yield* proc.stop().pipe(Effect.provide(Logger.layer([capture])), Effect.forkChild)
      yield* settle
      assert.deepStrictEqual((yield* fake.spawns)[0]?.signals, ["SIGTERM"])
      yield* TestClock.adjust("3 seconds")
      yield* settle
      assert.deepStrictEqual((yield* fake.spawns)[0]?.signals, ["SIGTERM", "SIGKILL"])
      yield* TestClock.adjust("1999 millis")
      yield* settle
      assert.isUndefined(stopping.pollUnsafe(), "still waiting within killTimeout of the SIGKILL")
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(stopping), { code: null, signal: "SIGKILL", requested: true })
      assert.deepStrictEqual(errors, ["still running 2 s after SIGKILL; giving up on it"])
      assert.isTrue((yield* fake.spawns)[0]?.running, "it is given up on, not gone")
      // Its behaviour ends on its own; the Scope then closes without waiting on anything.
      yield* TestClock.adjust("1 hour")
    }))

  it.effect("a process that exits on SIGTERM is stopped at its exit, and a second stop gets the same exit", () =>
    Effect.gen(function*() {
      // Deaf to stdin's end: only the signal ends it.
      const fake = yield* InMemorySpawner.make({ plugin: () => Effect.as(Effect.never, 0) })
      const proc = yield* PluginProcess.make({ name: "polite", executable: "plugin" }, { shutdownGrace: "3 seconds" }).pipe(
        Effect.provide(fake.layer)
      )
      const exit = yield* proc.stop()
      assert.deepStrictEqual(exit, { code: null, signal: "SIGTERM", requested: true })
      assert.deepStrictEqual((yield* fake.spawns)[0]?.signals, ["SIGTERM"])
      assert.deepStrictEqual(yield* proc.stop(), exit)
      assert.deepStrictEqual(yield* proc.exit, exit)
    }))
})
