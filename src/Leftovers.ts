/**
 * What a host that died left running, and its reaping. Every host records the plugin processes
 * it spawns in a registry file of its own (see the README's "Security and containment"); a host
 * that is SIGKILLed (or OOM-killed, or crashes in its runtime) cannot close its Scopes, so its
 * file stays behind. {@link reap} reads the files of hosts that are no longer alive — a host is
 * alive only if its pid exists with the start time it recorded, in the same boot — and ends what
 * they list that is still running: each plugin's process group gets SIGTERM, `grace` later
 * SIGKILL.
 *
 * A reused pid is never hit: a process is only a leftover if its start time (field 22 of
 * `/proc/<pid>/stat`) is the recorded one. Members of a plugin's process group whose leader has
 * exited (a grandchild of a plugin that exited on stdin EOF) are leftovers when they started no
 * earlier than the leader did; the kernel keeps a pid from being reused while a group of that id
 * has members, so a live group whose id is a recorded plugin's pid is that plugin's group unless
 * the pid was freed, reused by a new session leader that then exited leaving its own group
 * behind — the one case the start times cannot tell apart. Processes that left the group
 * (`setsid`) are found only where the host recorded a cgroup for the plugin: every process of it
 * is a leftover, and the cgroup is killed as a whole (`cgroup.kill`) at the SIGKILL step and
 * removed once empty.
 *
 * `PluginManager` runs {@link reapAtStart} (once per host process) in the background when it is
 * built, and `plugin-host doctor` waits for it and reports the result ({@link reapedSoFar}).
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as ProcStat from "./internal/procStat.ts"
import * as SpawnRegistry from "./internal/spawnRegistry.ts"

// ---------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------

/**
 * A process a dead host left running: the plugin it belonged to, its pid, and whether reaping
 * ended it (`false`: it was still running after SIGKILL, for example another user's process).
 *
 * @category models
 */
export const Leftover = Schema.Struct({
  plugin: Schema.String,
  pid: Schema.Number,
  reaped: Schema.Boolean
})

/**
 * @category models
 */
export type Leftover = typeof Leftover.Type

/**
 * Where to look and how long to wait.
 *
 * @category models
 */
export interface ReapOptions {
  /** The runtime folder of the registries. Default: `$XDG_RUNTIME_DIR/effect-plugin-host`, or the OS tmpdir. */
  readonly directory?: string | undefined
  /** Time between SIGTERM and SIGKILL. Default 2 s. */
  readonly grace?: Duration.Input | undefined
}

// ---------------------------------------------------------------------------------------------
// finding
// ---------------------------------------------------------------------------------------------

/**
 * A leftover found in a registry: the process, and what a signal for it goes to — its plugin's
 * process group, or the process alone (a member of the plugin's cgroup outside that group).
 */
interface Found {
  readonly plugin: string
  readonly pid: number
  readonly startTime: number
  /** `-pgid` for a group, the pid for the process alone (as `process.kill` takes them). */
  readonly target: number
  /** The plugin's cgroup, killed as a whole at the SIGKILL step. */
  readonly cgroup: string | undefined
}

const readRegistry = (file: string): Option.Option<SpawnRegistry.RegistryFile> => {
  try {
    return SpawnRegistry.parse(fs.readFileSync(file, "utf8"))
  } catch {
    return Option.none()
  }
}

/** The host that wrote `registry` still runs (same boot, same pid, same start time). */
const hostAlive = (registry: SpawnRegistry.RegistryFile): boolean => {
  const host = ProcStat.readStat(registry.host.pid)
  return registry.bootId === ProcStat.bootId() && ProcStat.isLive(host) && host.startTime === registry.host.startTime
}

const cgroupRoot = "/sys/fs/cgroup/"

/** The pids in a recorded cgroup (a folder under `/sys/fs/cgroup`), none when it is gone. */
const cgroupPids = (cgroup: string | undefined): ReadonlySet<number> => {
  if (cgroup === undefined || !path.isAbsolute(cgroup) || !path.normalize(cgroup).startsWith(cgroupRoot)) return new Set()
  try {
    return new Set(fs.readFileSync(path.join(cgroup, "cgroup.procs"), "utf8").split("\n").filter((l) => l !== "").map(Number))
  } catch {
    return new Set()
  }
}

/**
 * The live processes of one recorded plugin: the plugin itself if its start time matches, the
 * members of its process group that started no earlier (see the module header), and, where the
 * host made one, every process of its cgroup (which `setsid` does not leave) that started no
 * earlier. A pid now held by a different process means the group died out before it could be
 * reused: nothing of the group is left.
 */
const survivorsOf = (entry: SpawnRegistry.Entry, stats: ReadonlyArray<ProcStat.ProcStat>): Array<Found> => {
  const leader = stats.find((stat) => stat.pid === entry.pid)
  const pidReused = leader !== undefined && leader.startTime !== entry.startTime
  const ownGroup = ProcStat.readStat(process.pid)?.pgid
  const inCgroup = cgroupPids(entry.cgroup)
  const inGroup = (stat: ProcStat.ProcStat) =>
    !pidReused && entry.pgid === entry.pid && stat.pgid === entry.pgid && stat.pgid !== ownGroup
  return stats
    .filter((stat) =>
      ProcStat.isLive(stat) && stat.pid !== process.pid && stat.startTime >= entry.startTime &&
      ((stat.pid === entry.pid && !pidReused) || inGroup(stat) || inCgroup.has(stat.pid))
    )
    .map((stat) => ({
      plugin: entry.plugin,
      pid: stat.pid,
      startTime: stat.startTime,
      target: inGroup(stat) ? -entry.pgid : stat.pid,
      cgroup: inCgroup.size > 0 ? entry.cgroup : undefined
    }))
}

/** The same process still runs (not a zombie, not a newer process on its pid). */
const stillRunning = (found: Found): boolean => {
  const stat = ProcStat.readStat(found.pid)
  return ProcStat.isLive(stat) && stat.startTime === found.startTime
}

// ---------------------------------------------------------------------------------------------
// reaping
// ---------------------------------------------------------------------------------------------

const sendSignal = (target: number, signal: "SIGTERM" | "SIGKILL"): void => {
  try {
    process.kill(target, signal)
  } catch {
    // Gone meanwhile, or not ours to signal: reported as not reaped if it stays.
  }
}

/** Ends a recorded cgroup at once, new forks included (`cgroup.kill`, Linux 5.14+). */
const killCgroup = (cgroup: string): void => {
  try {
    fs.writeFileSync(path.join(cgroup, "cgroup.kill"), "1")
  } catch {
    // An older kernel, or the cgroup is gone: the per-process SIGKILL stands.
  }
}

/** Signals the leftovers still running (each checked again just before), each group once. */
const signalAll = (found: ReadonlyArray<Found>, signal: "SIGTERM" | "SIGKILL"): void => {
  const targets = new Set<number>()
  for (const leftover of found) {
    if (!stillRunning(leftover) || targets.has(leftover.target)) continue
    targets.add(leftover.target)
    sendSignal(leftover.target, signal)
    if (leftover.target < 0 && stillRunning(leftover) && signal === "SIGKILL") sendSignal(leftover.pid, signal)
  }
  if (signal === "SIGKILL") for (const cgroup of new Set(found.flatMap((f) => f.cgroup ?? []))) killCgroup(cgroup)
}

/** Polls (on the Clock) until none of `found` runs or `within` passes. */
const awaitGone = (found: ReadonlyArray<Found>, within: Duration.Duration): Effect.Effect<void> =>
  Effect.gen(function*() {
    const rounds = Math.max(1, Math.ceil(Duration.toMillis(within) / 50))
    for (let round = 0; round < rounds && found.some(stillRunning); round++) yield* Effect.sleep("50 millis")
  })

const killTimeout = Duration.seconds(1)

/** SIGTERM, `grace`, SIGKILL, then what is left. */
const endAll = (found: ReadonlyArray<Found>, grace: Duration.Duration): Effect.Effect<Array<Leftover>> =>
  Effect.gen(function*() {
    signalAll(found, "SIGTERM")
    yield* awaitGone(found, grace)
    if (found.some(stillRunning)) {
      signalAll(found, "SIGKILL")
      yield* awaitGone(found, killTimeout)
    }
    return found.map((leftover) => ({ plugin: leftover.plugin, pid: leftover.pid, reaped: !stillRunning(leftover) }))
  })

/** Removes the emptied cgroups of a reaped registry (a cgroup with processes cannot be removed). */
const removeCgroups = (registry: SpawnRegistry.RegistryFile): void => {
  for (const entry of registry.processes) {
    if (entry.cgroup === undefined || cgroupPids(entry.cgroup).size > 0 || !path.normalize(entry.cgroup).startsWith(cgroupRoot)) continue
    try {
      fs.rmdirSync(entry.cgroup)
    } catch {
      // Already removed, or not empty yet: the next reaping tries again.
    }
  }
}

/** The registry files of `directory` whose hosts are gone, with their contents. */
const deadRegistries = (directory: string): Array<{ readonly file: string; readonly registry: SpawnRegistry.RegistryFile }> => {
  let names: Array<string>
  try {
    names = fs.readdirSync(directory)
  } catch {
    return []
  }
  return names.filter((name) => SpawnRegistry.registryFilePattern.test(name)).flatMap((name) => {
    const file = path.join(directory, name)
    const registry = readRegistry(file)
    if (Option.isNone(registry)) return []
    return hostAlive(registry.value) ? [] : [{ file, registry: registry.value }]
  })
}

/** Removes a registry and the temporary file a write cut short may have left beside it. */
const removeFile = (file: string): void => {
  try {
    fs.rmSync(`${file}.tmp`, { force: true })
    fs.rmSync(file, { force: true })
  } catch {
    // Another reaper removed it, or the folder went: nothing left to do.
  }
}

/** Each process once (it may be in a plugin's group and its cgroup). */
const dedupe = (found: ReadonlyArray<Found>): Array<Found> => [...new Map(found.map((f) => [f.pid, f] as const)).values()]

/**
 * Reaps what hosts that are no longer alive left running: reads their registry files in the
 * runtime folder, ends each recorded plugin still running (with its process group: SIGTERM,
 * `grace`, SIGKILL), removes the files whose processes are all gone, and returns each process
 * found. Registries of live hosts are never touched; a pid now used by another process is never
 * signalled. Never fails: an unreadable folder or file reads as nothing to reap.
 *
 * @category reaping
 */
export const reap: (options?: ReapOptions) => Effect.Effect<ReadonlyArray<Leftover>> = Effect.fn("Leftovers.reap")(
  function*(options?: ReapOptions) {
    const directory = options?.directory ?? SpawnRegistry.defaultDirectory()
    const grace = Duration.fromInputUnsafe(options?.grace ?? "2 seconds")
    const registries = deadRegistries(directory)
    if (registries.length === 0) return []
    const stats = ProcStat.allStats()
    const sameBoot = (registry: SpawnRegistry.RegistryFile) => registry.bootId === ProcStat.bootId()
    const found = dedupe(registries.flatMap(({ registry }) =>
      sameBoot(registry) ? registry.processes.flatMap((entry) => survivorsOf(entry, stats)) : []
    ))
    const leftovers = found.length === 0 ? [] : yield* endAll(found, grace)
    if (leftovers.every((leftover) => leftover.reaped)) {
      for (const { file, registry } of registries) {
        if (sameBoot(registry)) removeCgroups(registry)
        removeFile(file)
      }
    }
    return leftovers
  }
)

let reapedByThisHost: Array<Leftover> = []
let atStart: Deferred.Deferred<ReadonlyArray<Leftover>> | undefined

/**
 * {@link reap} in the default folder, once per host process: the first call reaps, later calls
 * wait for that result. `PluginManager` starts it in the background when it is built; interrupted
 * before it ended, a later call starts it again.
 *
 * @category reaping
 */
export const reapAtStart: Effect.Effect<ReadonlyArray<Leftover>> = Effect.suspend(() => {
  if (atStart !== undefined) return Deferred.await(atStart)
  const done = Deferred.makeUnsafe<ReadonlyArray<Leftover>>()
  atStart = done
  return reap().pipe(
    Effect.tap((leftovers) => Effect.sync(() => void (reapedByThisHost = [...reapedByThisHost, ...leftovers]))),
    Effect.onExit((exit) =>
      Effect.sync(() => {
        if (Exit.isSuccess(exit)) return Deferred.doneUnsafe(done, exit)
        atStart = undefined
        Deferred.doneUnsafe(done, Exit.succeed([]))
      })
    )
  )
})

/**
 * What {@link reapAtStart} has reaped in this host process so far (empty until it ended).
 *
 * @category reaping
 */
export const reapedSoFar: Effect.Effect<ReadonlyArray<Leftover>> = Effect.sync(() => reapedByThisHost)
