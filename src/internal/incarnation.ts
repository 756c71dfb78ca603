/**
 * One incarnation of a plugin: one spawned process, its connection, its generation. This module
 * owns how an incarnation begins ({@link launch}: verify the executable, spawn, connect, run the
 * handshake) and how it ends ({@link teardown}: the full stop sequence, or at once after a crash),
 * and nothing in between: what its events mean is the lifecycle's (`lifecycle.ts`) to decide.
 *
 * A launch that fails, or is interrupted (a stop abandoning it), tears its own process down
 * before it ends, so the lifecycle can count on "no launch result, no process".
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import type * as Semaphore from "effect/Semaphore"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Duration from "effect/Duration"
import type * as Handshake from "../Handshake.ts"
import type * as JsonRpc from "../JsonRpc.ts"
import type * as LifetimePolicy from "../LifetimePolicy.ts"
import * as PluginClientError from "../PluginClientError.ts"
import * as PluginProcess from "../PluginProcess.ts"
import * as RpcPeer from "../RpcPeer.ts"
import { formatDuration } from "./formatDuration.ts"
import * as Protocol from "./protocol.ts"

/** One spawned, handshaken process. */
export interface Incarnation {
  readonly generation: number
  readonly scope: Scope.Closeable
  readonly process: PluginProcess.PluginProcess
  readonly peer: RpcPeer.RpcPeer
  readonly supportedMethods: ReadonlyArray<string> | undefined
}

/** What every launch of one plugin shares. */
export interface Launcher {
  readonly name: string
  readonly policy: LifetimePolicy.LifetimePolicy
  readonly handshake: Handshake.Handshake
  /** Resolves (and checks the checksum of) the executable, before every spawn. */
  readonly verify: Effect.Effect<string, PluginClientError.Reason>
  readonly args: ReadonlyArray<string> | undefined
  readonly allowedEnvVars: ReadonlyArray<string> | undefined
  readonly unsafeEnvVars: ReadonlyArray<string> | undefined
  readonly env: Readonly<Record<string, string>> | undefined
  readonly cwd: string | undefined
  readonly hostEnv: Readonly<Record<string, string | undefined>> | undefined
  /** The level stderr lines are logged at; default the process's (`Debug`). */
  readonly stderrLogLevel: Handshake.StderrLogLevel | undefined
  readonly hostHandlers: RpcPeer.HostHandlers | undefined
  readonly onNotification: (notification: JsonRpc.Notification) => Effect.Effect<void>
  /** The scope every incarnation's own scope is forked from. */
  readonly parent: Scope.Scope
  readonly spawner: ChildProcessSpawner.ChildProcessSpawner["Service"]
  /** A manager's cap on concurrent spawns, held from spawn to the end of the handshake. */
  readonly spawnPermits: Semaphore.Semaphore | undefined
  readonly spawned: Metric.Metric<number, unknown>
  /** A request sent as the graceful first step of stopping. */
  readonly shutdownRequest: string | undefined
}

/**
 * Why a handshake failed, as the `detail` of `InitFailed`. The stderr excerpt is left out: the
 * `InitFailed` carries it (read after the process is stopped), and its message appends it.
 */
const handshakeFailure = (method: string, initTimeout: Duration.Duration, reason: PluginClientError.Reason): string => {
  switch (reason._tag) {
    case "Timeout":
      return `no answer to \`${method}\` within ${formatDuration(initTimeout)}`
    case "Exited":
      return reason.summary
    default:
      return reason.message
  }
}

const runHandshake = (launcher: Launcher, peer: RpcPeer.RpcPeer): Effect.Effect<Handshake.HandshakeInfo, string> => {
  const handshake = launcher.handshake
  if (handshake._tag === "None") return Effect.succeed({})
  const initTimeout = launcher.policy.initTimeout
  return peer.request(handshake.method, handshake.params, { timeout: initTimeout }).pipe(
    Effect.catch((error) =>
      handshake.acceptErrorReplies && error.reason._tag === "PluginError" ? Effect.succeed(undefined) : Effect.fail(error)
    ),
    Effect.mapError((error) => handshakeFailure(handshake.method, initTimeout, error.reason)),
    Effect.flatMap(handshake.validate),
    Effect.tap(() =>
      handshake.afterwards === undefined
        ? Effect.void
        : peer.notify(handshake.afterwards.method, handshake.afterwards.params).pipe(Effect.mapError((e) => e.reason.message))
    )
  )
}

/** Spawns the process and builds its connection, in `scope`. */
const connect = (launcher: Launcher, executable: string, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const policy = launcher.policy
    const process = yield* PluginProcess.make({
      name: launcher.name,
      executable,
      args: launcher.args,
      allowedEnvVars: launcher.allowedEnvVars,
      unsafeEnvVars: launcher.unsafeEnvVars,
      env: policy.framing === "content-length" ? { [Protocol.framingVariable]: policy.framing, ...launcher.env } : launcher.env,
      cwd: launcher.cwd,
      hostEnv: launcher.hostEnv
    }, {
      shutdownGrace: policy.shutdownGrace,
      drainTimeout: policy.drainTimeout,
      stderrLogLevel: launcher.stderrLogLevel,
      framing: policy.framing,
      containment: policy.containment
    })
    yield* Metric.update(launcher.spawned, 1)
    const peer = yield* RpcPeer.make(RpcPeer.fromProcess(process), {
      maxConcurrentRequests: policy.maxConcurrentRequests,
      requestTimeout: policy.requestTimeout,
      maxRequestTimeout: policy.maxRequestTimeout,
      maxLineBytes: policy.maxLineBytes,
      maxQueuedBytes: policy.maxQueuedBytes,
      cancellation: policy.cancellation,
      // Parsed notifications take several times the bytes of their lines.
      maxQueuedNotificationBytes: Math.floor(policy.maxQueuedBytes / 4),
      hostHandlers: launcher.hostHandlers,
      onNotification: launcher.onNotification
    })
    return { process, peer }
  }).pipe(
    Scope.provide(scope),
    Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, launcher.spawner),
    Effect.mapError((error) => error.reason)
  )

/**
 * Launches generation `generation`: verify, spawn, connect, handshake. Fails with the reason
 * (`ChecksumMismatch`, `Spawn`, `InitFailed` with the stderr excerpt…) after tearing down what
 * it started; interrupted, it tears it down too. `onSpawned` is told once the process runs.
 */
export const launch = (launcher: Launcher, generation: number, onSpawned: () => void): Effect.Effect<Incarnation, PluginClientError.Reason> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const executable = yield* restore(launcher.verify)
      const scope = yield* Scope.fork(launcher.parent, "sequential")
      const built = yield* restore(connect(launcher, executable, scope)).pipe(Effect.onExit((exit) =>
        Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, Exit.void)
      ))
      onSpawned()
      const info = yield* restore(runHandshake(launcher, built.peer)).pipe(
        Effect.onInterrupt(() => Scope.close(scope, Exit.void)),
        Effect.catch((detail) =>
          Effect.gen(function*() {
            const stderrExcerpt = yield* built.process.stderrExcerpt
            yield* built.process.stop()
            yield* Scope.close(scope, Exit.void)
            return yield* Effect.fail(new PluginClientError.InitFailed({ detail, stderrExcerpt }))
          })
        )
      )
      return { generation, scope, process: built.process, peer: built.peer, supportedMethods: info.supportedMethods }
    })
  ).pipe(
    (effect) => launcher.spawnPermits === undefined ? effect : launcher.spawnPermits.withPermits(1)(effect),
    // The span's fibers (the connection's) live as long as the plugin runs and keep it: no stack
    // trace is captured for it, which would only ever point at this line.
    Effect.withSpan("PluginClient.spawn", { attributes: { plugin: launcher.name } }, { captureStackTrace: false })
  )

/**
 * Ends an incarnation: the full stop sequence when `graceful` (the shutdown request, if any,
 * drain, SIGTERM, grace, SIGKILL), else straight to SIGTERM (a crashed process has nothing left
 * to say). Returns the stderr excerpt it left.
 */
export const teardown = (launcher: Launcher, incarnation: Incarnation, graceful: boolean): Effect.Effect<string> =>
  Effect.gen(function*() {
    const request = launcher.shutdownRequest
    const gracefully = graceful && request !== undefined
      ? incarnation.peer.request(request, undefined, { timeout: launcher.policy.drainTimeout })
      : undefined
    yield* incarnation.process.stop({ graceful: gracefully })
    const stderr = yield* incarnation.process.stderrExcerpt
    yield* Scope.close(incarnation.scope, Exit.void)
    return stderr
  }).pipe(Effect.uninterruptible)
