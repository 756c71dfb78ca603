/**
 * The host's registry of the plugin processes it spawned: one file per host process,
 * `<runtime folder>/<host pid>.json` (`<host pid>-<thread id>.json` in a worker thread), listing each live plugin's pid, start time (from
 * `/proc/<pid>/stat`), process group and name, plus the host's own pid, start time and boot id.
 * It is rewritten atomically (a temporary file renamed over it) when a plugin is spawned (at once)
 * and when its Scope closes (the removals of one event-loop turn together, and at the latest when
 * the process exits), and removed with the last entry. A host that dies without closing its
 * Scopes (SIGKILL, OOM kill, a crash of the runtime) leaves the file behind: `Leftovers` reads it
 * at the next host start and reaps what is still alive.
 *
 * The runtime folder is `$XDG_RUNTIME_DIR/effect-plugin-host` (per user, cleared at logout and
 * reboot), or `<tmpdir>/effect-plugin-host-<uid>`; it is only used when it is a directory owned
 * by this user that nobody else can write (a planted record could otherwise name this user's
 * processes for killing).
 *
 * {@link HostDeathGuards} switches the registry and the parent-death signal; both are off for the
 * in-memory spawner of `effect-plugin-host/testing` (its pids are not processes), which marks
 * itself with {@link markSimulated}.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { threadId } from "node:worker_threads"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as ProcStat from "./procStat.ts"

/**
 * What the launchers do so that no plugin outlives a host that dies: arm the parent-death signal
 * (see `parentDeath.ts`) and record each spawned process in the registry.
 *
 * @internal
 */
export interface HostDeathGuards {
  readonly parentDeathSignal: boolean
  readonly registry: boolean
}

/**
 * The guards in use: both on unless a layer says otherwise.
 *
 * @internal
 */
export const HostDeathGuards: Context.Reference<HostDeathGuards> = Context.Reference<HostDeathGuards>(
  "effect-plugin-host/internal/spawnRegistry/HostDeathGuards",
  { defaultValue: () => ({ parentDeathSignal: true, registry: true }) }
)

const simulatedSpawners = new WeakSet<object>()

/**
 * Marks a `ChildProcessSpawner` whose processes are simulated (the in-memory spawner): the
 * launcher arms no parent-death signal and records nothing for them.
 *
 * @internal
 */
export const markSimulated = (spawner: object): void => void simulatedSpawners.add(spawner)

/**
 * Whether `spawner`'s processes are simulated: nothing is spawned for real, so nothing is wrapped
 * (no parent-death signal, no cgroup entry) or recorded.
 *
 * @internal
 */
export const isSimulated = (spawner: object): boolean => simulatedSpawners.has(spawner)

const guardsOff: HostDeathGuards = { parentDeathSignal: false, registry: false }

/**
 * The guards for processes started by `spawner`: off for a simulated one, else those in use.
 *
 * @internal
 */
export const guardsFor = (spawner: object): Effect.Effect<HostDeathGuards> =>
  isSimulated(spawner) ? Effect.succeed(guardsOff) : Effect.service(HostDeathGuards)

/**
 * One spawned process in a registry file.
 *
 * @internal
 */
export const Entry = Schema.Struct({
  plugin: Schema.String,
  pid: Schema.Number,
  /** Clock ticks since boot, field 22 of `/proc/<pid>/stat`. */
  startTime: Schema.Number,
  pgid: Schema.Number,
  /** The plugin's cgroup (its absolute folder under `/sys/fs/cgroup`), where the host made one for it. */
  cgroup: Schema.optionalKey(Schema.String)
})

/** @internal */
export type Entry = typeof Entry.Type

/**
 * A registry file: the host that wrote it (pid and start time, in the boot `bootId`) and what it
 * had spawned and not yet seen gone.
 *
 * @internal
 */
export const RegistryFile = Schema.Struct({
  host: Schema.Struct({ pid: Schema.Number, startTime: Schema.Number }),
  bootId: Schema.String,
  processes: Schema.Array(Entry)
})

/** @internal */
export type RegistryFile = typeof RegistryFile.Type

const ownedPrivateDirectory = (dir: string): boolean => {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    const stat = fs.lstatSync(dir)
    const uid = process.getuid?.()
    return stat.isDirectory() && (uid === undefined || stat.uid === uid) && (stat.mode & 0o022) === 0
  } catch {
    return false
  }
}

/**
 * The runtime folder registries are kept in, from `env` (`XDG_RUNTIME_DIR`) or the OS temporary
 * folder.
 *
 * @internal
 */
export const defaultDirectory = (env: Readonly<Record<string, string | undefined>> = process.env): string => {
  const runtime = env["XDG_RUNTIME_DIR"]
  return runtime !== undefined && runtime !== "" && path.isAbsolute(runtime)
    ? path.join(runtime, "effect-plugin-host")
    : path.join(os.tmpdir(), `effect-plugin-host-${process.getuid?.() ?? "user"}`)
}

/**
 * The folder if it can be trusted (created when missing), else `undefined`.
 *
 * @internal
 */
export const usableDirectory = (dir: string): string | undefined => ownedPrivateDirectory(dir) ? dir : undefined

/** The registry of this host process: where it is written and what it lists now. */
interface OwnRegistry {
  readonly file: string
  readonly host: RegistryFile["host"]
  readonly entries: Map<number, Entry>
  /** A write of removed entries is due at the end of this turn of the event loop. */
  saveScheduled: boolean
}

/** Not opened yet (`undefined`), or no usable registry on this machine (`null`). */
let own: OwnRegistry | undefined | null

/**
 * The file of this host: `<pid>.json`, or `<pid>-<thread id>.json` for a host running in a worker
 * thread (threads share the pid, each has its own module state).
 */
const registryFileName = (): string => threadId === 0 ? `${process.pid}.json` : `${process.pid}-${threadId}.json`

/**
 * The names of registry files, as {@link registryFileName} makes them.
 *
 * @internal
 */
export const registryFilePattern = /^\d+(?:-\d+)?\.json$/

/** This host's registry, opened on first use; `undefined` where there is no usable folder or `/proc`. */
const ownRegistry = (): OwnRegistry | undefined => {
  if (own !== undefined) return own ?? undefined
  const dir = usableDirectory(defaultDirectory())
  const self = ProcStat.readStat(process.pid)
  if (dir === undefined || self === undefined) {
    own = null
    return undefined
  }
  const registry: OwnRegistry = {
    file: path.join(dir, registryFileName()),
    host: { pid: process.pid, startTime: self.startTime },
    entries: new Map(),
    saveScheduled: false
  }
  // Removals still waiting for the end of a turn are written when the process exits.
  process.once("exit", () => {
    if (registry.saveScheduled) save(registry)
  })
  own = registry
  return registry
}

/** Writes the registry atomically (or removes it once empty). A failed write loses nothing but the record. */
const save = (registry: OwnRegistry): void => {
  registry.saveScheduled = false
  try {
    if (registry.entries.size === 0) return fs.rmSync(registry.file, { force: true })
    const content: RegistryFile = { host: registry.host, bootId: ProcStat.bootId(), processes: [...registry.entries.values()] }
    const temporary = `${registry.file}.tmp`
    fs.writeFileSync(temporary, JSON.stringify(content), { mode: 0o600 })
    fs.renameSync(temporary, registry.file)
  } catch {
    // The registry is a safety net: a host that cannot write it still runs its plugins.
  }
}

/**
 * Records a spawned process in this host's registry for as long as the current Scope is open
 * (closing it, after the launcher's stop and sweep, removes the record), with the cgroup the host
 * made for it if any (its absolute folder under `/sys/fs/cgroup`). Does nothing when the
 * registry is switched off, unusable, or the process is already gone.
 *
 * @internal
 */
export const track = (
  plugin: string,
  pid: number,
  guards: HostDeathGuards,
  cgroup?: string | undefined
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    if (!guards.registry) return Effect.void
    return Effect.flatMap(Effect.scope, (scope) => {
      const registry = ownRegistry()
      const stat = ProcStat.readStat(pid)
      if (registry === undefined || stat === undefined) return Effect.void
      registry.entries.set(pid, { plugin, pid, startTime: stat.startTime, pgid: stat.pgid, ...(cgroup === undefined ? {} : { cgroup }) })
      save(registry)
      return Scope.addFinalizer(scope, Effect.sync(() => {
        if (registry.entries.get(pid)?.startTime !== stat.startTime) return
        registry.entries.delete(pid)
        // A record of a process that is gone is harmless (the reaper checks start times), so the
        // removals of one turn are written together: a stop-all writes the file a few times, not
        // once per plugin.
        if (!registry.saveScheduled) {
          registry.saveScheduled = true
          setImmediate(() => {
            if (registry.saveScheduled) save(registry)
          })
        }
      }))
    })
  })
