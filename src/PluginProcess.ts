/**
 * One plugin process, owned by a `Scope`: spawned without a shell, with a restricted
 * environment, its stderr always drained, its stdin fed from a queue whose size it reports
 * (`queuedInputBytes`, so the connection above can cap what a plugin that stops reading costs),
 * and a stop sequence that always ends.
 *
 * The environment is exactly the allow-listed variables that exist in the host environment
 * plus explicit extra variables — nothing else leaks. Before every spawn the names are checked
 * (they must look like variable names; loader and interpreter-injection variables such as
 * `NODE_OPTIONS` or `LD_PRELOAD` need the `unsafeEnvVars` mark), and when the plugin gets no
 * `PATH`, a script's `#!/usr/bin/env X` interpreter is resolved on the host's `PATH` and run
 * explicitly (see `internal/pluginEnvironment.ts`); a breach fails the spawn with a `Spawn`
 * reason naming the variable or the interpreter. stderr is read for the whole life of the
 * process (a plugin that writes megabytes to stderr can never block on a full pipe): each line
 * is logged with the plugin's name and kept in a bounded excerpt for error messages and health.
 *
 * Stopping (explicitly with `stop`, or by closing the Scope) runs, each step bounded:
 * optional graceful hook (for example a `shutdown` request, up to `drainTimeout`) → end stdin →
 * SIGTERM to the process group → `shutdownGrace` → SIGKILL to the group → wait for exit → what
 * is left of the plugin's whole tree, `setsid` descendants included, is ended (a `/proc` walk
 * begun before the first signal, and a cgroup where the host may create one: see
 * `internal/processTree.ts`). The grace periods use Effect's Clock, so `TestClock` drives them
 * against the in-memory spawner. The exit is observed as data ({@link ProcessExit}): code or
 * signal, and whether the host asked for it.
 *
 * A plugin does not outlive a host that is killed: where util-linux `setpriv` exists, a plugin is
 * started through it with a parent-death signal (SIGKILL when the host dies), and each spawn is
 * recorded in the host's registry until its Scope closes, so that the next host reaps what is left
 * (see `Leftovers`).
 *
 * Two launchers make the same {@link PluginProcess}: the default goes through `effect/process`
 * (any `ChildProcessSpawner`, including the in-memory one of `effect-plugin-host/testing`);
 * {@link layerNode} selects one on `node:child_process` directly, for hosts that run many
 * plugins or many calls: its stdio is read and written in Node's own callbacks instead of
 * through three Effect streams per process, which measured about half the memory per running
 * plugin and less CPU per call (see `bench/README.md`).
 *
 * @since 0.1.0
 */
import { spawn, type ChildProcess as NodeChildProcess } from "node:child_process"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as PlatformError from "effect/PlatformError"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcess from "effect/process/ChildProcess"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Framing from "./Framing.ts"
import * as LineBatcher from "./internal/lineBatcher.ts"
import * as PluginClientError from "./PluginClientError.ts"
import { formatDuration } from "./internal/formatDuration.ts"
import * as Cgroup from "./internal/cgroup.ts"
import { withParentDeathSignal } from "./internal/parentDeath.ts"
import * as PluginEnvironment from "./internal/pluginEnvironment.ts"
import { signalGroup, terminateGroup } from "./internal/processGroup.ts"
import * as ProcStat from "./internal/procStat.ts"
import * as ProcessTree from "./internal/processTree.ts"
import * as SpawnRegistry from "./internal/spawnRegistry.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * How a process ended: `code` for a normal exit, `signal` when a signal killed it, and
 * `requested` when the host had started stopping it.
 *
 * @category models
 */
export interface ProcessExit {
  readonly code: number | null
  readonly signal: string | null
  readonly requested: boolean
}

/**
 * How the connection to a process ended: it exited, or its stdin broke while it kept running.
 *
 * @category models
 */
export type ProcessEnd =
  | { readonly _tag: "Exited"; readonly exit: ProcessExit }
  | { readonly _tag: "InputFailed"; readonly detail: string }

/**
 * What to run and how: the plugin's name, and what it is started from (executable, arguments,
 * working folder, environment; the fields of `LaunchInput`).
 *
 * @category models
 */
export interface Spec extends PluginEnvironment.LaunchInput {
  /** The plugin's name, used in logs and errors. */
  readonly name: string
}

/**
 * Timing and size knobs of one process.
 *
 * @category models
 */
export interface Options {
  /** Time between SIGTERM and SIGKILL. Default 10 s. */
  readonly shutdownGrace?: Duration.Input | undefined
  /** Bound on the graceful hook of `stop` (for example a `shutdown` request). Default 10 s. */
  readonly drainTimeout?: Duration.Input | undefined
  /** Bound on waiting for exit after SIGKILL. Default 2 s. */
  readonly killTimeout?: Duration.Input | undefined
  /** Characters of stderr kept for messages and health. Default 8 000. */
  readonly stderrExcerptChars?: number | undefined
  /** Level at which each stderr line is logged. Default `Debug`. */
  readonly stderrLogLevel?: "Trace" | "Debug" | "Info" | "Warn" | "Error" | "None" | undefined
  /** How messages written to stdin are framed (and the plugin frames its stdout). Default `"ndjson"`. */
  readonly framing?: Framing.Mode | undefined
  /**
   * What holds the process's tree: `"cgroup"` (default: a cgroup of its own where the host may
   * make one, else the `/proc` walk) or `"process-tree"` (the walk only; no cgroup to enter, so
   * no kernel grace period in the start). See `LifetimePolicy.Containment`.
   */
  readonly containment?: "cgroup" | "process-tree" | undefined
}

/**
 * Pauses and resumes the reading of a process's stdout (see `PluginProcess.listenStdout`).
 *
 * @category models
 */
export interface StdoutSwitch {
  readonly pause: () => void
  readonly resume: () => void
}

/**
 * A running plugin process.
 *
 * @category models
 */
export interface PluginProcess {
  readonly name: string
  readonly pid: number
  /** When it was spawned, from `Clock`, in epoch milliseconds. */
  readonly startedAt: number
  /** How messages are framed on its stdin (by `writeLine`) and stdout (for the reader to decode). */
  readonly framing: Framing.Mode
  /**
   * The process's stdout. It has exactly one reader (the connection built on top); reading
   * it twice splits the bytes between the readers.
   */
  readonly stdout: Stream.Stream<Uint8Array, PlatformError.PlatformError>
  /**
   * The same bytes as `stdout`, handed to callbacks as they arrive (launchers that can: the
   * Node one). Registered in the current Scope; use one or the other, never both. The switch it
   * returns pauses and resumes the reading (flow control: a paused pipe fills up and the plugin
   * blocks on its writes).
   */
  readonly listenStdout?: ((handlers: {
    readonly onChunk: (chunk: Uint8Array) => void
    readonly onEnd: (failure?: string) => void
  }) => Effect.Effect<StdoutSwitch, never, Scope.Scope>) | undefined
  /**
   * Queues one message for stdin, framed as `framing` says (a line: the text and a newline; or a
   * `Content-Length` header and the text). Messages queued in one burst are written together
   * (one write, or slices of 16 with the Node launcher). Returns false once stdin is closed or
   * broken.
   */
  readonly writeLine: (line: string) => boolean
  /**
   * Bytes of stdin lines queued and not yet taken by the pipe (counted as string length, which is
   * the byte count of ASCII JSON). A plugin that stops reading makes it grow: what writes decides
   * when to stop (the connection caps it at `maxQueuedBytes`). The default launcher stops counting
   * a burst when its writer takes it, so at most one more burst is buffered beyond this.
   */
  readonly queuedInputBytes: () => number
  /**
   * Calls `listener` each time queued stdin bytes went out (`queuedInputBytes` fell), for as long
   * as the current Scope is open. One listener at a time: the connection built on top.
   */
  readonly listenInputWritten: (listener: () => void) => Effect.Effect<void, never, Scope.Scope>
  /** Closes stdin after the queued lines are written (the plugin sees EOF). */
  readonly endInput: Effect.Effect<void>
  /** Completes with a description when writing to stdin failed (for example a broken pipe). */
  readonly inputFailure: Effect.Effect<string>
  /**
   * Completes once the process is gone: its exit, or a broken stdin that was not followed by an
   * exit within 200 ms (a plugin that closed its stdin but keeps running). A broken pipe usually
   * means the plugin died, and its exit says more than EPIPE, hence the short wait.
   */
  readonly ended: Effect.Effect<ProcessEnd>
  /** The last stderr output, at most `stderrExcerptChars` characters. */
  readonly stderrExcerpt: Effect.Effect<string>
  /** Waits for the process to exit. */
  readonly exit: Effect.Effect<ProcessExit>
  /** The exit, if the process has exited. */
  readonly exitNow: Effect.Effect<Option.Option<ProcessExit>>
  /**
   * Runs the stop sequence once (later calls wait for the first): `graceful` (bounded by
   * `drainTimeout`) → end stdin → SIGTERM → `shutdownGrace` → SIGKILL → wait. Never fails and
   * never hangs.
   */
  readonly stop: (options?: { readonly graceful?: Effect.Effect<unknown, unknown> | undefined }) => Effect.Effect<ProcessExit>
}

// ---------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------

/**
 * The environment a plugin gets: the allow-listed names that are own properties of `hostEnv`
 * (never inherited ones such as `toString`), plus `extra`. The names are checked by the spawn
 * (see the module header), not here.
 *
 * @category constructors
 */
export const restrictedEnv = (
  allowed: ReadonlyArray<string>,
  hostEnv: Readonly<Record<string, string | undefined>>,
  extra?: Readonly<Record<string, string>>
): Record<string, string> => PluginEnvironment.build(allowed, hostEnv, extra)

/**
 * What a launcher runs for `spec`: the names checked, the environment built, and a script's
 * `env` interpreter resolved on the host's `PATH` when the plugin gets none. Fails with a `Spawn`
 * reason naming the variable or the interpreter.
 */
const launchOf = (spec: Spec): Effect.Effect<PluginEnvironment.Launch, PluginClientError.PluginClientError> =>
  PluginEnvironment.prepare(spec).pipe(
    Effect.mapError((detail) => PluginClientError.make(spec.name, new PluginClientError.Spawn({ path: spec.executable, detail })))
  )

const signalPattern = /signal:?\s*'?(SIG[A-Z0-9]+)'?/

/**
 * Reads a signal name out of the spawner's "exitCode" failure (Node reports a signalled exit
 * as a failure whose cause says `Process interrupted due to receipt of signal: 'SIGTERM'`).
 */
const signalOf = (error: PlatformError.PlatformError): string => {
  const cause: unknown = error.reason.cause
  const text = cause instanceof Error ? cause.message : `${error.message}`
  return signalPattern.exec(text)?.[1] ?? "unknown"
}

/** The knobs of {@link Options} with their defaults applied. */
interface Timings {
  readonly shutdownGrace: Duration.Duration
  readonly drainTimeout: Duration.Duration
  readonly killTimeout: Duration.Duration
  readonly excerptChars: number
  readonly stderrLogLevel: NonNullable<Options["stderrLogLevel"]>
  readonly framing: Framing.Mode
  readonly cgroups: boolean
}

const timingsOf = (options: Options | undefined): Timings => ({
  shutdownGrace: Duration.fromInputUnsafe(options?.shutdownGrace ?? "10 seconds"),
  drainTimeout: Duration.fromInputUnsafe(options?.drainTimeout ?? "10 seconds"),
  killTimeout: Duration.fromInputUnsafe(options?.killTimeout ?? "2 seconds"),
  excerptChars: options?.stderrExcerptChars ?? 8_000,
  stderrLogLevel: options?.stderrLogLevel ?? "Debug",
  framing: options?.framing ?? "ndjson",
  cgroups: options?.containment !== "process-tree"
})

/** What a launcher keeps of stderr for messages and health. */
interface Excerpt {
  readonly append: (line: string) => void
  readonly read: Effect.Effect<string>
}

/** The last `excerptChars` characters of stderr, kept with amortised trimming. */
const makeExcerpt = (excerptChars: number): Excerpt => {
  let text = ""
  return {
    append: (line: string) => {
      text += line + "\n"
      if (text.length > excerptChars * 2) text = text.slice(-excerptChars)
    },
    read: Effect.sync(() => text.slice(-excerptChars))
  }
}

/**
 * The stop sequence shared by the launchers: once, bounded at every step, on the Clock.
 * `signal` sends a signal to the process group (it does not wait); the launcher reports the exit
 * with `recordExit`, which completes `exited`.
 */
const makeStopper = (controls: {
  readonly timings: Timings
  readonly exited: Deferred.Deferred<ProcessExit>
  readonly endInput: Effect.Effect<void>
  readonly signal: (signal: "SIGTERM" | "SIGKILL") => Effect.Effect<void>
  readonly annotate: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** The plugin's whole tree: walked as the stop begins, signalled at each rung, swept at the end. */
  readonly tree: ProcessTree.Containment | undefined
}) => {
  const { timings, exited, endInput, tree } = controls
  const signal = (killSignal: "SIGTERM" | "SIGKILL") =>
    tree === undefined ? controls.signal(killSignal) : Effect.andThen(ProcessTree.signalTree(tree, killSignal), controls.signal(killSignal))
  const stopResult = Deferred.makeUnsafe<ProcessExit>()
  let stopping = false

  // What `awaitExit` waits on, while it waits: completed by the exit or by its timer.
  let exitWaiter: Deferred.Deferred<Option.Option<ProcessExit>> | undefined
  const recordExit = (exit: ProcessExit) => {
    Deferred.doneUnsafe(exited, Exit.succeed(exit))
    const waiter = exitWaiter
    exitWaiter = undefined
    if (waiter !== undefined) Deferred.doneUnsafe(waiter, Exit.succeed(Option.some(exit)))
  }
  /**
   * The exit, if it comes within `within`. One timer fiber that the exit interrupts, rather than
   * `timeoutOption`'s race of two fibers (a stop-all pays it for every plugin).
   */
  const awaitExit = (within: Duration.Duration): Effect.Effect<Option.Option<ProcessExit>> =>
    Effect.withFiber((fiber) => {
      if (Deferred.isDoneUnsafe(exited)) return Effect.asSome(Deferred.await(exited))
      const waiter = Deferred.makeUnsafe<Option.Option<ProcessExit>>()
      exitWaiter = waiter
      const timer = Effect.runForkWith(fiber.context)(Effect.sleep(within))
      timer.addObserver(() => Deferred.doneUnsafe(waiter, Exit.succeed(Option.none())))
      return Effect.ensuring(
        Deferred.await(waiter),
        Effect.sync(() => {
          if (exitWaiter === waiter) exitWaiter = undefined
          timer.interruptUnsafe()
        })
      )
    })

  const stopSequence = (graceful: Effect.Effect<unknown, unknown> | undefined) =>
    Effect.gen(function*() {
      if (tree !== undefined) ProcessTree.snapshot(tree)
      if (graceful !== undefined && !Deferred.isDoneUnsafe(exited)) {
        yield* graceful.pipe(
          Effect.ignore,
          Effect.andThen(endInput),
          Effect.andThen(Deferred.await(exited)),
          Effect.timeoutOption(timings.drainTimeout)
        )
      }
      yield* endInput
      if (Deferred.isDoneUnsafe(exited)) return yield* Deferred.await(exited)
      if (yield* LogLevel.isEnabled("Debug")) yield* controls.annotate(Effect.logDebug("stopping: SIGTERM"))
      yield* signal("SIGTERM")
      const exit = yield* awaitExit(timings.shutdownGrace)
      if (Option.isSome(exit)) return exit.value
      yield* controls.annotate(Effect.logWarning(`did not exit within ${formatDuration(timings.shutdownGrace)} of SIGTERM; sending SIGKILL`))
      yield* signal("SIGKILL")
      const killed = yield* awaitExit(timings.killTimeout)
      if (Option.isSome(killed)) return killed.value
      yield* controls.annotate(Effect.logError(`still running ${formatDuration(timings.killTimeout)} after SIGKILL; giving up on it`))
      return { code: null, signal: "SIGKILL", requested: true } satisfies ProcessExit
    })
  const stop = (stopOptions?: { readonly graceful?: Effect.Effect<unknown, unknown> | undefined }) =>
    Effect.suspend(() => {
      if (stopping) return Deferred.await(stopResult)
      stopping = true
      return stopSequence(stopOptions?.graceful).pipe(
        Effect.tap(() => tree === undefined ? Effect.void : ProcessTree.sweep(tree, Duration.toMillis(timings.killTimeout))),
        Effect.tap((exit) => Deferred.succeed(stopResult, exit))
      )
    }).pipe(Effect.uninterruptible)
  return { stop, stopping: () => stopping, recordExit }
}

/** A launcher's handle on the stop sequence. */
type Stopper = ReturnType<typeof makeStopper>

/**
 * How much stdin is queued and who hears when it goes out: the launcher says what is queued and
 * calls `written` when some of it left.
 */
interface InputMeter {
  readonly queuedBytes: () => number
  readonly written: () => void
  readonly listen: PluginProcess["listenInputWritten"]
}

const makeInputMeter = (queuedBytes: () => number): InputMeter => {
  let listener: (() => void) | undefined
  return {
    queuedBytes,
    written: () => listener?.(),
    listen: (onWritten) =>
      Effect.flatMap(Effect.scope, (scope) => {
        listener = onWritten
        return Scope.addFinalizer(scope, Effect.sync(() => {
          if (listener === onWritten) listener = undefined
        }))
      })
  }
}

/** What a launcher completes as the process ends: its exit, the end of the connection, a broken stdin. */
interface Ends {
  readonly exited: Deferred.Deferred<ProcessExit>
  readonly ended: Deferred.Deferred<ProcessEnd>
  readonly inputFailed: Deferred.Deferred<string>
}

const makeEnds = (): Ends => ({ exited: Deferred.makeUnsafe(), ended: Deferred.makeUnsafe(), inputFailed: Deferred.makeUnsafe() })

/** The process as its users see it, from what a launcher built. */
const assemble = (parts: {
  readonly spec: Spec
  readonly pid: number
  readonly startedAt: number
  readonly framing: Framing.Mode
  readonly stdout: PluginProcess["stdout"]
  readonly listenStdout: PluginProcess["listenStdout"]
  readonly writeLine: PluginProcess["writeLine"]
  readonly input: InputMeter
  readonly endInput: PluginProcess["endInput"]
  readonly ends: Ends
  readonly excerpt: Excerpt
  readonly stop: PluginProcess["stop"]
}): PluginProcess => ({
  name: parts.spec.name,
  pid: parts.pid,
  startedAt: parts.startedAt,
  framing: parts.framing,
  stdout: parts.stdout,
  listenStdout: parts.listenStdout,
  writeLine: parts.writeLine,
  queuedInputBytes: parts.input.queuedBytes,
  listenInputWritten: parts.input.listen,
  endInput: parts.endInput,
  // Made when asked for: most are read once per process or never, and a host with a thousand
  // idle plugins would hold each of them a thousand times.
  get inputFailure() {
    return Deferred.await(parts.ends.inputFailed)
  },
  get ended() {
    return Deferred.await(parts.ends.ended)
  },
  stderrExcerpt: parts.excerpt.read,
  get exit() {
    return Deferred.await(parts.ends.exited)
  },
  get exitNow() {
    return Deferred.poll(parts.ends.exited).pipe(
      Effect.flatMap(Option.match({ onNone: () => Effect.succeedNone, onSome: Effect.asSome }))
    )
  },
  stop: parts.stop
})

/** Lines the default launcher writes at once at most (as many as calls in flight by default). */
const linesPerBurst = 64
const stderrMaxLineBytes = 64 * 1024
const stderrLine = (frame: Framing.Frame) => typeof frame === "string" ? frame : `[stderr line of ${frame.bytes}+ bytes cut]`
/** How long an exit may wait for the last stderr bytes (a grandchild may hold stderr open). */
const stderrAfterExit = Duration.millis(200)
/** How long a broken stdin waits for the exit that usually follows and says more. */
const exitAfterBrokenInput = Duration.millis(200)

// ---------------------------------------------------------------------------------------------
// the effect/process launcher (the default)
// ---------------------------------------------------------------------------------------------

/**
 * The default launcher's stdin: one writer fiber, one write per burst of queued lines. The burst
 * being written counts as queued until the writer asks for the next one, which it does once the
 * pipe took it (or Node's buffer is under its mark).
 */
interface SpawnerInput {
  readonly outbound: Queue.Queue<string, Cause.Done>
  readonly framing: Framing.Mode
  readonly meter: InputMeter
  /** Bytes of lines offered and not yet written. */
  queuedBytes: number
  /** Bytes of the burst the writer holds. */
  burstBytes: number
}

/**
 * The command that starts `launch`, and the cgroup it enters before it runs when it has one:
 * inside its own cgroup from its first instruction where the host may make one (see
 * `internal/cgroup.ts`), through `setpriv --pdeathsig` where the guards arm the parent-death
 * signal and it can be (see `internal/parentDeath.ts`), so the plugin dies with the host.
 * `setpriv` runs first (`setpriv … -- /bin/sh -c <enter> <plugin>`): the signal is armed sooner,
 * and its start runs inside the grace period the shell's move waits for, not after it.
 */
const commandOf = (
  spec: Spec,
  launch: PluginEnvironment.Launch,
  guards: SpawnRegistry.HostDeathGuards,
  cgroups: boolean
): Effect.Effect<{ readonly command: Cgroup.Command; readonly group: Cgroup.Cgroup | undefined }> => {
  const context = { cwd: spec.cwd, env: launch.env }
  const plain = { executable: launch.executable, args: launch.args }
  const guarded = (command: Cgroup.Command) => guards.parentDeathSignal ? withParentDeathSignal(command, context) : command
  if (!cgroups) return Effect.succeed({ command: guarded(plain), group: undefined })
  return Effect.map(Cgroup.prepareEntry(plain, context), (entry) => ({ command: guarded(entry?.command ?? plain), group: entry?.group }))
}

/** Removes the cgroup prepared for a spawn that did not happen. */
const removeGroup = (group: Cgroup.Cgroup | undefined): Effect.Effect<void> =>
  group === undefined ? Effect.void : Effect.asVoid(Cgroup.removeAside(group))

/** Spawns through the `ChildProcessSpawner`, in a process group of its own. */
const spawnWithSpawner = (spec: Spec, launch: PluginEnvironment.Launch, command: Cgroup.Command) => {
  return ChildProcess.make(command.executable, [...command.args], {
    cwd: spec.cwd,
    env: launch.env,
    extendEnv: false,
    // Own process group, so signals reach grandchildren too.
    detached: true,
    killSignal: "SIGTERM",
    // Safety net for the spawner's own release (group members left after our stop sequence).
    forceKillAfter: "200 millis"
  }).pipe(
    Effect.mapError((error) =>
      PluginClientError.make(spec.name, new PluginClientError.Spawn({ path: spec.executable, detail: error.message }))
    )
  )
}

/**
 * Drains stderr for the whole life of the process, in a fiber of the current Scope: every line
 * goes to the excerpt and, when the level is not `None`, to the log. The returned Deferred
 * completes when stderr ended.
 */
const drainSpawnerStderr = Effect.fnUntraced(function*(
  handle: ChildProcessSpawner.ChildProcessHandle,
  excerpt: Excerpt,
  timings: Timings,
  annotate: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
) {
  const stderrDone = yield* Deferred.make<void>()
  const logStderr = timings.stderrLogLevel === "None" ? undefined : Effect.logWithLevel(timings.stderrLogLevel)
  yield* handle.stderr.pipe(
    Framing.frames({ maxLineBytes: stderrMaxLineBytes }),
    Stream.runForEach((frame) => {
      const line = stderrLine(frame)
      excerpt.append(line)
      return logStderr === undefined ? Effect.void : logStderr(line).pipe(Effect.annotateLogs({ stream: "stderr" }))
    }),
    Effect.catchCause(() => Effect.void),
    Effect.ensuring(Deferred.succeed(stderrDone, undefined)),
    annotate,
    Effect.forkScoped
  )
  return stderrDone
})

/**
 * Starts the stdin writer in a fiber of the current Scope. A write that fails ends the queue
 * (further lines are refused rather than queued for a pipe nobody reads) and reports the failure;
 * the end waits briefly for the exit, which usually follows and says more.
 */
const writeSpawnerInput = Effect.fnUntraced(function*(handle: ChildProcessSpawner.ChildProcessHandle, ends: Ends, framing: Framing.Mode) {
  const outbound = yield* Queue.unbounded<string, Cause.Done>()
  const input: SpawnerInput = { outbound, framing, meter: makeInputMeter(() => input.queuedBytes), queuedBytes: 0, burstBytes: 0 }
  const nextBurst = Effect.suspend(() => {
    if (input.burstBytes > 0) {
      input.queuedBytes -= input.burstBytes
      input.burstBytes = 0
      input.meter.written()
    }
    // Bounded bursts: what the pipe does not take waits here as lines, not also as an encoded copy.
    return Queue.takeBetween(outbound, 1, linesPerBurst)
  }).pipe(Effect.map((lines) => {
    for (const line of lines) input.burstBytes += Framing.framedLength(framing, line)
    return [Framing.encode(framing, lines)] as const
  }))
  yield* Stream.fromPull(Effect.succeed(nextBurst)).pipe(
    Stream.run(handle.stdin),
    Effect.catchCause((cause) => {
      const detail = Cause.pretty(cause).split("\n")[0] ?? "write failed"
      Queue.endUnsafe(outbound)
      return Deferred.succeed(ends.inputFailed, detail).pipe(
        Effect.andThen(Deferred.await(ends.exited).pipe(Effect.timeoutOption(exitAfterBrokenInput))),
        Effect.flatMap((exit) =>
          exit._tag === "None" ? Deferred.succeed(ends.ended, { _tag: "InputFailed", detail }) : Effect.void
        )
      )
    }),
    Effect.forkScoped
  )
  return input
})

const writeSpawnerLine = (input: SpawnerInput, line: string): boolean => {
  if (!Queue.offerUnsafe(input.outbound, line)) return false
  input.queuedBytes += Framing.framedLength(input.framing, line)
  return true
}

/**
 * Signals the group in the background, until the leader exits. The spawner's `kill` would also
 * wait up to a second for killed grandchildren to be reaped by init; the leader's exit is what
 * matters here, and the spawner's release cleans up the rest of the group. Only our own exit
 * watcher decides that the process is gone: `kill` of a process that has just exited fails at
 * once (nothing to signal) while its exit is still being recorded.
 */
const signalWithSpawner = (handle: ChildProcessSpawner.ChildProcessHandle, exited: Deferred.Deferred<ProcessExit>) =>
(killSignal: "SIGTERM" | "SIGKILL"): Effect.Effect<void> =>
  Effect.asVoid(Effect.forkDetach(
    Effect.raceFirst(handle.kill({ killSignal }).pipe(Effect.ignore, Effect.andThen(Effect.never)), Deferred.await(exited)),
    { startImmediately: true }
  ))

/**
 * Observes the exit as data, in a fiber of the current Scope, once the last stderr lines landed
 * in the excerpt (bounded: a grandchild may hold stderr open).
 */
const watchSpawnerExit = (handle: ChildProcessSpawner.ChildProcessHandle, parts: {
  readonly stderrDone: Deferred.Deferred<void>
  readonly ended: Deferred.Deferred<ProcessEnd>
  readonly stopper: Stopper
}) =>
  handle.exitCode.pipe(
    Effect.map((code): ProcessExit => ({ code, signal: null, requested: parts.stopper.stopping() })),
    Effect.catch((error) => Effect.succeed<ProcessExit>({ code: null, signal: signalOf(error), requested: parts.stopper.stopping() })),
    Effect.tap(() => Deferred.await(parts.stderrDone).pipe(Effect.timeoutOption(stderrAfterExit))),
    Effect.flatMap((exit) =>
      Deferred.succeed(parts.ended, { _tag: "Exited", exit }).pipe(Effect.andThen(Effect.sync(() => parts.stopper.recordExit(exit))))
    ),
    Effect.forkScoped
  )

/**
 * Spawns through the `ChildProcessSpawner` (the default launcher).
 */
const makeWithSpawner = Effect.fnUntraced(function*(spec: Spec, options?: Options): Effect.fn.Return<
  PluginProcess,
  PluginClientError.PluginClientError,
  Scope.Scope | ChildProcessSpawner.ChildProcessSpawner
> {
  const timings = timingsOf(options)
  const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
  const guards = yield* SpawnRegistry.guardsFor(spawner)
  const launch = yield* launchOf(spec)
  const { command, group } = yield* commandOf(spec, launch, guards, timings.cgroups && !SpawnRegistry.isSimulated(spawner))
  const handle = yield* spawnWithSpawner(spec, launch, command).pipe(Effect.onError(() => removeGroup(group)))
  const startedAt = yield* Clock.currentTimeMillis
  const pid: number = handle.pid
  const stat = ProcStat.readStat(pid)
  const tree = ProcessTree.contain(pid, { group, cgroups: timings.cgroups, stat })
  yield* SpawnRegistry.track(spec.name, pid, guards, tree?.cgroup?.dir, stat)
  const annotate = Effect.annotateLogs({ plugin: spec.name, pid })
  const excerpt = makeExcerpt(timings.excerptChars)
  const stderrDone = yield* drainSpawnerStderr(handle, excerpt, timings, annotate)
  const ends = makeEnds()
  const input = yield* writeSpawnerInput(handle, ends, timings.framing)
  const endInput = Effect.asVoid(Queue.end(input.outbound))
  const stopper = makeStopper({ timings, exited: ends.exited, endInput, signal: signalWithSpawner(handle, ends.exited), annotate, tree })
  yield* watchSpawnerExit(handle, { stderrDone, ended: ends.ended, stopper })

  // Registered last, so it runs first at Scope close: before the readers are interrupted and
  // before the spawner's own release.
  yield* Scope.addFinalizer(yield* Effect.scope, stopper.stop())

  return assemble({
    spec,
    pid,
    startedAt,
    framing: timings.framing,
    stdout: handle.stdout,
    listenStdout: undefined,
    writeLine: (line) => writeSpawnerLine(input, line),
    input: input.meter,
    endInput,
    ends,
    excerpt,
    stop: stopper.stop
  })
})

// ---------------------------------------------------------------------------------------------
// the node:child_process launcher
// ---------------------------------------------------------------------------------------------

/** Runs an effect in the background with the services of the spawning fiber. */
type RunFork = <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>

const spawnFailure = (spec: Spec, error: unknown) =>
  PluginClientError.make(spec.name, new PluginClientError.Spawn({
    path: spec.executable,
    detail: error instanceof Error ? error.message : String(error)
  }))

/**
 * Starts the executable in a process group of its own (detached, so signals reach grandchildren
 * too), never through a shell, and waits for Node to report the spawn. Interrupted before that,
 * the group is killed.
 */
const spawnNode = (
  spec: Spec,
  launch: PluginEnvironment.Launch,
  command: Cgroup.Command
): Effect.Effect<NodeChildProcess, PluginClientError.PluginClientError> =>
  Effect.callback<NodeChildProcess, PluginClientError.PluginClientError>((resume) => {
    let spawned: NodeChildProcess
    try {
      spawned = spawn(command.executable, [...command.args], { cwd: spec.cwd, env: launch.env, stdio: "pipe", detached: true })
    } catch (error) {
      return resume(Effect.fail(spawnFailure(spec, error)))
    }
    const onSpawn = () => {
      spawned.off("error", onError)
      resume(Effect.succeed(spawned))
    }
    const onError = (error: Error) => {
      spawned.off("spawn", onSpawn)
      resume(Effect.fail(spawnFailure(spec, error)))
    }
    spawned.once("spawn", onSpawn)
    spawned.once("error", onError)
    return Effect.sync(() => {
      spawned.off("spawn", onSpawn)
      spawned.off("error", onError)
      if (spawned.pid !== undefined) signalGroup(spawned, spawned.pid, "SIGKILL")
    })
  })

/**
 * The stderr of a Node-launched process, drained for its whole life (see {@link drainNodeStderr}),
 * and who waits for its close. It closes after the exit, or never while a grandchild holds it:
 * what waits for it waits `stderrAfterExit` at most. A process's pipes are closed before its exit
 * is reported, so their end is almost always read in the same turn of the event loop as the
 * exit: the timer fiber (that the close interrupts) is only started if stderr is still open one
 * turn later. A stop-all saved a fiber and an interrupt per plugin.
 */
interface NodeStderr {
  /** The pipe closed, or there never was one. */
  closed: boolean
  /** `stderrAfterExit` went by before the close: nothing waits for it any more. */
  waitOver: boolean
  /** What runs at the close, or once the wait is over. */
  waiters: Array<() => void>
  /** The fiber bounding the wait, started one turn after the first waiter came. */
  timer: Fiber.Fiber<void> | undefined
  /** Lines of the chunk being read, logged together after it. */
  toLog: Array<string>
  readonly runFork: RunFork
}

const releaseStderrWaiters = (stderr: NodeStderr): void => {
  const waiting = stderr.waiters
  stderr.waiters = []
  for (const then of waiting) then()
}

const startStderrTimer = (stderr: NodeStderr): void => {
  if (stderr.closed || stderr.waitOver || stderr.timer !== undefined) return
  const timer = stderr.runFork(Effect.sleep(stderrAfterExit))
  stderr.timer = timer
  timer.addObserver(() => {
    stderr.waitOver = true
    releaseStderrWaiters(stderr)
  })
}

/** Runs `then` once stderr closed, or `stderrAfterExit` after the turn that asked. */
const whenStderrClosed = (stderr: NodeStderr, then: () => void): void => {
  if (stderr.closed || stderr.waitOver) return then()
  stderr.waiters.push(then)
  if (stderr.waiters.length === 1) setImmediate(startStderrTimer, stderr)
}

/**
 * Reads `pipe` until it closes: every line goes to the excerpt and, when the level is not
 * `None`, to the log (annotated with the plugin), a chunk at a time.
 */
const drainNodeStderr = (pipe: NodeChildProcess["stderr"], sinks: {
  readonly excerpt: Excerpt
  readonly timings: Timings
  readonly annotate: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly runFork: RunFork
}): NodeStderr => {
  const stderr: NodeStderr = { closed: pipe === null, waitOver: false, waiters: [], timer: undefined, toLog: [], runFork: sinks.runFork }
  if (pipe === null) return stderr
  const { excerpt, timings, annotate, runFork } = sinks
  const log = timings.stderrLogLevel === "None" ? undefined : Effect.logWithLevel(timings.stderrLogLevel)
  // Made at the first bytes: most plugins never write to stderr, and a thousand idle ones would
  // each hold a decoder (and its buffers) for nothing.
  let lines: Framing.LineDecoder | undefined
  const onFrame = (frame: Framing.Frame) => {
    const line = stderrLine(frame)
    excerpt.append(line)
    if (log !== undefined) stderr.toLog.push(line)
  }
  const logLines = () => {
    if (stderr.toLog.length === 0 || log === undefined) return
    const toLog = stderr.toLog
    stderr.toLog = []
    runFork(Effect.forEach(toLog, (line) => log(line), { discard: true }).pipe(Effect.annotateLogs({ stream: "stderr" }), annotate))
  }
  pipe.on("data", (chunk: Buffer) => {
    lines ??= Framing.makeLineDecoder({ maxLineBytes: stderrMaxLineBytes })
    lines.push(chunk, onFrame)
    logLines()
  })
  pipe.once("close", () => {
    lines?.end(onFrame)
    logLines()
    stderr.closed = true
    stderr.timer?.interruptUnsafe()
    releaseStderrWaiters(stderr)
  })
  return stderr
}

/**
 * The stdin of a Node-launched process: lines queued in one turn go out together (see
 * LineBatcher); what is queued is metered, Node's own buffer for the pipe included (a plugin
 * that stops reading makes it grow).
 */
interface NodeInput {
  /** Lines are taken: stdin is not ended, not broken, and the process has not exited. */
  open: boolean
  readonly pipe: NodeChildProcess["stdin"]
  readonly batcher: LineBatcher.LineBatcher
  readonly meter: InputMeter
  /** Set while an empty write waits behind writes the pipe could not finish at once. */
  marking: boolean
}

const makeNodeInput = (pipe: NodeChildProcess["stdin"], ends: Ends, runFork: RunFork, framing: Framing.Mode): NodeInput => {
  const meter = makeInputMeter(() => input.batcher.queuedChars() + (pipe?.writableLength ?? 0))
  // A write the pipe takes at once needs no callback (Node then schedules nothing after it);
  // one it could not finish is followed by an empty write, whose callback runs once everything
  // before it went out: that is when the meter hears of it.
  const mark = () => {
    if (pipe === null || input.marking || pipe.writableLength === 0) return
    input.marking = true
    pipe.write("", marked)
  }
  const marked = () => {
    input.marking = false
    meter.written()
    if (input.open) mark()
  }
  const input: NodeInput = {
    open: pipe !== null,
    pipe,
    meter,
    marking: false,
    batcher: LineBatcher.make((data) => {
      if (!input.open || pipe === null) return
      pipe.write(data)
      mark()
    }, (messages) => Framing.encodeMessages(framing, messages))
  }
  pipe?.on("error", (error) => failNodeInput(input, ends, runFork, `writing stdin failed: ${error.message}`))
  return input
}

/**
 * Refuses further lines and reports the failure once. A broken pipe usually means the plugin
 * died: the end waits briefly for the exit, which says more.
 */
const failNodeInput = (input: NodeInput, ends: Ends, runFork: RunFork, detail: string): void => {
  input.open = false
  input.batcher.clear()
  if (Deferred.isDoneUnsafe(ends.inputFailed)) return
  Deferred.doneUnsafe(ends.inputFailed, Exit.succeed(detail))
  runFork(Deferred.await(ends.exited).pipe(
    Effect.timeoutOption(exitAfterBrokenInput),
    Effect.flatMap((exit) => Effect.sync(() => {
      if (Option.isNone(exit)) Deferred.doneUnsafe(ends.ended, Exit.succeed<ProcessEnd>({ _tag: "InputFailed", detail }))
    }))
  ))
}

const writeNodeLine = (input: NodeInput, line: string): boolean => {
  if (!input.open) return false
  input.batcher.push(line)
  return true
}

const endNodeInput = (input: NodeInput): Effect.Effect<void> =>
  Effect.sync(() => {
    if (!input.open) return
    input.batcher.flush()
    input.open = false
    input.pipe?.end()
  })

/**
 * Observes the exit as data. The end is recorded first: the connection over the pipes winds down
 * on it, so a stop resumed by the exit finds it closed instead of interrupting what waits for it.
 * A crash is recorded once its last stderr bytes are in the excerpt (bounded, see
 * {@link NodeStderr}); a stop the host asked for is over at the exit: waiting for the last stderr
 * bytes (for a crash's message) made stopping 100 plugins at once 10 % slower. They are still
 * logged: stderr stays open until it ends (see {@link sweepNode}).
 */
const watchNodeExit = (child: NodeChildProcess, parts: {
  readonly input: NodeInput
  readonly stderr: NodeStderr
  readonly ended: Deferred.Deferred<ProcessEnd>
  readonly stopper: Stopper
}): void => {
  const { input, stderr, ended, stopper } = parts
  const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
    const exit: ProcessExit = { code, signal, requested: stopper.stopping() }
    input.open = false
    const record = () => {
      Deferred.doneUnsafe(ended, Exit.succeed<ProcessEnd>({ _tag: "Exited", exit }))
      stopper.recordExit(exit)
    }
    if (exit.requested) record()
    else whenStderrClosed(stderr, record)
  }
  if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode)
  else child.once("exit", onExit)
}

/**
 * After the stop sequence, at Scope close: whatever is left of the process group is ended (see
 * `terminateGroup`) and the pipes are closed (a grandchild may hold them open, which would keep
 * the host's event loop alive). stderr gets up to `stderrAfterExit` more, without holding up the
 * close, so the plugin's last lines are still logged.
 */
const sweepNode = (child: NodeChildProcess, pid: number, stderr: NodeStderr, tree: ProcessTree.Containment | undefined): Effect.Effect<void> =>
  Effect.andThen(
    // A group the tree's sweep found empty stays empty: nothing to probe again.
    ProcessTree.groupEnded(tree) ? Effect.void : terminateGroup(child, pid),
    Effect.sync(() => {
      child.stdin?.destroy()
      child.stdout?.destroy()
      const pipe = child.stderr
      if (pipe !== null) whenStderrClosed(stderr, () => pipe.destroy())
    })
  )

/** A switch for a stdout that cannot be paused (there is none). */
const noSwitch: StdoutSwitch = { pause: () => {}, resume: () => {} }

/**
 * stdout's chunks handed to callbacks, for as long as the listening Scope is open; the switch
 * pauses the pipe (`pause()` stops `data` events, and the kernel pipe fills up behind it).
 */
const listenNodeStdout = (pipe: NodeChildProcess["stdout"]): NonNullable<PluginProcess["listenStdout"]> =>
({ onChunk, onEnd }) =>
  pipe === null
    ? Effect.sync(() => {
      onEnd()
      return noSwitch
    })
    : Effect.flatMap(Effect.scope, (listenScope) => {
      const onData = (chunk: Buffer) => onChunk(chunk)
      const onClose = () => onEnd()
      const onError = (error: Error) => onEnd(error.message)
      pipe.on("data", onData)
      pipe.once("end", onClose)
      pipe.once("error", onError)
      return Effect.as(
        Scope.addFinalizer(
          listenScope,
          Effect.sync(() => {
            pipe.off("data", onData)
            pipe.off("end", onClose)
            pipe.off("error", onError)
          })
        ),
        { pause: () => void pipe.pause(), resume: () => void pipe.resume() }
      )
    })

/** stdout as a stream, over the callbacks of `listen`. */
const stdoutStreamOf = (
  listen: NonNullable<PluginProcess["listenStdout"]>
): Stream.Stream<Uint8Array, PlatformError.PlatformError> =>
  Stream.callback<Uint8Array, PlatformError.PlatformError>((queue) =>
    listen({
      onChunk: (chunk) => void Queue.offerUnsafe(queue, chunk),
      onEnd: (failure) =>
        void (failure === undefined
          ? Queue.endUnsafe(queue)
          : Queue.failCauseUnsafe(queue, Cause.fail(PlatformError.systemError({
            _tag: "Unknown",
            module: "PluginProcess",
            method: "stdout",
            description: failure
          }))))
    })
  )

/**
 * Spawns with `node:child_process`: the same contract as the default launcher, with stdio
 * handled in Node's callbacks (no stream fibers) and the process group swept at Scope close.
 */
const makeWithNode = Effect.fnUntraced(function*(spec: Spec, options?: Options): Effect.fn.Return<
  PluginProcess,
  PluginClientError.PluginClientError,
  Scope.Scope
> {
  const timings = timingsOf(options)
  const guards = yield* SpawnRegistry.HostDeathGuards
  const launch = yield* launchOf(spec)
  const { command, group } = yield* commandOf(spec, launch, guards, timings.cgroups)
  const child = yield* spawnNode(spec, launch, command).pipe(Effect.onError(() => removeGroup(group)))
  // A spawned child always has a pid; without one, a group signal to -0 would hit the host's own group.
  if (child.pid === undefined || child.pid <= 0) {
    yield* removeGroup(group)
    return yield* Effect.fail(spawnFailure(spec, "the process has no pid"))
  }
  const pid = child.pid
  // Read once for both: what holds the tree, and the registry's record.
  const stat = ProcStat.readStat(pid)
  const tree = ProcessTree.contain(pid, { group, cgroups: timings.cgroups, stat })
  yield* SpawnRegistry.track(spec.name, pid, guards, tree?.cgroup?.dir, stat)
  // A failed kill is reported as an `error` event; the exit is what we observe.
  child.on("error", () => {})
  const startedAt = yield* Clock.currentTimeMillis
  const annotate = Effect.annotateLogs({ plugin: spec.name, pid })
  const runFork: RunFork = Effect.runForkWith(yield* Effect.context<never>())
  const ends = makeEnds()
  const excerpt = makeExcerpt(timings.excerptChars)
  const stderr = drainNodeStderr(child.stderr, { excerpt, timings, annotate, runFork })
  const input = makeNodeInput(child.stdin, ends, runFork, timings.framing)
  const endInput = endNodeInput(input)
  const signal = (killSignal: "SIGTERM" | "SIGKILL") => Effect.sync(() => signalGroup(child, pid, killSignal))
  const stopper = makeStopper({ timings, exited: ends.exited, endInput, signal, annotate, tree })
  watchNodeExit(child, { input, stderr, ended: ends.ended, stopper })
  const listenStdout = listenNodeStdout(child.stdout)

  // One plain Scope finalizer (no copy of the fiber's context, which `Effect.addFinalizer`
  // makes for every finalizer of every plugin a stop-all takes down): the stop sequence, then
  // the sweep of the group.
  yield* Scope.addFinalizer(yield* Effect.scope, Effect.andThen(stopper.stop(), sweepNode(child, pid, stderr, tree)))

  return assemble({
    spec,
    pid,
    startedAt,
    framing: timings.framing,
    stdout: stdoutStreamOf(listenStdout),
    listenStdout,
    writeLine: (line) => writeNodeLine(input, line),
    input: input.meter,
    endInput,
    ends,
    excerpt,
    stop: stopper.stop
  })
})

// ---------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------

/**
 * How plugin processes are started. The default goes through `effect/process`'s
 * `ChildProcessSpawner`; {@link layerNode} selects `node:child_process`.
 *
 * @category services
 */
export interface Launcher {
  readonly name: "spawner" | "node"
  readonly make: (spec: Spec, options?: Options) => Effect.Effect<
    PluginProcess,
    PluginClientError.PluginClientError,
    Scope.Scope | ChildProcessSpawner.ChildProcessSpawner
  >
}

/**
 * The launcher in use; `ChildProcessSpawner`-based unless a layer says otherwise.
 *
 * @category services
 */
export const Launcher: Context.Reference<Launcher> = Context.Reference<Launcher>("effect-plugin-host/PluginProcess/Launcher", {
  defaultValue: () => spawnerLauncher
})

/**
 * The default launcher: any `ChildProcessSpawner` (`NodeServices.layer`, or the in-memory
 * spawner in tests).
 *
 * @category launchers
 */
export const spawnerLauncher: Launcher = { name: "spawner", make: makeWithSpawner }

/**
 * The `node:child_process` launcher.
 *
 * @category launchers
 */
export const nodeLauncher: Launcher = { name: "node", make: makeWithNode }

/**
 * Starts every plugin process with `node:child_process` directly. Same contract (restricted
 * environment, own process group, stderr drained, bounded stop sequence on the Clock, exit as
 * data); less memory per plugin and less work per call. The in-memory spawner of
 * `effect-plugin-host/testing` needs the default launcher.
 *
 * @category launchers
 */
export const layerNode: Layer.Layer<never> = Layer.succeed(Launcher, nodeLauncher)

/**
 * Spawns a plugin process in the current Scope with the {@link Launcher} in use. Fails with a
 * `Spawn` reason when the executable cannot be started.
 *
 * @category constructors
 */
export const make = (spec: Spec, options?: Options): Effect.Effect<
  PluginProcess,
  PluginClientError.PluginClientError,
  Scope.Scope | ChildProcessSpawner.ChildProcessSpawner
> => Effect.flatMap(Effect.service(Launcher), (launcher) => launcher.make(spec, options))
