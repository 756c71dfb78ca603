/**
 * Tests of the in-memory `ChildProcessSpawner`: every fake process is driven
 * only through `ChildProcess.make(...)` and the handle it returns, and every
 * wait is driven by `TestClock`, so nothing here sleeps for real.
 */
import { assert, describe, it } from "@effect/vitest"
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as PlatformError from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import type * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import { InMemorySpawner } from "../src/testing/index.ts"

// --- helpers ---------------------------------------------------------------

/** Lets forked fibers (stdin feeding, per-request handlers) reach their next suspension. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 25; i++) yield* Effect.yieldNow
})

const encoder = new TextEncoder()

/**
 * Connects a test "host" to a handle: `send` writes one JSON line to stdin
 * through a long-lived stream run into `handle.stdin`, `close` ends it (EOF),
 * `next` takes the next stdout line, parsed.
 */
const connect = Effect.fnUntraced(function*(handle: ChildProcessSpawner.ChildProcessHandle) {
  const outbound = yield* Queue.unbounded<string, Cause.Done>()
  const inbound = yield* Queue.unbounded<string, Cause.Done>()
  const received: Array<string> = []
  yield* Stream.fromQueue(outbound).pipe(
    Stream.map((line) => encoder.encode(line + "\n")),
    Stream.run(handle.stdin),
    Effect.ignore,
    Effect.forkScoped
  )
  yield* handle.stdout.pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.runForEach((line) =>
      Effect.sync(() => {
        received.push(line)
        Queue.offerUnsafe(inbound, line)
      })
    ),
    Effect.ignore,
    Effect.andThen(Queue.end(inbound)),
    Effect.forkScoped
  )
  return {
    send: (message: unknown) => Queue.offer(outbound, JSON.stringify(message)),
    close: Queue.end(outbound),
    next: Effect.map(Queue.take(inbound), (line): unknown => JSON.parse(line)),
    nextRaw: Queue.take(inbound),
    /** Every stdout line seen so far. */
    received: Effect.sync(() => [...received]),
    /** Resolves once stdout has ended, with everything that was written. */
    drained: Effect.gen(function*() {
      const rest = yield* Queue.collect(inbound)
      return rest
    })
  }
})

const request = (id: number | string, method: string, params?: unknown) =>
  params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params }

const readAll = (stream: Stream.Stream<Uint8Array, PlatformError.PlatformError>) =>
  stream.pipe(Stream.decodeText(), Stream.mkString)

const recordOf = (pid: number) =>
  Effect.map(InMemorySpawner.spawns, (records) => {
    const found = records.find((record) => record.pid === pid)
    if (found === undefined) throw new Error(`no spawn record for pid ${pid}`)
    return found
  })

const expectPlatformError = (exit: Exit.Exit<unknown, PlatformError.PlatformError>): PlatformError.PlatformError => {
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got ${String(exit.value)}`)
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (error === undefined || error._tag !== "Fail") throw new Error("expected a typed failure")
  assert.isTrue(PlatformError.isPlatformError(error.error))
  return error.error
}

const causeMessage = (error: PlatformError.PlatformError): string => {
  const cause = error.reason.cause
  return cause instanceof Error ? cause.message : String(cause)
}

// --- tests -------------------------------------------------------------------

describe("InMemorySpawner", () => {
  it.effect("echo: round trip, initialize, fail, notify and unknown methods", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("plugin-echo", ["--stdio"])
      const io = yield* connect(handle)

      yield* io.send(request(1, "ping", { x: 1 }))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 1, result: { x: 1 } })

      yield* io.send(request("a", "initialize"))
      assert.deepStrictEqual(yield* io.next, {
        jsonrpc: "2.0",
        id: "a",
        result: { ok: true, supportedMethods: [...InMemorySpawner.echoMethods] }
      })

      // The error object is passed through whatever its shape.
      yield* io.send(request(2, "fail", { error: { kind: "needs-credential", name: "TOKEN" } }))
      assert.deepStrictEqual(yield* io.next, {
        jsonrpc: "2.0",
        id: 2,
        error: { kind: "needs-credential", name: "TOKEN" }
      })

      yield* io.send(request(3, "notify", { method: "log", params: { level: "info" } }))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", method: "log", params: { level: "info" } })
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 3, result: null })

      // Notifications from the host get no answer; the next reply is for id 4.
      yield* io.send({ jsonrpc: "2.0", method: "configChanged" })
      yield* io.send(request(4, "echo"))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 4, result: null })
      assert.isTrue(yield* handle.isRunning)
    }).pipe(Effect.provide(InMemorySpawner.layer({ "plugin-echo": InMemorySpawner.echo() }))))

  it.effect("echo: callHost sends a request to the host and relays its answer", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("plugin")
      const io = yield* connect(handle)

      yield* io.send(request(1, "callHost", { method: "secrets.get", params: { name: "K" } }))
      assert.deepStrictEqual(yield* io.next, {
        jsonrpc: "2.0",
        id: "w1",
        method: "secrets.get",
        params: { name: "K" }
      })
      yield* io.send({ jsonrpc: "2.0", id: "w1", result: { value: "s3cr3t" } })
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 1, result: { value: "s3cr3t" } })

      yield* io.send(request(2, "callHost", { method: "nope" }))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: "w2", method: "nope" })
      yield* io.send({ jsonrpc: "2.0", id: "w2", error: { code: -32601, message: "Method not found" } })
      assert.deepStrictEqual(yield* io.next, {
        jsonrpc: "2.0",
        id: 2,
        result: { hostError: { code: -32601, message: "Method not found" } }
      })
    }).pipe(Effect.provide(InMemorySpawner.layer({ plugin: InMemorySpawner.echo() }))))

  it.effect("echo: sleep replies come back out of order, driven by TestClock", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("plugin")
      const io = yield* connect(handle)

      yield* io.send(request(1, "sleep", { ms: 200, value: "slow" }))
      yield* io.send(request(2, "sleep", { ms: 50, value: "fast" }))
      yield* settle
      assert.deepStrictEqual(yield* io.received, [])

      yield* TestClock.adjust("49 millis")
      yield* settle
      assert.deepStrictEqual(yield* io.received, [])

      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 2, result: "fast" })

      yield* TestClock.adjust("149 millis")
      yield* settle
      assert.strictEqual((yield* io.received).length, 1)

      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 1, result: "slow" })
    }).pipe(Effect.provide(InMemorySpawner.layer({ plugin: InMemorySpawner.echo() }))))

  it.effect("crashOnStart: exit code and stderr", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("broken")
      const [code, stderr, stdout] = yield* Effect.all(
        [handle.exitCode, readAll(handle.stderr), readAll(handle.stdout)],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(code, 3)
      assert.strictEqual(stderr, "error while loading shared libraries\n")
      assert.strictEqual(stdout, "")
      assert.isFalse(yield* handle.isRunning)
      const record = yield* recordOf(handle.pid)
      assert.deepStrictEqual(record.exit, Option.some({ code: 3, signal: null }))
      assert.isFalse(record.running)
    }).pipe(Effect.provide(InMemorySpawner.layer({
      broken: InMemorySpawner.crashOnStart({ code: 3, stderr: "error while loading shared libraries\n" })
    }))))

  it.effect("crashMidCall: serves afterCalls requests, then dies without replying", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("flaky")
      const io = yield* connect(handle)
      const stderr = yield* readAll(handle.stderr).pipe(Effect.forkScoped)

      yield* io.send(request(1, "a", [1]))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 1, result: [1] })
      yield* io.send(request(2, "b", [2]))

      assert.strictEqual(yield* handle.exitCode, 7)
      // stdout ends with no reply to request 2.
      assert.deepStrictEqual(yield* io.drained, [])
      assert.strictEqual(yield* Fiber.join(stderr), "panic: index out of range\n")
      const record = yield* recordOf(handle.pid)
      assert.strictEqual(record.stdinLines.length, 2)
    }).pipe(Effect.provide(InMemorySpawner.layer({
      flaky: InMemorySpawner.crashMidCall({ afterCalls: 1, code: 7, stderr: "panic: index out of range\n" })
    }))))

  it.effect("crash method and external SIGKILL end the process like the real thing", () =>
    Effect.gen(function*() {
      const a = yield* ChildProcess.make("plugin")
      const ioA = yield* connect(a)
      yield* ioA.send(request(1, "crash", { code: 42 }))
      assert.strictEqual(yield* a.exitCode, 42)

      const b = yield* ChildProcess.make("plugin")
      yield* settle
      assert.isTrue(yield* InMemorySpawner.InMemorySpawner.use((recorder) => recorder.signal(b.pid, "SIGKILL")))
      const error = expectPlatformError(yield* Effect.exit(b.exitCode))
      assert.strictEqual(causeMessage(error), "Process interrupted due to receipt of signal: 'SIGKILL'")
      // A second signal to a dead process is refused.
      assert.isFalse(yield* InMemorySpawner.InMemorySpawner.use((recorder) => recorder.signal(b.pid, "SIGKILL")))
    }).pipe(Effect.provide(InMemorySpawner.layer({ plugin: InMemorySpawner.echo() }))))

  it.effect("kill(): SIGTERM ends the process and exitCode fails with Node's message", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("plugin")
      const io = yield* connect(handle)
      yield* io.send(request(1, "ping"))
      yield* io.next

      yield* handle.kill()
      assert.isFalse(yield* handle.isRunning)
      const error = expectPlatformError(yield* Effect.exit(handle.exitCode))
      assert.strictEqual(error.reason._tag, "Unknown")
      assert.strictEqual(error.reason.module, "ChildProcess")
      assert.strictEqual(error.reason.method, "exitCode")
      assert.strictEqual(causeMessage(error), "Process interrupted due to receipt of signal: 'SIGTERM'")
      assert.deepStrictEqual(yield* io.drained, [])

      const record = yield* recordOf(handle.pid)
      assert.deepStrictEqual(record.signals, ["SIGTERM"])
      assert.deepStrictEqual(record.exit, Option.some({ code: null, signal: "SIGTERM" }))

      // Like Node, signalling an exited child fails.
      const again = expectPlatformError(yield* Effect.exit(handle.kill()))
      assert.strictEqual(again.reason.method, "kill")
    }).pipe(Effect.provide(InMemorySpawner.layer({ plugin: InMemorySpawner.echo() }))))

  it.effect("ignoreSigterm + forceKillAfter: alive until the deadline, then SIGKILLed", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("stubborn")
      const io = yield* connect(handle)
      const killer = yield* handle.kill({ killSignal: "SIGTERM", forceKillAfter: "10 seconds" }).pipe(Effect.forkChild)
      yield* settle

      assert.isTrue(yield* handle.isRunning)
      assert.deepStrictEqual((yield* recordOf(handle.pid)).signals, ["SIGTERM"])
      // Still serving requests while ignoring SIGTERM.
      yield* io.send(request(1, "ping", "still here"))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 1, result: "still here" })

      yield* TestClock.adjust("9999 millis")
      assert.isTrue(yield* handle.isRunning)
      assert.isUndefined(killer.pollUnsafe())

      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(killer)
      assert.isFalse(yield* handle.isRunning)
      const record = yield* recordOf(handle.pid)
      assert.deepStrictEqual(record.signals, ["SIGTERM", "SIGKILL"])
      assert.deepStrictEqual(record.exit, Option.some({ code: null, signal: "SIGKILL" }))
      const error = expectPlatformError(yield* Effect.exit(handle.exitCode))
      assert.strictEqual(causeMessage(error), "Process interrupted due to receipt of signal: 'SIGKILL'")
    }).pipe(Effect.provide(InMemorySpawner.layer({ stubborn: InMemorySpawner.ignoreSigterm(InMemorySpawner.echo()) }))))

  it.effect("scope release kills with the command's killSignal and forceKillAfter", () =>
    Effect.gen(function*() {
      // A TERM-ignoring plugin released with a 3 s grace period.
      const scope = yield* Scope.make()
      const handle = yield* ChildProcess.make("stubborn", [], { forceKillAfter: "3 seconds" }).pipe(
        Scope.provide(scope)
      )
      const closing = yield* Scope.close(scope, Exit.void).pipe(Effect.forkChild)
      yield* settle
      assert.isTrue(yield* handle.isRunning)
      yield* TestClock.adjust("2999 millis")
      assert.isUndefined(closing.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      assert.deepStrictEqual((yield* recordOf(handle.pid)).signals, ["SIGTERM", "SIGKILL"])

      // A well-behaved plugin with a custom kill signal dies on that signal.
      const polite = yield* Effect.scoped(
        ChildProcess.make("plugin", [], { killSignal: "SIGINT" }).pipe(Effect.map((h) => h.pid))
      )
      const record = yield* recordOf(polite)
      assert.deepStrictEqual(record.signals, ["SIGINT"])
      assert.deepStrictEqual(record.exit, Option.some({ code: null, signal: "SIGINT" }))
    }).pipe(Effect.provide(InMemorySpawner.layer({
      stubborn: InMemorySpawner.echo({ ignoreSigterm: true }),
      plugin: InMemorySpawner.echo()
    }))))

  it.effect("unknown command fails the spawn with NotFound", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(ChildProcess.make("definitely-not-a-plugin", ["--help"]))
      const error = expectPlatformError(exit)
      assert.strictEqual(error.reason._tag, "NotFound")
      assert.strictEqual(error.reason.module, "ChildProcess")
      assert.strictEqual(error.reason.method, "spawn")
      assert.deepStrictEqual(yield* InMemorySpawner.spawns, [])
    }).pipe(Effect.provide(InMemorySpawner.layer({ plugin: InMemorySpawner.echo() }))))

  it.effect("env record mirrors Node's resolution without reading the real environment", () =>
    Effect.gen(function*() {
      const explicit = yield* ChildProcess.make("plugin", [Redacted.make("secret-arg")], {
        env: { FOO: "bar", TOKEN: Redacted.make("t0k3n"), HOME: undefined },
        cwd: "/srv/plugins"
      })
      const extended = yield* ChildProcess.make("plugin", [], { env: { FOO: "bar", HOME: undefined }, extendEnv: true })
      const inherited = yield* ChildProcess.make("plugin")

      const [a, b, c] = yield* Effect.all([recordOf(explicit.pid), recordOf(extended.pid), recordOf(inherited.pid)])
      assert.deepStrictEqual(a.env, { FOO: "bar", TOKEN: "t0k3n" })
      assert.deepStrictEqual(a.args, ["secret-arg"])
      assert.strictEqual(a.cwd, "/srv/plugins")
      assert.deepStrictEqual(b.env, { PATH: "/usr/bin", FOO: "bar" })
      assert.deepStrictEqual(c.env, { PATH: "/usr/bin", HOME: "/home/host" })
      assert.isUndefined(c.cwd)
    }).pipe(Effect.provide(InMemorySpawner.layer(
      { plugin: InMemorySpawner.echo() },
      { hostEnv: { PATH: "/usr/bin", HOME: "/home/host" } }
    ))))

  it.effect("stdin EOF: echo finishes in-flight replies, then exits 0", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("plugin")
      const io = yield* connect(handle)
      yield* io.send(request(1, "sleep", { ms: 1000 }))
      yield* io.close
      yield* settle

      const record = yield* recordOf(handle.pid)
      assert.isTrue(record.stdinClosed)
      assert.isTrue(yield* handle.isRunning)

      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* handle.exitCode, 0)
      assert.deepStrictEqual(yield* io.received, [JSON.stringify({ jsonrpc: "2.0", id: 1, result: { ms: 1000 } })])
    }).pipe(Effect.provide(InMemorySpawner.layer({ plugin: InMemorySpawner.echo() }))))

  it.effect("stdin bytes are split into lines across chunk and UTF-8 boundaries", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("plugin")
      const bytes = encoder.encode("first €uro\r\nsecond\nunterminated")
      // Split in the middle of the 3-byte "€" and of the CRLF.
      const chunks = [bytes.subarray(0, 7), bytes.subarray(7, 12), bytes.subarray(12, 13), bytes.subarray(13)]
      yield* Stream.fromIterable(chunks).pipe(Stream.run(handle.stdin))
      assert.strictEqual(yield* handle.exitCode, 0)
      const record = yield* recordOf(handle.pid)
      assert.deepStrictEqual(record.stdinLines, ["first €uro", "second", "unterminated"])
      // Writing once the process is gone fails like Node's stdin sink does.
      const late = expectPlatformError(yield* Effect.exit(Stream.make(encoder.encode("x\n")).pipe(Stream.run(handle.stdin))))
      assert.strictEqual(late.reason.method, "fromWritable(stdin)")
    }).pipe(Effect.provide(InMemorySpawner.layer({ plugin: InMemorySpawner.neverReply() }))))

  it.effect("exitAfter: exits with the code right after the n-th reply", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("budget")
      const io = yield* connect(handle)
      yield* io.send(request(1, "a"))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 1, result: null })
      assert.isTrue(yield* handle.isRunning)
      yield* io.send(request(2, "b"))
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 2, result: null })
      assert.strictEqual(yield* handle.exitCode, 5)
    }).pipe(Effect.provide(InMemorySpawner.layer({ budget: InMemorySpawner.exitAfter(2, 5) }))))

  it.effect("spawn records: increasing pids, lines, exits, sequence by spawn number", () =>
    Effect.gen(function*() {
      const first = yield* ChildProcess.make("plugin", ["one"])
      assert.strictEqual(yield* first.exitCode, 1)

      const second = yield* ChildProcess.make("plugin", ["two"])
      const io = yield* connect(second)
      yield* io.send(request(9, "ping"))
      yield* io.next

      const records = yield* InMemorySpawner.spawns
      assert.deepStrictEqual(records.map((r) => r.pid), [10_000, 10_001])
      assert.strictEqual(first.pid, 10_000)
      const [r1, r2] = records
      assert.deepStrictEqual(r1?.args, ["one"])
      assert.deepStrictEqual(r1?.exit, Option.some({ code: 1, signal: null }))
      assert.isFalse(r1?.running)
      assert.deepStrictEqual(r2?.args, ["two"])
      assert.isTrue(r2?.running)
      assert.deepStrictEqual(r2?.stdinLines, [JSON.stringify(request(9, "ping"))])
      assert.isTrue(Option.isNone(r2?.exit ?? Option.some({ code: 0, signal: null })))
    }).pipe(Effect.provide(InMemorySpawner.layer({
      plugin: InMemorySpawner.sequence(InMemorySpawner.crashOnStart({ code: 1 }), InMemorySpawner.echo())
    }))))

  it.effect("make(): an instance exposes its layer and records directly", () =>
    Effect.gen(function*() {
      const instance = yield* InMemorySpawner.make({ p: InMemorySpawner.crashOnStart({ code: 0 }) }, { firstPid: 500 })
      const code = yield* ChildProcess.make("p").pipe(
        Effect.flatMap((handle) => handle.exitCode),
        Effect.provide(instance.layer)
      )
      assert.strictEqual(code, 0)
      const records = yield* instance.spawns
      assert.deepStrictEqual(records.map((r) => [r.pid, r.command]), [[500, "p"]])
      // The derived helpers of ChildProcessSpawner work on top of the fake.
      const lines = yield* instance.spawner.lines(ChildProcess.make("p"))
      assert.deepStrictEqual(lines, [])
    }))

  it.effect("garbage, wrongId, giantLine and slowReply shape the replies", () =>
    Effect.gen(function*() {
      const g = yield* connect(yield* ChildProcess.make("garbage"))
      yield* g.send(request(1, "x", 1))
      assert.strictEqual(yield* g.nextRaw, "not json")
      assert.strictEqual(yield* g.nextRaw, "[1,2]")
      assert.deepStrictEqual(yield* g.next, { jsonrpc: "2.0", id: 1, result: 1 })

      const w = yield* connect(yield* ChildProcess.make("wrong"))
      yield* w.send(request(1, "x"))
      assert.deepStrictEqual(yield* w.next, { jsonrpc: "2.0", id: 1001, result: null })

      const big = yield* connect(yield* ChildProcess.make("giant"))
      yield* big.send(request(1, "x"))
      const line = yield* big.nextRaw
      assert.strictEqual(line.length, 300_000)
      assert.isFalse(line.includes("\n"))
      assert.deepStrictEqual(yield* big.next, { jsonrpc: "2.0", id: 1, result: null })

      const slow = yield* connect(yield* ChildProcess.make("slow"))
      yield* slow.send(request(1, "x"))
      yield* settle
      yield* TestClock.adjust("1999 millis")
      yield* settle
      assert.deepStrictEqual(yield* slow.received, [])
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* slow.next, { jsonrpc: "2.0", id: 1, result: null })
    }).pipe(Effect.provide(InMemorySpawner.layer({
      garbage: InMemorySpawner.garbage(["not json", "[1,2]"]),
      wrong: InMemorySpawner.wrongId(),
      giant: InMemorySpawner.giantLine(300_000),
      slow: InMemorySpawner.slowReply("2 seconds")
    }))))

  it.effect("stderrFlood with a bounded pipe blocks the plugin until the host drains stderr", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("flood")
      const io = yield* connect(handle)
      yield* io.send(request(1, "x"))
      yield* settle
      // 200 000 bytes cannot fit in a 65 536-byte pipe nobody reads.
      assert.deepStrictEqual(yield* io.received, [])

      const stderr = yield* readAll(handle.stderr).pipe(Effect.forkChild)
      assert.deepStrictEqual(yield* io.next, { jsonrpc: "2.0", id: 1, result: null })
      yield* io.close
      assert.strictEqual(yield* handle.exitCode, 0)
      const text = yield* Fiber.join(stderr)
      assert.strictEqual(encoder.encode(text).length, 200_000)
      assert.isTrue(text.startsWith("stderr flood x"))
    }).pipe(Effect.provide(InMemorySpawner.layer(
      { flood: InMemorySpawner.stderrFlood(200_000) },
      { pipeCapacity: 65_536 }
    ))))

  it.effect("with pipeCapacity, stdin takes no more than the capacity while the behaviour leaves its lines unread", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("late-reader")
      let written = 0
      // 100 lines of 100 bytes, one write each, into a 1 000-byte pipe.
      const line = encoder.encode("x".repeat(99) + "\n")
      yield* Stream.range(1, 100).pipe(
        Stream.map(() => line),
        Stream.tap(() => Effect.sync(() => void written++)),
        Stream.run(handle.stdin),
        Effect.forkScoped
      )
      yield* settle
      assert.isAtMost((yield* recordOf(handle.pid)).stdinLines.length, 11, "what fits in the pipe")
      const stuck = written
      yield* settle
      assert.strictEqual(written, stuck, "the writer waits")
      // The behaviour starts reading after 1 s: every line goes through.
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual((yield* recordOf(handle.pid)).stdinLines.length, 100)
    }).pipe(Effect.provide(InMemorySpawner.layer(
      { "late-reader": (proc) => Effect.sleep("1 second").pipe(Effect.andThen(Stream.runDrain(proc.lines)), Effect.as(0)) },
      { pipeCapacity: 1_000 }
    ))))

  it.effect("custom behaviours see args and env; an uncaught failure exits 1 with the cause on stderr", () =>
    Effect.gen(function*() {
      const shown = yield* ChildProcess.make("show", ["--name", "x"], { env: { MODE: "test" } })
      assert.strictEqual(yield* readAll(shown.stdout), "--name x MODE=test\n")
      assert.strictEqual(yield* shown.exitCode, 0)

      const failing = yield* ChildProcess.make("throws")
      const [code, stderr] = yield* Effect.all([failing.exitCode, readAll(failing.stderr)], { concurrency: 2 })
      assert.strictEqual(code, 1)
      assert.include(stderr, "config file missing")
    }).pipe(Effect.provide(InMemorySpawner.layer({
      show: (proc) => proc.write(`${proc.args.join(" ")} MODE=${proc.env.MODE ?? ""}`).pipe(Effect.as(0)),
      throws: () => Effect.fail(new Error("config file missing"))
    }))))

  it.effect("neverReply reads but never answers, and exits 0 on EOF", () =>
    Effect.gen(function*() {
      const handle = yield* ChildProcess.make("hung")
      const io = yield* connect(handle)
      yield* io.send(request(1, "x"))
      yield* settle
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(yield* io.received, [])
      assert.deepStrictEqual((yield* recordOf(handle.pid)).stdinLines.length, 1)
      yield* io.close
      assert.strictEqual(yield* handle.exitCode, 0)
    }).pipe(Effect.provide(InMemorySpawner.layer({ hung: InMemorySpawner.neverReply() }))))
})
