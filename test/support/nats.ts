/**
 * Real NATS for the NATS tests: finds the `nats-server` binary, starts a private server on a
 * free loopback port for the length of a Scope (stopped with SIGTERM, then SIGKILL, bounded),
 * and spawns worker processes whose stderr the tests can wait on.
 *
 * When the binary is missing, the NATS suites are skipped with a printed reason outside CI;
 * in CI (`process.env.CI`) they run and fail loudly instead.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

// ---------------------------------------------------------------------------------------------
// the binary
// ---------------------------------------------------------------------------------------------

const isExecutable = (file: string): boolean => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

const candidates = (): Array<string> => [
  ...(process.env.NATS_SERVER_BIN ? [process.env.NATS_SERVER_BIN] : []),
  "/usr/sbin/nats-server",
  ...(process.env.PATH ?? "").split(path.delimiter).filter((dir) => dir !== "").map((dir) => path.join(dir, "nats-server"))
]

/** The `nats-server` binary (`$NATS_SERVER_BIN`, `/usr/sbin/nats-server`, or on `PATH`), if any. */
export const natsServerBinary: string | undefined = candidates().find(isExecutable)

const missing = "nats-server not found (set NATS_SERVER_BIN, or install it in /usr/sbin or on PATH)"

/** True when the NATS suites must be skipped: no binary, and not in CI. */
export const skipNats: boolean = natsServerBinary === undefined && !process.env.CI

if (skipNats) {
  console.warn(`[NATS tests skipped] ${missing}`)
}

// ---------------------------------------------------------------------------------------------
// ports
// ---------------------------------------------------------------------------------------------

/** A loopback port nobody listens on right now (the OS picks it). */
export const freePort: Effect.Effect<number> = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.once("error", (error) => resume(Effect.die(error)))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(port === 0 ? Effect.die(new Error("no port assigned")) : Effect.succeed(port)))
  })
})

/** One attempt: connects and waits for the server's `INFO` greeting (NATS is ready then). */
const probe = (port: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    let settled = false
    const finish = (ok: boolean) => {
      if (settled) return
      settled = true
      socket.destroy()
      resume(Effect.succeed(ok))
    }
    const timer = setTimeout(() => finish(false), 500)
    socket.once("data", (chunk) => {
      clearTimeout(timer)
      finish(chunk.toString("utf8").startsWith("INFO"))
    })
    socket.once("error", () => {
      clearTimeout(timer)
      finish(false)
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      finish(false)
    })
  })

// ---------------------------------------------------------------------------------------------
// processes
// ---------------------------------------------------------------------------------------------

const exited = (child: ChildProcess): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const onExit = () => resume(Effect.void)
    child.once("exit", onExit)
    return Effect.sync(() => child.off("exit", onExit))
  })

/** SIGTERM, up to `graceMs` to exit, then SIGKILL and up to 2 s more. Never hangs. */
export const stopProcess = (child: ChildProcess, graceMs = 3_000): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill("SIGTERM")
    const gone = yield* exited(child).pipe(Effect.timeoutOption(graceMs))
    if (gone._tag === "Some") return
    child.kill("SIGKILL")
    yield* exited(child).pipe(Effect.timeoutOption(2_000))
  })

/** A running `nats-server`. */
export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string
  readonly port: number
  readonly pid: number
  /** Stops it now (the Scope would otherwise do it at its end). */
  readonly stop: Effect.Effect<void>
}

const startOnce = (
  binary: string,
  port: number,
  extraArgs: ReadonlyArray<string> = []
): Effect.Effect<NatsServer | string, never, Scope.Scope> =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(binary, [...extraArgs, "-a", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] })),
      (child) => stopProcess(child)
    )
    let stderr = ""
    child.stderr?.on("data", (chunk: Buffer) => {
      if (stderr.length < 8_000) stderr += chunk.toString("utf8")
    })
    const deadline = performance.now() + 5_000
    while (performance.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        return `nats-server exited (${child.exitCode ?? child.signalCode}) on port ${port}: ${stderr.trim()}`
      }
      if (yield* probe(port)) {
        return { url: `nats://127.0.0.1:${port}`, port, pid: child.pid ?? -1, stop: stopProcess(child) }
      }
      yield* Effect.sleep("20 millis")
    }
    return `nats-server did not accept connections on port ${port} within 5 s: ${stderr.trim()}`
  })

/**
 * Starts a private `nats-server` on a free loopback port and waits (at most 5 s) until it
 * accepts connections; the Scope's end stops it. Retries twice on another port if the chosen
 * one was taken meanwhile. Fails (a defect) when the binary is missing, which only happens in CI.
 */
export const startNatsServer: Effect.Effect<NatsServer, never, Scope.Scope> = Effect.suspend(() => startWith([]))

/**
 * {@link startNatsServer} with a server configuration (nats-server's config syntax, written to a
 * temporary file removed at the Scope's end): say, users with permissions.
 */
export const startNatsServerWithConfig = (config: string): Effect.Effect<NatsServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const file = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nats-config-"))
        const file = path.join(dir, "server.conf")
        fs.writeFileSync(file, config)
        return file
      }),
      (file) => Effect.sync(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
    )
    return yield* startWith(["-c", file])
  })

const startWith = (extraArgs: ReadonlyArray<string>): Effect.Effect<NatsServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const binary = natsServerBinary
    if (binary === undefined) return yield* Effect.die(new Error(`${missing}; the NATS tests need it in CI`))
    const problems: Array<string> = []
    for (let attempt = 0; attempt < 3; attempt++) {
      const started = yield* startOnce(binary, yield* freePort, extraArgs)
      if (typeof started !== "string") return started
      problems.push(started)
    }
    return yield* Effect.die(new Error(`could not start nats-server:\n${problems.join("\n")}`))
  })

/**
 * Starts a `nats-server` on `port` (say, where a stopped one listened: a server restart) and
 * waits until it accepts connections; the Scope's end stops it.
 */
export const startNatsServerAt = (port: number): Effect.Effect<NatsServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const binary = natsServerBinary
    if (binary === undefined) return yield* Effect.die(new Error(`${missing}; the NATS tests need it in CI`))
    const started = yield* startOnce(binary, port)
    return typeof started === "string" ? yield* Effect.die(new Error(started)) : started
  })

// ---------------------------------------------------------------------------------------------
// worker processes
// ---------------------------------------------------------------------------------------------

/** A spawned process whose stderr lines are kept, for tests to wait on. */
export interface Spawned {
  readonly pid: number
  readonly child: ChildProcess
  readonly stderr: () => string
  /** Waits (real time, bounded) for a stderr line containing `text`. */
  readonly waitForStderr: (text: string, timeoutMs?: number) => Effect.Effect<void, Error>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Waits for the process to exit. */
  readonly exited: Effect.Effect<void>
}

/** Spawns `node <script>` (Node strips the TS types) with extra env; stopped at the Scope's end. */
export const spawnNode = (
  script: string,
  env: Readonly<Record<string, string>>
): Effect.Effect<Spawned, never, Scope.Scope> =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["--no-warnings", script], {
          stdio: ["ignore", "ignore", "pipe"],
          env: { ...process.env, ...env }
        })
      ),
      (child) => stopProcess(child)
    )
    let stderr = ""
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    const waitForStderr = (text: string, timeoutMs = 5_000) =>
      Effect.gen(function*() {
        const deadline = performance.now() + timeoutMs
        while (performance.now() < deadline) {
          if (stderr.includes(text)) return
          if (child.exitCode !== null || child.signalCode !== null) break
          yield* Effect.sleep("10 millis")
        }
        if (stderr.includes(text)) return
        return yield* Effect.fail(new Error(`no \`${text}\` on stderr of pid ${child.pid} (exit ${child.exitCode ?? child.signalCode}); stderr:\n${stderr}`))
      })
    return {
      pid: child.pid ?? -1,
      child,
      stderr: () => stderr,
      waitForStderr,
      kill: (signal) => Effect.sync(() => void child.kill(signal)),
      exited: exited(child)
    }
  })
