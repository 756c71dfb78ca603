/**
 * One plugin process, owned by a `Scope`: spawned without a shell, with a restricted
 * environment, its stderr always drained, its stdin fed from a queue, and a stop sequence that
 * always ends.
 *
 * The environment is exactly the allow-listed variables that exist in the host environment
 * plus explicit extra variables — nothing else leaks. stderr is read for the whole life of the
 * process (a plugin that writes megabytes to stderr can never block on a full pipe): each line
 * is logged with the plugin's name and kept in a bounded excerpt for error messages and health.
 *
 * Stopping (explicitly with `stop`, or by closing the Scope) runs, each step bounded:
 * optional graceful hook (for example a `shutdown` request, up to `drainTimeout`) → end stdin →
 * SIGTERM to the process group → `shutdownGrace` → SIGKILL to the group → wait for exit. The
 * grace periods use Effect's Clock, so `TestClock` drives them against the in-memory spawner.
 * The exit is observed as data ({@link ProcessExit}): code or signal, and whether the host asked
 * for it.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as PlatformError from "effect/PlatformError"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcess from "effect/process/ChildProcess"
import type * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Framing from "./Framing.ts"
import * as PluginClientError from "./PluginClientError.ts"

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
 * What to run and how.
 *
 * @category models
 */
export interface Spec {
  /** The plugin's name, used in logs and errors. */
  readonly name: string
  /** Path or command name of the executable; started directly, never through a shell. */
  readonly executable: string
  readonly args?: ReadonlyArray<string> | undefined
  readonly cwd?: string | undefined
  /** Names of host variables the plugin may see (only those that exist are passed). */
  readonly allowedEnvVars?: ReadonlyArray<string> | undefined
  /** Extra fixed variables, passed as given (they win over allow-listed ones). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** The host environment to pick allow-listed variables from; defaults to `process.env`. */
  readonly hostEnv?: Readonly<Record<string, string | undefined>> | undefined
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
  /**
   * The process's stdout. It has exactly one reader (the connection built on top); reading
   * it twice splits the bytes between the readers.
   */
  readonly stdout: Stream.Stream<Uint8Array, PlatformError.PlatformError>
  /**
   * Queues one line (without newline) for stdin. Lines queued in one burst are written with
   * one write. Returns false once stdin is closed.
   */
  readonly writeLine: (line: string) => boolean
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
 * The environment a plugin gets: the allow-listed names present in `hostEnv`, plus `extra`.
 *
 * @category constructors
 */
export const restrictedEnv = (
  allowed: ReadonlyArray<string>,
  hostEnv: Readonly<Record<string, string | undefined>>,
  extra?: Readonly<Record<string, string>>
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const name of allowed) {
    const value = hostEnv[name]
    if (value !== undefined) env[name] = value
  }
  if (extra !== undefined) Object.assign(env, extra)
  return env
}

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

/**
 * Spawns a plugin process in the current Scope. Fails with a `Spawn` reason when the
 * executable cannot be started.
 *
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(spec: Spec, options?: Options): Effect.fn.Return<
  PluginProcess,
  PluginClientError.PluginClientError,
  Scope.Scope | ChildProcessSpawner.ChildProcessSpawner
> {
  const shutdownGrace = Duration.fromInputUnsafe(options?.shutdownGrace ?? "10 seconds")
  const drainTimeout = Duration.fromInputUnsafe(options?.drainTimeout ?? "10 seconds")
  const killTimeout = Duration.fromInputUnsafe(options?.killTimeout ?? "2 seconds")
  const excerptChars = options?.stderrExcerptChars ?? 8_000
  const stderrLogLevel = options?.stderrLogLevel ?? "Debug"
  const env = restrictedEnv(spec.allowedEnvVars ?? [], spec.hostEnv ?? process.env, spec.env)

  const command = ChildProcess.make(spec.executable, [...(spec.args ?? [])], {
    cwd: spec.cwd,
    env,
    extendEnv: false,
    // Own process group, so signals reach grandchildren too.
    detached: true,
    killSignal: "SIGTERM",
    // Safety net for the spawner's own release (group members left after our stop sequence).
    forceKillAfter: "200 millis"
  })
  const handle = yield* command.pipe(
    Effect.mapError((error) =>
      PluginClientError.make(spec.name, new PluginClientError.Spawn({ path: spec.executable, detail: error.message }))
    )
  )
  const startedAt = yield* Clock.currentTimeMillis
  const pid: number = handle.pid
  const annotate = Effect.annotateLogs({ plugin: spec.name, pid })

  // stderr: drained for the whole life of the process.
  let stderrText = ""
  const appendStderr = (line: string) => {
    stderrText += line + "\n"
    if (stderrText.length > excerptChars * 2) stderrText = stderrText.slice(-excerptChars)
  }
  const stderrDone = yield* Deferred.make<void>()
  const logStderr = stderrLogLevel === "None" ? undefined : Effect.logWithLevel(stderrLogLevel)
  yield* handle.stderr.pipe(
    Framing.frames({ maxLineBytes: 64 * 1024 }),
    Stream.runForEach((frame) => {
      const line = typeof frame === "string" ? frame : `[stderr line of ${frame.bytes}+ bytes cut]`
      appendStderr(line)
      return logStderr === undefined ? Effect.void : logStderr(line).pipe(Effect.annotateLogs({ stream: "stderr" }))
    }),
    Effect.catchCause(() => Effect.void),
    Effect.ensuring(Deferred.succeed(stderrDone, undefined)),
    annotate,
    Effect.forkScoped
  )
  const stderrExcerpt = Effect.sync(() => stderrText.slice(-excerptChars))

  // stdin: one writer fiber, one write per burst of queued lines.
  const outbound = yield* Queue.unbounded<string, Cause.Done>()
  const inputFailed = yield* Deferred.make<string>()
  const exited = yield* Deferred.make<ProcessExit>()
  const ended = yield* Deferred.make<ProcessEnd>()
  yield* Stream.fromQueue(outbound).pipe(
    Stream.mapArray((lines) => [Framing.encodeLines(lines)] as const),
    Stream.run(handle.stdin),
    Effect.catchCause((cause) => {
      const detail = Cause.pretty(cause).split("\n")[0] ?? "write failed"
      return Deferred.succeed(inputFailed, detail).pipe(
        Effect.andThen(Deferred.await(exited).pipe(Effect.timeoutOption("200 millis"))),
        Effect.flatMap((exit) =>
          exit._tag === "None" ? Deferred.succeed(ended, { _tag: "InputFailed", detail }) : Effect.void
        )
      )
    }),
    Effect.forkScoped
  )
  const writeLine = (line: string) => Queue.offerUnsafe(outbound, line)
  const endInput = Effect.asVoid(Queue.end(outbound))

  // exit, observed as data.
  let stopping = false
  yield* handle.exitCode.pipe(
    Effect.map((code): ProcessExit => ({ code, signal: null, requested: stopping })),
    Effect.catch((error) => Effect.succeed<ProcessExit>({ code: null, signal: signalOf(error), requested: stopping })),
    // Let the last stderr lines land in the excerpt (bounded: a grandchild may hold stderr open).
    Effect.tap(() => Deferred.await(stderrDone).pipe(Effect.timeoutOption("200 millis"))),
    Effect.flatMap((exit) =>
      Deferred.succeed(exited, exit).pipe(Effect.andThen(Deferred.succeed(ended, { _tag: "Exited", exit })))
    ),
    Effect.forkScoped
  )
  const exitNow = Deferred.poll(exited).pipe(
    Effect.flatMap(Option.match({ onNone: () => Effect.succeedNone, onSome: Effect.asSome }))
  )

  const isRunning = Effect.map(Deferred.isDone(exited), (done) => !done)
  const stopResult = yield* Deferred.make<ProcessExit>()
  // Signals the group and waits for the leader. The spawner's `kill` would also wait up to a
  // second for killed grandchildren to be reaped by init; the leader's exit is what matters here,
  // and the spawner's release cleans up the rest of the group.
  // Only our own exit watcher decides that the process is gone: `kill` of a process that has
  // just exited fails at once (nothing to signal) while its exit is still being recorded.
  const signal = (killSignal: "SIGTERM" | "SIGKILL") =>
    Effect.raceFirst(handle.kill({ killSignal }).pipe(Effect.ignore, Effect.andThen(Effect.never)), Deferred.await(exited))
  const stopSequence = (graceful: Effect.Effect<unknown, unknown> | undefined) =>
    Effect.gen(function*() {
      if (graceful !== undefined && (yield* isRunning)) {
        yield* graceful.pipe(
          Effect.ignore,
          Effect.andThen(endInput),
          Effect.andThen(Deferred.await(exited)),
          Effect.timeoutOption(drainTimeout)
        )
      }
      yield* endInput
      if (yield* isRunning) {
        yield* Effect.logDebug("stopping: SIGTERM")
        yield* signal("SIGTERM").pipe(Effect.timeoutOption(shutdownGrace))
      }
      if (yield* isRunning) {
        yield* Effect.logWarning(`did not exit within ${Duration.format(shutdownGrace)} of SIGTERM; sending SIGKILL`)
        yield* signal("SIGKILL").pipe(Effect.timeoutOption(killTimeout))
      }
      const exit = yield* Deferred.await(exited).pipe(Effect.timeoutOption(killTimeout))
      if (Option.isNone(exit)) {
        yield* Effect.logError("still running after SIGKILL; giving up on it")
        return { code: null, signal: "SIGKILL", requested: true } satisfies ProcessExit
      }
      return exit.value
    }).pipe(annotate)

  const stop = (stopOptions?: { readonly graceful?: Effect.Effect<unknown, unknown> | undefined }) =>
    Effect.suspend(() => {
      if (stopping) return Deferred.await(stopResult)
      stopping = true
      return stopSequence(stopOptions?.graceful).pipe(
        Effect.tap((exit) => Deferred.succeed(stopResult, exit))
      )
    }).pipe(Effect.uninterruptible)

  // Registered last, so it runs first at Scope close: before the readers are interrupted and
  // before the spawner's own release.
  yield* Effect.addFinalizer(() => stop())

  return {
    name: spec.name,
    pid,
    startedAt,
    stdout: handle.stdout,
    writeLine,
    endInput,
    inputFailure: Deferred.await(inputFailed),
    ended: Deferred.await(ended),
    stderrExcerpt,
    exit: Deferred.await(exited),
    exitNow,
    stop
  }
})
