/**
 * The host's registry of the plugin processes it spawned: one file per host process,
 * `<runtime folder>/<host pid>.json` (`<host pid>-<thread id>.json` in a worker thread), listing each live plugin's pid, start time (from
 * `/proc/<pid>/stat`), process group and name, plus the host's own pid, start time and boot id.
 * A host that dies without closing its Scopes (SIGKILL, OOM kill, a crash of the runtime) leaves
 * the file behind: `Leftovers` reads it ({@link parse}) at the next host start and reaps what is
 * still alive.
 *
 * The file is a journal: its first line is a whole {@link RegistryFile} (written atomically: a
 * temporary file renamed over it), each later line one change — a spawn, appended at once, or a
 * removal, appended when the plugin's Scope closes (the removals of one event-loop turn in one
 * write, and at the latest when the process exits). Rewriting the whole list at every spawn made
 * a host that starts a thousand plugins write half a million entries, and each rename over the
 * old file made the filesystem flush it (ext4 does, for a replace by rename) while the host's
 * event loop waited. The journal is compacted (rewritten as one line) when its changes outnumber
 * its entries, and removed with the last entry. A line cut short by the host's death is the last
 * one and is ignored.
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
import * as Option from "effect/Option"
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
  /** The journal, open for appending (undefined until the first entry's snapshot, and after the last one left). */
  fd: number | undefined
  /** Change lines appended since the last snapshot. */
  changes: number
  /** Removed entries not yet written: appended together at the end of this turn of the event loop. */
  removed: Array<Removal>
}

/** One line of the journal after its first: an entry added, or the entry of `pid` started at `startTime` removed. */
type Change = { readonly add: Entry } | { readonly remove: Removal }
interface Removal {
  readonly pid: number
  readonly startTime: number
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
    fd: undefined,
    changes: 0,
    removed: []
  }
  // Removals still waiting for the end of a turn are written when the process exits.
  process.once("exit", () => writeRemovals(registry))
  own = registry
  return registry
}

const closeJournal = (registry: OwnRegistry): void => {
  if (registry.fd === undefined) return
  try {
    fs.closeSync(registry.fd)
  } catch {
    // Closed already.
  }
  registry.fd = undefined
}

/**
 * Writes the whole registry as the journal's first line, atomically (or removes it once empty),
 * and opens it for the changes that follow. A failed write loses nothing but the record.
 */
const snapshot = (registry: OwnRegistry): void => {
  closeJournal(registry)
  registry.changes = 0
  try {
    if (registry.entries.size === 0) return fs.rmSync(registry.file, { force: true })
    const content: RegistryFile = { host: registry.host, bootId: ProcStat.bootId(), processes: [...registry.entries.values()] }
    const temporary = `${registry.file}.tmp`
    fs.writeFileSync(temporary, JSON.stringify(content) + "\n", { mode: 0o600 })
    fs.renameSync(temporary, registry.file)
    registry.fd = fs.openSync(registry.file, "a")
  } catch {
    // The registry is a safety net: a host that cannot write it still runs its plugins.
  }
}

/** Appends changes to the journal (one write), or writes a snapshot when there is no journal yet or it grew too long. */
const append = (registry: OwnRegistry, changes: ReadonlyArray<Change>): void => {
  registry.changes += changes.length
  if (registry.fd === undefined || registry.entries.size === 0 || registry.changes > Math.max(64, 2 * registry.entries.size)) {
    return snapshot(registry)
  }
  try {
    fs.writeSync(registry.fd, changes.map((change) => JSON.stringify(change) + "\n").join(""))
  } catch {
    snapshot(registry)
  }
}

/** Writes the removals waiting for the end of the turn, if any. */
const writeRemovals = (registry: OwnRegistry): void => {
  if (registry.removed.length === 0) return
  const removed = registry.removed
  registry.removed = []
  append(registry, removed.map((removal) => ({ remove: removal })))
}

const decodeSnapshot = Schema.decodeUnknownOption(Schema.fromJsonString(RegistryFile))
const decodeChange = Schema.decodeUnknownOption(Schema.fromJsonString(Schema.Union([
  Schema.Struct({ add: Entry }),
  Schema.Struct({ remove: Schema.Struct({ pid: Schema.Number, startTime: Schema.Number }) })
])))

/**
 * The registry a file holds: its first line, with the changes of the lines after it applied (a
 * line that does not decode, the last one cut short by a host's death, is skipped). None when
 * the first line is not a registry.
 *
 * @internal
 */
export const parse = (text: string): Option.Option<RegistryFile> => {
  const [first = "", ...changes] = text.split("\n")
  return Option.map(decodeSnapshot(first), (registry) => {
    const processes = new Map(registry.processes.map((entry) => [entry.pid, entry] as const))
    for (const line of changes) {
      const change = line === "" ? Option.none() : decodeChange(line)
      if (Option.isNone(change)) continue
      if ("add" in change.value) processes.set(change.value.add.pid, change.value.add)
      else if (processes.get(change.value.remove.pid)?.startTime === change.value.remove.startTime) processes.delete(change.value.remove.pid)
    }
    return { ...registry, processes: [...processes.values()] }
  })
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
  cgroup?: string | undefined,
  /** `/proc/<pid>/stat` as the launcher just read it (read here otherwise). */
  knownStat?: ProcStat.ProcStat | undefined
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    if (!guards.registry) return Effect.void
    return Effect.flatMap(Effect.scope, (scope) => {
      const registry = ownRegistry()
      const stat = knownStat ?? ProcStat.readStat(pid)
      if (registry === undefined || stat === undefined) return Effect.void
      const entry: Entry = { plugin, pid, startTime: stat.startTime, pgid: stat.pgid, ...(cgroup === undefined ? {} : { cgroup }) }
      registry.entries.set(pid, entry)
      append(registry, [{ add: entry }])
      return Scope.addFinalizer(scope, Effect.sync(() => {
        if (registry.entries.get(pid)?.startTime !== stat.startTime) return
        registry.entries.delete(pid)
        // A record of a process that is gone is harmless (the reaper checks start times), so the
        // removals of one turn are written together: a stop-all writes the file a few times, not
        // once per plugin.
        registry.removed.push({ pid, startTime: stat.startTime })
        if (registry.removed.length === 1) setImmediate(writeRemovals, registry)
      }))
    })
  })
