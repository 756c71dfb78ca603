/**
 * An in-memory `ChildProcessSpawner` whose "processes" are scripted Effect
 * programs, so the layers above it (RPC peer, plugin client, manager) can be
 * unit-tested with `TestClock` and without real processes.
 *
 * This module owns the fake process model (stdin line splitting, stdout and
 * stderr pipes that end at exit, signal delivery, exit codes, kill and scope
 * release with `forceKillAfter`), the spawn record used for assertions, and a
 * library of ready-made plugin behaviours (`echo`, `crashOnStart`,
 * `crashMidCall`, …). Its observable behaviour mirrors
 * `@effect/platform-node-shared/NodeChildProcessSpawner`, with one intentional
 * difference: every wait uses the Effect `Clock` (`Effect.sleep`), never native
 * timers, so `TestClock.adjust` drives grace periods.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PlatformError from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as CommandLine from "effect/process/CommandLine"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Semaphore from "effect/Semaphore"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as Framing from "../Framing.ts"
import * as Protocol from "../internal/protocol.ts"
import * as SpawnRegistry from "../internal/spawnRegistry.ts"

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

/**
 * How a fake process ended, in the shape of Node's `"exit"` event: exactly one
 * of `code` and `signal` is non-null. A normal exit has a `code`; a process
 * terminated by a signal has `code: null` and the signal's name.
 *
 * @since 0.1.0
 */
export interface ExitInfo {
  readonly code: number | null
  readonly signal: ChildProcess.Signal | null
}

/**
 * The API a scripted behaviour uses to play a child process. `lines` is the
 * process's stdin split into lines (without the newline); it ends at stdin EOF
 * and, like a real pipe, can be consumed once. Writes go to stdout/stderr and
 * are silently dropped once the process has exited. `exit(code)` ends the
 * process at once, like `process.exit`, from any fiber of the behaviour.
 *
 * @since 0.1.0
 */
export interface FakeProcess {
  /** The fake pid, also reported by the handle and the spawn record. */
  readonly pid: number
  /** The executable string the process was spawned with. */
  readonly command: string
  /** Arguments with any `Redacted` values unwrapped, as a real process would see them. */
  readonly args: ReadonlyArray<string>
  /** The resolved environment (see `SpawnRecord.env`). */
  readonly env: Readonly<Record<string, string>>
  /** The `cwd` option as given (not resolved against the file system). */
  readonly cwd: string | undefined
  /** 1-based number of this spawn among the spawns of the same command, used by `sequence`. */
  readonly spawnNumber: number
  /** Stdin lines (messages, under Content-Length framing); the stream ends at stdin EOF. */
  readonly lines: Stream.Stream<string>
  /**
   * Writes `line` plus `"\n"` to stdout; with a `Content-Length` header instead when the host
   * frames this process's stdio so (`PLUGIN_HOST_FRAMING=content-length`, which also makes
   * `lines` the decoded messages).
   */
  readonly write: (line: string) => Effect.Effect<void>
  /** Writes raw text or bytes to stdout, with no newline added. */
  readonly writeRaw: (data: string | Uint8Array) => Effect.Effect<void>
  /** Writes raw text or bytes to stderr, with no newline added. */
  readonly writeStderr: (data: string | Uint8Array) => Effect.Effect<void>
  /** Makes the process ignore `signal` from now on (SIGKILL and SIGSTOP cannot be ignored). */
  readonly ignoreSignal: (signal: ChildProcess.Signal) => Effect.Effect<void>
  /** Shorthand for `ignoreSignal("SIGTERM")`: only SIGKILL will end the process. */
  readonly ignoreSigterm: Effect.Effect<void>
  /**
   * Makes the process survive every signal, SIGKILL included, like one stuck in the kernel
   * (uninterruptible sleep on a dead NFS mount): only its behaviour ending ends it.
   */
  readonly ignoreEverySignal: Effect.Effect<void>
  /** Exits the process immediately with `code`, interrupting every fiber of the behaviour. */
  readonly exit: (code: number) => Effect.Effect<never>
}

/**
 * A scripted plugin: an Effect run as the body of a fake process. When it
 * succeeds with a number the process exits with that code; when it fails or
 * dies the cause is written to stderr and the process exits with 1 (as Node
 * does for an uncaught exception); a terminating signal interrupts it.
 *
 * @since 0.1.0
 */
export type Behaviour = (proc: FakeProcess) => Effect.Effect<number, unknown>

/**
 * The behaviour table of a spawner, keyed by the executable string
 * (`command.command`). Spawning a command that is not a key fails with a
 * `NotFound` `PlatformError`, as a missing executable does with Node.
 *
 * @since 0.1.0
 */
export type Behaviours = Readonly<Record<string, Behaviour>>

/**
 * A snapshot of one spawned fake process, for assertions. `env` is the
 * resolved environment: `command.options.env` (undefined values removed) on top
 * of the inherited environment, where the inherited environment is
 * `options.hostEnv` when given, otherwise the real `process.env` only when
 * `extendEnv: true`, otherwise empty. `signals` lists every signal delivered
 * while running, including ignored ones; `stdinLines` every complete stdin line
 * received so far (plus a trailing partial line at EOF).
 *
 * @since 0.1.0
 */
export interface SpawnRecord {
  readonly pid: number
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  readonly cwd: string | undefined
  readonly signals: ReadonlyArray<ChildProcess.Signal>
  readonly stdinLines: ReadonlyArray<string>
  readonly stdinClosed: boolean
  readonly exit: Option.Option<ExitInfo>
  readonly running: boolean
}

/**
 * Options of a spawner instance. `hostEnv` simulates the parent's environment
 * (inherited when the command sets no `env`, or with `extendEnv: true`), so
 * tests never depend on the real `process.env`. `pipeCapacity` bounds the bytes
 * buffered in each pipe (Linux uses 65536): a behaviour writing into a full
 * stdout/stderr blocks until the host reads, which reproduces the deadlock of a
 * host that does not drain stderr, and the host's stdin writes wait while the
 * behaviour leaves `lines` unread (a plugin that does not read its input). It
 * is unbounded by default.
 *
 * @since 0.1.0
 */
export interface Options {
  readonly hostEnv?: Readonly<Record<string, string>> | undefined
  readonly pipeCapacity?: number | undefined
  readonly firstPid?: number | undefined
}

/**
 * The inspection side of a spawner instance, also available as a service
 * (`InMemorySpawner`) from `layer`. `spawns` lists snapshots of every
 * successful spawn in spawn order. `signal(pid, signal?)` delivers a signal
 * from outside the host, like `kill -TERM <pid>` (for instance to simulate an
 * OOM kill with SIGKILL); it returns `false` when the process is unknown or
 * has already exited.
 *
 * @since 0.1.0
 */
export interface Recorder {
  readonly spawns: Effect.Effect<ReadonlyArray<SpawnRecord>>
  readonly signal: (pid: number, signal?: ChildProcess.Signal) => Effect.Effect<boolean>
}

/**
 * Service giving access to the `Recorder` of the spawner provided by `layer`,
 * so layer-based tests can read spawn records without threading the instance.
 *
 * @since 0.1.0
 */
export class InMemorySpawner extends Context.Service<InMemorySpawner, Recorder>()(
  "effect-plugin-host/testing/InMemorySpawner"
) {}

/**
 * One spawner instance: its `Recorder`, the raw `ChildProcessSpawner` service
 * value, and a `layer` providing both `ChildProcessSpawner` and the
 * `InMemorySpawner` recorder service. All spawns through it share one pid
 * counter and one record list.
 *
 * @since 0.1.0
 */
export interface Instance extends Recorder {
  readonly spawner: ChildProcessSpawner.ChildProcessSpawner["Service"]
  readonly layer: Layer.Layer<ChildProcessSpawner.ChildProcessSpawner | InMemorySpawner>
}

// ---------------------------------------------------------------------------
// Errors (shaped like the ones Node's spawner builds)
// ---------------------------------------------------------------------------

const unwrapWord = (word: CommandLine.Word): string => typeof word === "string" ? word : Redacted.value(word)

// Node formats the command line into `pathOrDescriptor`; the fake always uses
// POSIX quoting so messages do not depend on the platform running the tests.
const displayCommand = (command: ChildProcess.StandardCommand): string =>
  CommandLine.display([command.command, ...command.args], { format: "posix" })

const systemError = (
  command: ChildProcess.StandardCommand,
  method: string,
  tag: PlatformError.SystemErrorTag,
  cause: Error & { readonly syscall?: string | undefined },
  description?: string
): PlatformError.PlatformError =>
  PlatformError.systemError({
    _tag: tag,
    module: "ChildProcess",
    method,
    pathOrDescriptor: displayCommand(command),
    syscall: cause.syscall,
    cause,
    ...(description === undefined ? {} : { description })
  })

const errnoError = (message: string, code: string, syscall?: string): Error & { readonly syscall?: string } =>
  Object.assign(new Error(message), syscall === undefined ? { code } : { code, syscall })

const badArgument = (description: string): PlatformError.PlatformError =>
  PlatformError.badArgument({ module: "ChildProcess", method: "spawn", description })

// Node's spawner rejects these before spawning; mirroring it keeps tests of
// argument handling meaningful against the fake.
const findNulCharacter = (command: ChildProcess.StandardCommand): string | undefined => {
  if (command.command.includes("\0")) return "The command contains a NUL character"
  const index = command.args.findIndex((arg) => unwrapWord(arg).includes("\0"))
  if (index !== -1) return `Argument ${index + 1} contains a NUL character`
  for (const [name, value] of Object.entries(command.options.env ?? {})) {
    if (value !== undefined && unwrapWord(value).includes("\0")) {
      return `The environment variable ${name} contains a NUL character`
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

const realProcessEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(globalThis.process.env)) {
    if (value !== undefined) env[key] = value
  }
  return env
}

const resolveEnvironment = (
  options: ChildProcess.CommandOptions,
  hostEnv: Readonly<Record<string, string>> | undefined
): Record<string, string> => {
  // Node inherits the parent env when `env` is absent or `extendEnv` is true.
  // The fake inherits `hostEnv` in both cases and reads the real environment
  // only when explicitly asked to extend it, so records stay deterministic.
  const inherits = options.env === undefined || options.extendEnv === true
  const env: Record<string, string> = inherits
    ? { ...(hostEnv ?? (options.extendEnv === true ? realProcessEnv() : {})) }
    : {}
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[key]
    else env[key] = unwrapWord(value)
  }
  return env
}

// ---------------------------------------------------------------------------
// Pipes
// ---------------------------------------------------------------------------

interface Pipe {
  readonly write: (bytes: Uint8Array) => Effect.Effect<void>
  /** Bypasses the capacity: used for the crash report written at exit. */
  readonly writeUnsafe: (bytes: Uint8Array) => void
  readonly close: () => void
  readonly stream: Stream.Stream<Uint8Array>
}

const makePipe = Effect.fnUntraced(function*(connected: boolean, capacity: number) {
  const queue = yield* Queue.unbounded<Uint8Array, Cause.Done>()
  // Writes of one process are serialised, as Node's stream buffer does, so a
  // line split into capacity-sized pieces is never interleaved with another.
  const lock = yield* Semaphore.make(1)
  const room = Number.isFinite(capacity) ? yield* Semaphore.make(capacity) : undefined
  let closed = false
  const offer = (bytes: Uint8Array) => {
    if (connected && !closed && bytes.length > 0) Queue.offerUnsafe(queue, bytes)
  }
  const close = () => {
    if (closed) return
    closed = true
    Queue.endUnsafe(queue)
  }
  if (!connected) close()
  const write = (bytes: Uint8Array): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (closed || bytes.length === 0) return Effect.void
      if (room === undefined) return Effect.sync(() => offer(bytes))
      return lock.withPermits(1)(Effect.gen(function*() {
        for (let offset = 0; offset < bytes.length; offset += capacity) {
          const piece = bytes.subarray(offset, offset + capacity)
          yield* room.take(piece.length)
          offer(piece)
        }
      }))
    })
  const source = Stream.fromQueue(queue)
  const stream = room === undefined ? source : source.pipe(Stream.tap((chunk) => room.release(chunk.length)))
  const pipe: Pipe = { write, writeUnsafe: offer, close, stream }
  return pipe
})

const encoder = new TextEncoder()
const toBytes = (data: string | Uint8Array): Uint8Array => typeof data === "string" ? encoder.encode(data) : data

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

// Signals whose default disposition is to ignore the signal or to stop (not
// end) the process: delivering them never terminates a fake process.
const nonTerminating: ReadonlySet<ChildProcess.Signal> = new Set<ChildProcess.Signal>([
  "SIGCHLD",
  "SIGCONT",
  "SIGURG",
  "SIGWINCH",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU"
])

// ---------------------------------------------------------------------------
// The spawner
// ---------------------------------------------------------------------------

interface MutableRecord {
  readonly pid: number
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  readonly cwd: string | undefined
  readonly signals: Array<ChildProcess.Signal>
  readonly stdinLines: Array<string>
  stdinClosed: boolean
  exit: ExitInfo | undefined
}

const snapshot = (record: MutableRecord): SpawnRecord => ({
  pid: record.pid,
  command: record.command,
  args: record.args,
  env: record.env,
  cwd: record.cwd,
  signals: [...record.signals],
  stdinLines: [...record.stdinLines],
  stdinClosed: record.stdinClosed,
  exit: Option.fromNullishOr(record.exit),
  running: record.exit === undefined
})

type StdinMode = "pipe" | "closed"

interface StdinConfig {
  readonly mode: StdinMode
  readonly stream: Stream.Stream<Uint8Array, PlatformError.PlatformError> | undefined
  readonly endOnDone: boolean
}

const resolveStdin = (options: ChildProcess.CommandOptions): StdinConfig => {
  const stdin = options.stdin
  if (stdin === undefined) return { mode: "pipe", stream: undefined, endOnDone: true }
  if (typeof stdin === "string") {
    // "ignore" is /dev/null; "inherit" would read the test runner's stdin,
    // which a fake cannot share, so both read as an immediate EOF.
    return { mode: stdin === "pipe" || stdin === "overlapped" ? "pipe" : "closed", stream: undefined, endOnDone: true }
  }
  if (Stream.isStream(stdin)) return { mode: "pipe", stream: stdin, endOnDone: true }
  const inner = stdin.stream
  if (typeof inner === "string") {
    return {
      mode: inner === "pipe" || inner === "overlapped" ? "pipe" : "closed",
      stream: undefined,
      endOnDone: stdin.endOnDone ?? true
    }
  }
  return { mode: "pipe", stream: inner, endOnDone: stdin.endOnDone ?? true }
}

interface OutputConfig {
  readonly connected: boolean
  readonly sink: Sink.Sink<Uint8Array, Uint8Array, never, PlatformError.PlatformError> | undefined
}

const resolveOutput = (
  option: ChildProcess.CommandOutput | ChildProcess.StdoutConfig | ChildProcess.StderrConfig | undefined
): OutputConfig => {
  const stream = option === undefined || typeof option === "string" || Sink.isSink(option) ? option : option.stream
  if (stream === undefined) return { connected: true, sink: undefined }
  if (typeof stream === "string") return { connected: stream === "pipe" || stream === "overlapped", sink: undefined }
  return { connected: true, sink: stream }
}

/**
 * One spawner instance: its behaviours and options, the pid counter, every process it spawned (in
 * spawn order, for the recorder) and the spawn count of each command (for `spawnNumber`).
 */
interface SpawnerState {
  readonly behaviours: Behaviours
  readonly hostEnv: Readonly<Record<string, string>> | undefined
  readonly capacity: number
  nextPid: number
  readonly processes: Array<FakeState>
  readonly spawnCounts: Map<string, number>
}

/**
 * One fake process as the spawner plays it: the record assertions read, its pipes, its stdin
 * split into lines, and how it takes signals. The exit is recorded once, by {@link terminate},
 * like the kernel does; everything else reads it.
 */
interface FakeState {
  readonly command: ChildProcess.StandardCommand
  readonly record: MutableRecord
  readonly stdout: Pipe
  readonly stderr: Pipe
  /** Complete stdin lines, for the behaviour; ends at stdin EOF. */
  readonly lines: Queue.Queue<string, Cause.Done>
  readonly decoder: InstanceType<typeof TextDecoder>
  /** The stdin text after the last newline. */
  partial: string
  /**
   * Set when the host framed stdin with Content-Length (it says so in `PLUGIN_HOST_FRAMING`):
   * stdin is decoded into messages, and `write` frames what the behaviour writes the same way.
   */
  readonly contentLength: Framing.MessageDecoder | undefined
  /** Bytes in the stdin pipe, bounded by the spawner's capacity: written and not yet read. */
  stdinBuffered: number
  /** Opened each time the behaviour reads stdin (or the process exits): a full pipe's writer waits on it. */
  readonly stdinRead: Latch.Latch
  readonly capacity: number
  readonly exited: Deferred.Deferred<ExitInfo>
  /** Fails when the stream given as stdin fails (Node's `exitCode` fails with it). */
  readonly inputFailure: Deferred.Deferred<never, PlatformError.PlatformError>
  readonly ignored: Set<ChildProcess.Signal>
  /** Survives every signal, SIGKILL included. */
  unkillable: boolean
  /** The behaviour's fiber, once started. */
  fiber: Fiber.Fiber<void> | undefined
  /** Whether closing the spawn's scope kills it (`unref` clears it). */
  referenced: boolean
}

/**
 * Checks a command as Node's spawner does before spawning, and finds its behaviour: a shell with
 * arguments and NUL characters are bad arguments, an unknown executable is `NotFound`.
 */
const behaviourOf = (
  behaviours: Behaviours,
  command: ChildProcess.StandardCommand
): Effect.Effect<Behaviour, PlatformError.PlatformError> => {
  if (command.options.shell !== undefined && command.options.shell !== false && command.args.length > 0) {
    return Effect.fail(badArgument("The shell option cannot be combined with arguments; pass the whole script as the command"))
  }
  const nul = findNulCharacter(command)
  if (nul !== undefined) return Effect.fail(badArgument(nul))
  const behaviour = Object.hasOwn(behaviours, command.command) ? behaviours[command.command] : undefined
  if (behaviour !== undefined) return Effect.succeed(behaviour)
  return Effect.fail(systemError(
    command,
    "spawn",
    "NotFound",
    errnoError(`spawn ${command.command} ENOENT`, "ENOENT", `spawn ${command.command}`),
    `no behaviour registered for '${command.command}' (known: ${Object.keys(behaviours).join(", ") || "none"})`
  ))
}

/** A new process of `command`: the next pid, its pipes, stdin at EOF already when it is closed. */
const makeFakeState = Effect.fnUntraced(function*(
  spawner: SpawnerState,
  command: ChildProcess.StandardCommand,
  config: { readonly stdin: StdinConfig; readonly stdout: OutputConfig; readonly stderr: OutputConfig }
) {
  const record: MutableRecord = {
    pid: spawner.nextPid++,
    command: command.command,
    args: command.args.map(unwrapWord),
    env: resolveEnvironment(command.options, spawner.hostEnv),
    cwd: command.options.cwd,
    signals: [],
    stdinLines: [],
    stdinClosed: false,
    exit: undefined
  }
  const proc: FakeState = {
    command,
    record,
    stdout: yield* makePipe(config.stdout.connected, spawner.capacity),
    stderr: yield* makePipe(config.stderr.connected, spawner.capacity),
    lines: yield* Queue.unbounded<string, Cause.Done>(),
    decoder: new TextDecoder(),
    partial: "",
    contentLength: record.env[Protocol.framingVariable] === "content-length" ? Framing.makeDecoder("content-length") : undefined,
    stdinBuffered: 0,
    stdinRead: Latch.makeUnsafe(true),
    capacity: spawner.capacity,
    exited: yield* Deferred.make<ExitInfo>(),
    inputFailure: yield* Deferred.make<never, PlatformError.PlatformError>(),
    ignored: new Set(),
    unkillable: false,
    fiber: undefined,
    referenced: true
  }
  if (config.stdin.mode === "closed") closeStdin(proc)
  return proc
})

// --- stdin: bytes -> lines, tolerant of chunk and UTF-8 boundaries

const pushLine = (proc: FakeState, line: string): void => {
  const clean = line.endsWith("\r") ? line.slice(0, -1) : line
  proc.record.stdinLines.push(clean)
  Queue.offerUnsafe(proc.lines, clean)
}

/** A Content-Length message reaches the behaviour as a line; a malformed one is dropped. */
const pushMessage = (proc: FakeState) => (frame: Framing.MessageFrame): void => {
  if (typeof frame === "string") pushLine(proc, frame)
}

const feedStdin = (proc: FakeState, chunk: Uint8Array): void => {
  if (proc.contentLength !== undefined) return proc.contentLength.push(chunk, pushMessage(proc))
  const text = proc.partial + proc.decoder.decode(chunk, { stream: true })
  const parts = text.split("\n")
  proc.partial = parts.pop() ?? ""
  for (const line of parts) pushLine(proc, line)
}

/** EOF: a trailing partial line still reaches a running process, then `lines` ends. */
const closeStdin = (proc: FakeState): void => {
  if (proc.record.stdinClosed) return
  proc.record.stdinClosed = true
  proc.contentLength?.end(pushMessage(proc))
  const rest = proc.partial + proc.decoder.decode()
  proc.partial = ""
  if (rest.length > 0 && proc.record.exit === undefined) pushLine(proc, rest)
  Queue.endUnsafe(proc.lines)
}

// --- termination: record the exit at once, like the kernel does, then tear
// down the behaviour; its fibers can no longer write anything.

const terminate = (proc: FakeState, info: ExitInfo, interruptBehaviour: boolean): void => {
  if (proc.record.exit !== undefined) return
  proc.record.exit = info
  proc.stdout.close()
  proc.stderr.close()
  proc.stdinRead.openUnsafe()
  Deferred.doneUnsafe(proc.exited, Exit.succeed(info))
  if (interruptBehaviour) proc.fiber?.interruptUnsafe()
}

/** Delivers a signal: recorded while running; it ends the process unless ignored or harmless. */
const deliver = (proc: FakeState, signal: ChildProcess.Signal): void => {
  if (proc.record.exit !== undefined) return
  proc.record.signals.push(signal)
  if (nonTerminating.has(signal)) return
  if (proc.unkillable || (signal !== "SIGKILL" && proc.ignored.has(signal))) return
  terminate(proc, { code: null, signal }, true)
}

/** The API the behaviour plays the process with. */
const fakeProcessOf = (proc: FakeState, spawnNumber: number): FakeProcess => ({
  pid: proc.record.pid,
  command: proc.record.command,
  args: proc.record.args,
  env: proc.record.env,
  cwd: proc.record.cwd,
  spawnNumber,
  lines: linesOf(proc),
  write: (line) =>
    proc.stdout.write(proc.contentLength === undefined ? encoder.encode(line + "\n") : Framing.encode("content-length", [line])),
  writeRaw: (data) => proc.stdout.write(toBytes(data)),
  writeStderr: (data) => proc.stderr.write(toBytes(data)),
  ignoreSignal: (signal) =>
    Effect.sync(() => {
      if (signal !== "SIGKILL" && signal !== "SIGSTOP") proc.ignored.add(signal)
    }),
  ignoreSigterm: Effect.sync(() => {
    proc.ignored.add("SIGTERM")
  }),
  ignoreEverySignal: Effect.sync(() => {
    proc.unkillable = true
  }),
  exit: (code) =>
    Effect.suspend(() => {
      terminate(proc, { code, signal: null }, true)
      return Effect.never
    })
})

/** Runs the behaviour as the body of the process; its outcome is the exit. */
const runBehaviour = (proc: FakeState, behaviour: Behaviour, fake: FakeProcess): Effect.Effect<void> =>
  Effect.suspend(() => behaviour(fake)).pipe(
    Effect.exit,
    Effect.flatMap((exit) =>
      Effect.sync(() => {
        if (Exit.isSuccess(exit)) return terminate(proc, { code: exit.value, signal: null }, false)
        if (proc.record.exit !== undefined) return
        // An uncaught failure: Node prints the error to stderr and exits 1.
        if (!Cause.hasInterruptsOnly(exit.cause)) proc.stderr.writeUnsafe(encoder.encode(Cause.pretty(exit.cause) + "\n"))
        terminate(proc, { code: 1, signal: null }, false)
      })
    )
  )

/** `handle.kill`: the signal, then SIGKILL after `forceKillAfter` (on the Clock); waits for the exit. */
const killFake = (
  proc: FakeState,
  killOptions?: ChildProcess.KillOptions
): Effect.Effect<void, PlatformError.PlatformError> =>
  Effect.gen(function*() {
    if (proc.record.exit !== undefined) {
      // Node: signalling an exited child fails (`child.kill` returns false).
      return yield* Effect.fail(
        systemError(proc.command, "kill", "Unknown", new Error("Failed to kill child process"))
      )
    }
    deliver(proc, killOptions?.killSignal ?? "SIGTERM")
    if (killOptions?.forceKillAfter !== undefined) {
      // The one intentional difference from Node: the grace period runs
      // on the Effect Clock, so TestClock drives it.
      const done = yield* Effect.timeoutOption(Deferred.await(proc.exited), killOptions.forceKillAfter)
      if (Option.isNone(done)) deliver(proc, "SIGKILL")
    }
    yield* Deferred.await(proc.exited)
  })

/**
 * Starts the behaviour with the spawn's scope: closing it kills a running, referenced process
 * with the command's kill options, as Node's spawner does.
 */
const startBehaviour = (
  spawner: SpawnerState,
  proc: FakeState,
  run: Effect.Effect<void>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      spawner.processes.push(proc)
      const started = yield* Effect.forkDetach(run)
      proc.fiber = started
      if (proc.record.exit !== undefined) started.interruptUnsafe()
    }),
    () =>
      proc.record.exit !== undefined || !proc.referenced
        ? Effect.void
        : Effect.ignore(killFake(proc, proc.command.options))
  )

/** What Node's stdin writable reports once the child is gone or stdin was ended. */
const stdinWriteError = (proc: FakeState): PlatformError.PlatformError | undefined => {
  if (proc.record.exit !== undefined) {
    // What Node reports when the child has gone away under the pipe.
    return systemError(proc.command, "fromWritable(stdin)", "Unknown", errnoError("Premature close", "ERR_STREAM_PREMATURE_CLOSE"))
  }
  if (proc.record.stdinClosed) {
    return systemError(proc.command, "fromWritable(stdin)", "Unknown", errnoError("write after end", "ERR_STREAM_WRITE_AFTER_END"))
  }
  return undefined
}

/** The handle's stdin: bytes fed to the line splitter while the process runs and stdin is open. */
/**
 * Waits until the stdin pipe has room for `size` bytes, as a write into a full pipe blocks until
 * the reader takes some: an empty pipe takes a chunk of any size, and an exited process frees it.
 */
const stdinRoom = (proc: FakeState, size: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (proc.stdinBuffered === 0 || proc.stdinBuffered + size <= proc.capacity || proc.record.exit !== undefined) {
      return Effect.void
    }
    proc.stdinRead.closeUnsafe()
    return Effect.andThen(proc.stdinRead.await, stdinRoom(proc, size))
  })

/** Feeds one chunk to a bounded stdin pipe once it has room for it. */
const writeStdin = (proc: FakeState, chunk: Uint8Array): Effect.Effect<void, PlatformError.PlatformError> =>
  Effect.andThen(
    stdinRoom(proc, chunk.length),
    Effect.suspend(() => {
      const error = stdinWriteError(proc)
      if (error !== undefined) return Effect.fail(error)
      proc.stdinBuffered += chunk.length
      feedStdin(proc, chunk)
      return Effect.void
    })
  )

/** stdin's lines for the behaviour; with a bounded pipe, each line read frees its bytes. */
const linesOf = (proc: FakeState): Stream.Stream<string> => {
  const lines = Stream.fromQueue(proc.lines)
  if (!Number.isFinite(proc.capacity)) return lines
  return Stream.tap(lines, (line) =>
    Effect.sync(() => {
      proc.stdinBuffered = Math.max(0, proc.stdinBuffered - encoder.encode(line).length - 1)
      proc.stdinRead.openUnsafe()
    }))
}

const stdinSink = (proc: FakeState, config: StdinConfig): Sink.Sink<void, Uint8Array, never, PlatformError.PlatformError> =>
  config.mode === "closed"
    ? Sink.drain
    : Sink.forEachArray((chunks: ReadonlyArray<Uint8Array>) =>
      Effect.suspend(() => {
        const error = stdinWriteError(proc)
        if (error !== undefined) return Effect.fail(error)
        if (Number.isFinite(proc.capacity)) return Effect.forEach(chunks, (chunk) => writeStdin(proc, chunk), { discard: true })
        for (const chunk of chunks) feedStdin(proc, chunk)
        return Effect.void
      })
    ).pipe(
      // Node ends stdin on completion and destroys it on failure or
      // interruption; either way the child reads EOF.
      Sink.onExit(() => Effect.sync(() => config.endOnDone ? closeStdin(proc) : undefined))
    )

const outputOf = (pipe: Pipe, config: OutputConfig): Stream.Stream<Uint8Array, PlatformError.PlatformError> =>
  config.sink === undefined ? pipe.stream : Stream.transduce(pipe.stream, config.sink)

/** The exit code, or Node's failures: the stdin stream's, or a signalled exit's. */
const exitCodeOf = (proc: FakeState): Effect.Effect<ChildProcessSpawner.ExitCode, PlatformError.PlatformError> =>
  Effect.raceFirst(Deferred.await(proc.exited), Deferred.await(proc.inputFailure)).pipe(
    Effect.flatMap((info): Effect.Effect<ChildProcessSpawner.ExitCode, PlatformError.PlatformError> => {
      if (Deferred.isDoneUnsafe(proc.inputFailure)) return Deferred.await(proc.inputFailure)
      if (info.code !== null) return Effect.succeed(ChildProcessSpawner.ExitCode(info.code))
      // Node's exact text: host code parses the signal name out of it.
      const error = new Error(`Process interrupted due to receipt of signal: '${info.signal}'`)
      return Effect.fail(systemError(proc.command, "exitCode", "Unknown", error))
    })
  )

const handleOf = (proc: FakeState, streams: {
  readonly stdin: Sink.Sink<void, Uint8Array, never, PlatformError.PlatformError>
  readonly stdout: Stream.Stream<Uint8Array, PlatformError.PlatformError>
  readonly stderr: Stream.Stream<Uint8Array, PlatformError.PlatformError>
}): ChildProcessSpawner.ChildProcessHandle => {
  const reref = Effect.sync(() => {
    proc.referenced = true
  })
  return ChildProcessSpawner.makeHandle({
    pid: ChildProcessSpawner.ProcessId(proc.record.pid),
    exitCode: exitCodeOf(proc),
    isRunning: Effect.map(Deferred.isDone(proc.exited), (done) => !done),
    kill: (killOptions) => killFake(proc, killOptions),
    stdin: streams.stdin,
    stdout: streams.stdout,
    stderr: streams.stderr,
    all: Stream.merge(streams.stdout, streams.stderr),
    getInputFd: () => Sink.drain,
    getOutputFd: () => Stream.empty,
    unref: Effect.sync(() => {
      proc.referenced = false
      return reref
    })
  })
}

/** Spawns one command: checked as Node would, then run as a fake process in the current scope. */
const spawnStandard = Effect.fnUntraced(function*(spawner: SpawnerState, command: ChildProcess.StandardCommand) {
  const behaviour = yield* behaviourOf(spawner.behaviours, command)
  const config = {
    stdin: resolveStdin(command.options),
    stdout: resolveOutput(command.options.stdout),
    stderr: resolveOutput(command.options.stderr)
  }
  const spawnNumber = (spawner.spawnCounts.get(command.command) ?? 0) + 1
  spawner.spawnCounts.set(command.command, spawnNumber)
  const proc = yield* makeFakeState(spawner, command, config)
  yield* startBehaviour(spawner, proc, runBehaviour(proc, behaviour, fakeProcessOf(proc, spawnNumber)))
  const stdin = stdinSink(proc, config.stdin)
  const input = config.stdin.stream
  if (input !== undefined) {
    yield* Effect.forkScoped(
      Stream.run(Stream.tapError(input, (error) => Deferred.fail(proc.inputFailure, error)), stdin)
    )
  }
  return handleOf(proc, { stdin, stdout: outputOf(proc.stdout, config.stdout), stderr: outputOf(proc.stderr, config.stderr) })
})

/** The stages of a pipeline, left to right, and the options of the pipe after each but the last. */
const flattenPipeline = (command: ChildProcess.Command): {
  readonly stages: ReadonlyArray<ChildProcess.StandardCommand>
  readonly pipes: ReadonlyArray<ChildProcess.PipeOptions>
} => {
  if (command._tag === "StandardCommand") return { stages: [command], pipes: [] }
  const left = flattenPipeline(command.left)
  const right = flattenPipeline(command.right)
  return { stages: [...left.stages, ...right.stages], pipes: [...left.pipes, command.options, ...right.pipes] }
}

/**
 * One handle over the spawned stages of a pipeline: stdin of the first, output and exit of the
 * last; kill and unref reach every stage, last first.
 */
const pipelineHandle = (
  handles: ReadonlyArray<ChildProcessSpawner.ChildProcessHandle>,
  first: ChildProcessSpawner.ChildProcessHandle,
  last: ChildProcessSpawner.ChildProcessHandle
): ChildProcessSpawner.ChildProcessHandle =>
  ChildProcessSpawner.makeHandle({
    pid: last.pid,
    exitCode: last.exitCode,
    isRunning: last.isRunning,
    kill: (killOptions) =>
      Effect.forEach([...handles].reverse(), (handle) => Effect.ignore(handle.kill(killOptions)), { discard: true }),
    stdin: first.stdin,
    stdout: last.stdout,
    stderr: last.stderr,
    all: last.all,
    getInputFd: last.getInputFd,
    getOutputFd: last.getOutputFd,
    unref: Effect.gen(function*() {
      const rerefs: Array<ChildProcessSpawner.Reref> = []
      for (const handle of handles) rerefs.push(yield* handle.unref)
      return Effect.forEach(rerefs.reverse(), (reref) => reref, { discard: true })
    })
  })

// Pipelines mirror Node's: each stage's chosen output feeds the next
// stage's stdin. Piping into additional fds is not modelled.
const spawnPiped = Effect.fnUntraced(function*(spawner: SpawnerState, command: ChildProcess.PipedCommand) {
  const { stages, pipes } = flattenPipeline(command)
  const handles: Array<ChildProcessSpawner.ChildProcessHandle> = []
  for (const [index, stage] of stages.entries()) {
    const previous = handles[handles.length - 1]
    if (previous === undefined) {
      handles.push(yield* spawnStandard(spawner, stage))
      continue
    }
    const pipe = pipes[index - 1] ?? {}
    if (pipe.to !== undefined && pipe.to !== "stdin") {
      return yield* Effect.fail(badArgument(`InMemorySpawner does not model piping into ${pipe.to}`))
    }
    const from = pipe.from ?? "stdout"
    const source = from === "stderr" ? previous.stderr : from === "all" ? previous.all : previous.stdout
    handles.push(yield* spawnStandard(spawner, ChildProcess.make(stage.command, stage.args, { ...stage.options, stdin: source })))
  }
  const first = handles[0]
  const last = handles[handles.length - 1]
  if (first === undefined || last === undefined) {
    return yield* Effect.fail(badArgument("empty pipeline"))
  }
  return pipelineHandle(handles, first, last)
})

const recorderOf = (spawner: SpawnerState): Recorder => ({
  spawns: Effect.sync(() => spawner.processes.map((proc) => snapshot(proc.record))),
  signal: (pid, signal = "SIGTERM") =>
    Effect.sync(() => {
      const target = spawner.processes.find((proc) => proc.record.pid === pid)
      if (target === undefined || target.record.exit !== undefined) return false
      deliver(target, signal)
      return true
    })
})

/**
 * Creates a spawner instance whose processes run the given behaviours. The
 * returned `Instance` holds the `layer` to provide and the `Recorder` to
 * inspect spawns. Pids start at `options.firstPid` (default 10 000) and
 * increase by one per spawn. The behaviour fibers inherit the spawning fiber's
 * services, so under `it.effect` they sleep on the `TestClock`. As with Node,
 * closing the spawn's scope waits for a running process to die: a plugin that
 * ignores the kill signal needs `forceKillAfter` and, under `TestClock`, a
 * `TestClock.adjust` past it (fork the scope close first); an `unref`-ed
 * process is left running when its scope closes.
 *
 * @since 0.1.0
 */
export const make = (behaviours: Behaviours, options: Options = {}): Effect.Effect<Instance> =>
  Effect.sync(() => {
    const capacity = options.pipeCapacity ?? Number.POSITIVE_INFINITY
    if (!(capacity > 0)) throw new RangeError(`InMemorySpawner: pipeCapacity must be positive, got ${capacity}`)
    const state: SpawnerState = {
      behaviours,
      hostEnv: options.hostEnv,
      capacity,
      nextPid: options.firstPid ?? 10_000,
      processes: [],
      spawnCounts: new Map()
    }
    const spawner = ChildProcessSpawner.make((command) =>
      command._tag === "StandardCommand" ? spawnStandard(state, command) : spawnPiped(state, command)
    )
    // Its pids are not processes: no parent-death signal, no registry entry (see spawnRegistry).
    SpawnRegistry.markSimulated(spawner)
    const recorder = recorderOf(state)
    const instance: Instance = {
      ...recorder,
      spawner,
      layer: Layer.merge(
        Layer.succeed(ChildProcessSpawner.ChildProcessSpawner, spawner),
        Layer.succeed(InMemorySpawner, recorder)
      )
    }
    return instance
  })

/**
 * A layer providing a fresh in-memory `ChildProcessSpawner` running the given
 * behaviours, plus the `InMemorySpawner` recorder service to read its spawn
 * records. Each build of the layer gets its own pids and records.
 *
 * @since 0.1.0
 */
export const layer = (
  behaviours: Behaviours,
  options?: Options
): Layer.Layer<ChildProcessSpawner.ChildProcessSpawner | InMemorySpawner> =>
  Layer.unwrap(Effect.map(make(behaviours, options), (instance) => instance.layer))

/**
 * Reads the spawn records of the spawner provided by `layer`.
 *
 * @since 0.1.0
 */
export const spawns: Effect.Effect<ReadonlyArray<SpawnRecord>, never, InMemorySpawner> = Effect.flatMap(
  InMemorySpawner,
  (recorder) => recorder.spawns
)

// ---------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------

/**
 * Options shared by `echo` and the behaviours built on it. `ignoreSigterm`
 * makes the plugin survive SIGTERM (only SIGKILL ends it); `supportedMethods`
 * and `initializeResult` shape the reply to `initialize` (by default
 * `{ ok: true, supportedMethods: [...] }` listing the special methods).
 *
 * @since 0.1.0
 */
export interface EchoOptions {
  readonly ignoreSigterm?: boolean | undefined
  readonly supportedMethods?: ReadonlyArray<string> | undefined
  readonly initializeResult?: unknown
}

/**
 * The methods `echo` understands specially; any other method echoes its
 * params back as the result.
 *
 * @since 0.1.0
 */
export const echoMethods: ReadonlyArray<string> = [
  "initialize",
  "echo",
  "sleep",
  "fail",
  "crash",
  "notify",
  "callHost",
  "shutdown"
]

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const parseJson = (line: string): unknown => {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

const numberOr = (u: unknown, fallback: number): number => typeof u === "number" && Number.isFinite(u) ? u : fallback

interface Request {
  readonly id: unknown
  readonly method: string
  readonly params: unknown
}

type ReplyBody = { readonly result: unknown } | { readonly error: unknown }

// Extension points of the echo loop, used by the behaviours derived from it.
interface EchoHooks {
  /** Runs in the reading loop, before request number `n` (1-based) is dispatched. */
  readonly onRequest?: (proc: FakeProcess, n: number) => Effect.Effect<void>
  /** Runs in the request's own fiber just before its reply is written. */
  readonly beforeReply?: (proc: FakeProcess) => Effect.Effect<void>
  /** Runs after reply number `n` (1-based, in write order) was written. */
  readonly afterReply?: (proc: FakeProcess, n: number) => Effect.Effect<void>
  readonly replyId?: (id: unknown) => unknown
}

/**
 * One run of the echo loop: the replies in flight (each request in its own fiber), the calls to
 * the host waiting for an answer, and the counters the hooks see.
 */
interface EchoSession {
  readonly proc: FakeProcess
  readonly options: EchoOptions
  readonly hooks: EchoHooks
  readonly inflight: FiberSet.FiberSet<void, never>
  readonly hostCalls: Map<string, Deferred.Deferred<Readonly<Record<string, unknown>>>>
  /** Requests read so far. */
  received: number
  /** Replies written so far. */
  replied: number
  /** Calls made to the host so far (their ids are `w1`, `w2`, …). */
  hostSequence: number
}

const send = (session: EchoSession, message: Readonly<Record<string, unknown>>): Effect.Effect<void> =>
  session.proc.write(JSON.stringify(message))

const reply = (session: EchoSession, id: unknown, body: ReplyBody): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { hooks, proc } = session
    if (hooks.beforeReply !== undefined) yield* hooks.beforeReply(proc)
    yield* send(session, { jsonrpc: "2.0", id: hooks.replyId === undefined ? id : hooks.replyId(id), ...body })
    const n = ++session.replied
    if (hooks.afterReply !== undefined) yield* hooks.afterReply(proc, n)
  })

/** `callHost`: a request to the host, and its result (or `{hostError}`) as the reply. */
const callHost = (session: EchoSession, request: Request, params: Readonly<Record<string, unknown>>): Effect.Effect<void> =>
  Effect.gen(function*() {
    const id = `w${++session.hostSequence}`
    const response = yield* Deferred.make<Readonly<Record<string, unknown>>>()
    session.hostCalls.set(id, response)
    yield* send(session, {
      jsonrpc: "2.0",
      id,
      method: typeof params.method === "string" ? params.method : "host",
      ...(params.params === undefined ? {} : { params: params.params })
    })
    const answer = yield* Deferred.await(response)
    session.hostCalls.delete(id)
    const result = "error" in answer ? { hostError: answer.error } : answer.result ?? null
    yield* reply(session, request.id, { result })
  })

/** Serves one request (see {@link echo} for the methods). */
const serveRequest = (session: EchoSession, request: Request): Effect.Effect<void> => {
  const { options, proc } = session
  const params = isRecord(request.params) ? request.params : {}
  switch (request.method) {
    case "sleep":
      return Effect.sleep(Duration.millis(numberOr(params.ms, 0))).pipe(
        Effect.andThen(reply(session, request.id, { result: "value" in params ? params.value : request.params ?? null }))
      )
    case "fail":
      return reply(session, request.id, { error: params.error ?? null })
    case "crash":
      return proc.exit(numberOr(params.code, 1))
    case "notify":
      return send(session, {
        jsonrpc: "2.0",
        method: typeof params.method === "string" ? params.method : "notification",
        ...(params.params === undefined ? {} : { params: params.params })
      }).pipe(Effect.andThen(reply(session, request.id, { result: null })))
    case "callHost":
      return callHost(session, request, params)
    case "shutdown":
      return reply(session, request.id, { result: null }).pipe(Effect.andThen(proc.exit(0)))
    case "initialize":
      return reply(session, request.id, {
        result: options.initializeResult !== undefined
          ? options.initializeResult
          : { ok: true, supportedMethods: options.supportedMethods ?? echoMethods }
      })
    default:
      return reply(session, request.id, { result: request.params ?? null })
  }
}

/**
 * Reads one stdin line: a request is served in its own fiber, a response answers a call to the
 * host, a notification is ignored, and a line that is not a JSON object is reported on stderr.
 */
const readLine = (session: EchoSession, line: string): Effect.Effect<void> => {
  const { hooks, proc } = session
  const message = parseJson(line)
  if (!isRecord(message)) {
    return proc.writeStderr(`echo: ignoring a line that is not a JSON object: ${line.slice(0, 80)}\n`)
  }
  if (typeof message.method === "string") {
    // Notifications from the host need no answer.
    if (!("id" in message)) return Effect.void
    const n = ++session.received
    const request: Request = { id: message.id, method: message.method, params: message.params }
    return (hooks.onRequest === undefined ? Effect.void : hooks.onRequest(proc, n)).pipe(
      Effect.andThen(FiberSet.run(session.inflight, serveRequest(session, request))),
      Effect.asVoid
    )
  }
  if (typeof message.id === "string") {
    const pending = session.hostCalls.get(message.id)
    if (pending !== undefined) return Effect.asVoid(Deferred.succeed(pending, message))
  }
  return Effect.void
}

const echoWith = (options: EchoOptions, hooks: EchoHooks): Behaviour => (proc) =>
  Effect.scoped(Effect.gen(function*() {
    if (options.ignoreSigterm === true) yield* proc.ignoreSigterm
    const session: EchoSession = {
      proc,
      options,
      hooks,
      inflight: yield* FiberSet.make<void, never>(),
      hostCalls: new Map(),
      received: 0,
      replied: 0,
      hostSequence: 0
    }
    yield* Stream.runForEach(proc.lines, (line) => readLine(session, line))

    // Stdin EOF: the host can no longer answer our own calls, so fail them
    // rather than hang, then let the in-flight replies finish before exiting.
    for (const pending of session.hostCalls.values()) {
      yield* Deferred.succeed(pending, { error: { code: -32000, message: "stdin closed before the host answered" } })
    }
    yield* FiberSet.awaitEmpty(session.inflight)
    return 0
  }))

/**
 * A JSON-RPC 2.0 plugin. Every request `{"jsonrpc":"2.0","id","method","params"}`
 * is served in its own fiber, so slow replies come back out of order, and
 * answered with `{"jsonrpc":"2.0","id","result":params}`, except for:
 * `sleep {ms, value?}` (replies `value`, or the params, after `Effect.sleep(ms)`),
 * `fail {error}` (replies `{"error": error}` whatever its shape),
 * `crash {code}` (exits with `code` at once, no reply),
 * `notify {method, params}` (sends that notification, then replies `null`),
 * `callHost {method, params}` (sends a request with id `"w1"`, `"w2"`, … to the
 * host and replies with its result, or `{hostError: error}` for an error
 * response), `shutdown` (replies `null`, then exits 0) and `initialize`
 * (replies `{ok: true, supportedMethods}` unless overridden). Notifications
 * from the host and unparseable lines are ignored. On stdin EOF it waits for
 * in-flight replies and exits 0.
 *
 * @since 0.1.0
 */
export const echo = (options: EchoOptions = {}): Behaviour => echoWith(options, {})

/**
 * A plugin that fails immediately: writes `stderr` (if any) and exits with
 * `code` without reading stdin, like a binary missing a shared library.
 *
 * @since 0.1.0
 */
export const crashOnStart = (options: { readonly code: number; readonly stderr?: string | undefined }): Behaviour =>
(proc) => (options.stderr === undefined ? Effect.void : proc.writeStderr(options.stderr)).pipe(Effect.as(options.code))

/**
 * An `echo` that dies in the middle of a call: it serves `afterCalls` requests,
 * then on receiving request number `afterCalls + 1` writes `stderr` (if any)
 * and exits with `code` without replying. Every request counts, including an
 * `initialize` handshake.
 *
 * @since 0.1.0
 */
export const crashMidCall = (
  options: { readonly afterCalls: number; readonly code: number; readonly stderr?: string | undefined } & EchoOptions
): Behaviour =>
  echoWith(options, {
    onRequest: (proc, n) =>
      n === options.afterCalls + 1
        ? (options.stderr === undefined ? Effect.void : proc.writeStderr(options.stderr)).pipe(
          Effect.andThen(proc.exit(options.code))
        )
        : Effect.void
  })

/**
 * A hung plugin: reads and records every line, never answers anything, and
 * exits 0 on stdin EOF.
 *
 * @since 0.1.0
 */
export const neverReply = (): Behaviour => (proc) => Stream.runDrain(proc.lines).pipe(Effect.as(0))

/**
 * Wraps a behaviour so that SIGTERM is ignored (only SIGKILL ends it) and stdin
 * EOF goes unnoticed (its `lines` never end), the worst case for a host's stop
 * sequence.
 *
 * @since 0.1.0
 */
export const ignoreSigterm = (behaviour: Behaviour): Behaviour => (proc) =>
  proc.ignoreSigterm.pipe(
    Effect.andThen(behaviour({ ...proc, lines: Stream.concat(proc.lines, Stream.never) }))
  )

/**
 * An `echo` (configured by `then`) that writes the given garbage lines on
 * stdout before each of its replies, e.g. `"not json"`, `"[1,2]"` or
 * `"{\"jsonrpc\":\"2.0\"}"`, to check that a host skips bad lines and still
 * correlates the valid replies.
 *
 * @since 0.1.0
 */
export const garbage = (lines: ReadonlyArray<string>, then: EchoOptions = {}): Behaviour =>
  echoWith(then, {
    beforeReply: (proc) => Effect.forEach(lines, (line) => proc.write(line), { discard: true })
  })

const chunkBytes = 65_536

const writeRepeated = (
  write: (data: Uint8Array) => Effect.Effect<void>,
  block: Uint8Array,
  bytes: number
): Effect.Effect<void> =>
  Effect.gen(function*() {
    // One shared block written repeatedly keeps a multi-megabyte line cheap.
    for (let remaining = bytes; remaining > 0; remaining -= block.length) {
      yield* write(remaining >= block.length ? block : block.subarray(0, remaining))
    }
  })

/**
 * An `echo` that, on its first request, first writes one stdout line of
 * `bytes` bytes (`x` repeated, then a single `"\n"`), to exercise a host's
 * maximum line length.
 *
 * @since 0.1.0
 */
export const giantLine = (bytes: number, options: EchoOptions = {}): Behaviour =>
  echoWith(options, {
    onRequest: (proc, n) =>
      n === 1
        ? writeRepeated(proc.writeRaw, new Uint8Array(Math.max(1, Math.min(bytes, chunkBytes))).fill(0x78), bytes).pipe(
          Effect.andThen(proc.writeRaw("\n"))
        )
        : Effect.void
  })

/**
 * An `echo` that first writes `bytes` bytes of stderr (100-byte lines), to
 * check that a host drains stderr; with a bounded `pipeCapacity` it blocks,
 * like a real plugin, until the host reads.
 *
 * @since 0.1.0
 */
export const stderrFlood = (bytes: number, options: EchoOptions = {}): Behaviour => (proc) =>
  writeRepeated(proc.writeStderr, encoder.encode(`stderr flood ${"x".repeat(86)}\n`.repeat(655)), bytes).pipe(
    Effect.andThen(echo(options)(proc))
  )

/**
 * An `echo` whose every reply is delayed by `delay` on the Effect Clock.
 *
 * @since 0.1.0
 */
export const slowReply = (delay: Duration.Input, options: EchoOptions = {}): Behaviour =>
  echoWith(options, { beforeReply: () => Effect.sleep(delay) })

/**
 * An `echo` that exits with `code` (default 0) right after writing its `n`-th
 * reply, like a plugin with a request budget.
 *
 * @since 0.1.0
 */
export const exitAfter = (n: number, code = 0, options: EchoOptions = {}): Behaviour =>
  echoWith(options, { afterReply: (proc, replied) => replied >= n ? proc.exit(code) : Effect.void })

/**
 * An `echo` that replies to every request with a wrong id: numeric ids get
 * `+ 1000`, other ids get the suffix `"+1000"`, to test how a strictly serial
 * host handles an id mismatch.
 *
 * @since 0.1.0
 */
export const wrongId = (options: EchoOptions = {}): Behaviour =>
  echoWith(options, { replyId: (id) => typeof id === "number" ? id + 1000 : `${String(id)}+1000` })

/**
 * Chooses the behaviour by spawn number of the command: the n-th spawn runs the
 * n-th behaviour and later spawns repeat the last one, e.g.
 * `sequence(crashOnStart({ code: 1 }), echo())` fails once, then works.
 *
 * @since 0.1.0
 */
export const sequence = (first: Behaviour, ...rest: ReadonlyArray<Behaviour>): Behaviour => (proc) => {
  const all = [first, ...rest]
  const chosen = all[Math.min(proc.spawnNumber, all.length) - 1] ?? first
  return chosen(proc)
}
