/**
 * The whole tree of a plugin process, so that none of it outlives the plugin: what a stop
 * signals beside the plugin's process group, and what it sweeps after the plugin exited.
 *
 * Two ways ({@link contain} sets them up at spawn):
 * - a cgroup v2 child group (see `cgroup.ts`) where the host may create one: everything the
 *   plugin starts once it is in the group stays in it, and `cgroup.kill` ends it all. A plugin
 *   that entered its group before its first instruction is *sealed*: the group holds its whole
 *   tree, and it is all a stop looks at (no `/proc` scan at all);
 * - otherwise (no cgroup, or a plugin moved into its group after its spawn, which may have forked
 *   before the move), the `/proc` walk as well: the plugin's descendants (ppid chains read from
 *   `/proc/<pid>/stat`) plus every member of its session and process group (the launchers start
 *   plugins detached, so the plugin leads both). A `setsid` grandchild leaves the session but is still a descendant
 *   while its parent lives; once the parent dies it is reparented to init and only the walk that
 *   saw it before knows it. So every process a walk finds is remembered (pid and start time, so a
 *   reused pid is never hit), later walks start from all of them, and the first walk is taken
 *   when the stop begins, before anything is signalled.

 * What the walk cannot reach, and cgroups can: a process that left the plugin's session and
 * whose parent chain up to the plugin ended before any walk saw it (a double fork with `setsid`,
 * before the stop or between two walks). Node cannot make the host a child subreaper
 * (`PR_SET_CHILD_SUBREAPER`), which would have kept such orphans below it. A sweep that still
 * finds processes after its last round counts them ({@link escapedCount}).
 *
 * A walk reads all of `/proc` once; the table is shared by every walk until the end of the
 * current turn of the event loop, so plugins whose stops reach a rung together share one scan.
 * A sweep after a stop whose walks found nothing beside the plugin scans nothing: it probes the
 * plugin's process group and removes its cgroup (see `endedAlone` for what that leaves out).
 *
 * @internal
 */
import * as fs from "node:fs"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Cgroup from "./cgroup.ts"
import { groupAlive } from "./processGroup.ts"
import * as ProcStat from "./procStat.ts"

/** `/proc` at one instant: every process, and the children of each. */
interface Table {
  readonly stats: ReadonlyMap<number, ProcStat.ProcStat>
  readonly children: ReadonlyMap<number, ReadonlyArray<number>>
}

/** Exited (a zombie) or gone. */
const ended = (stat: ProcStat.ProcStat | undefined) => !ProcStat.isLive(stat)

const scanProc = (): Table => {
  const stats = new Map<number, ProcStat.ProcStat>()
  const children = new Map<number, Array<number>>()
  for (const name of fs.readdirSync("/proc")) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const stat = ProcStat.readStat(pid)
    if (stat === undefined) continue
    stats.set(pid, stat)
    const siblings = children.get(stat.ppid)
    if (siblings === undefined) children.set(stat.ppid, [pid])
    else siblings.push(pid)
  }
  return { stats, children }
}

let shared: Table | undefined
let scans = 0
const dropShared = () => {
  shared = undefined
}

/** `/proc` now: one scan per turn of the event loop, shared by every walk in it. */
const currentTable = (): Table => {
  if (shared !== undefined) return shared
  shared = scanProc()
  scans++
  setImmediate(dropShared)
  return shared
}

/**
 * How many times `/proc` was scanned in this host process (for tests and benchmarks).
 *
 * @internal
 */
export const scanCount = (): number => scans

/** A process of the tree: its pid and start time. */
type Members = Map<number, number>

/**
 * What holds one plugin's tree: every process a walk found (the plugin first), and its cgroup
 * when it has one.
 *
 * @internal
 */
export interface Containment {
  readonly root: number
  readonly members: Members
  readonly cgroup: Cgroup.Cgroup | undefined
  /**
   * The plugin was in its cgroup before its first instruction (see `cgroup.ts`): everything it
   * ever started is in the group, so the group alone is looked at and `/proc` is never walked.
   */
  readonly sealed: boolean
  /** A sweep found the plugin's process group empty (see {@link groupEnded}). */
  groupEnded?: boolean
}

/**
 * Starts holding the tree of `pid`, a process the host just spawned: in `group` when one was
 * prepared for it (see `cgroup.ts`: the plugin enters it before it runs), else, unless `cgroups`
 * is off, in a new cgroup when the host can make one. Undefined when `pid` is not a live child of
 * this process (an in-memory spawner's fake pid, or a plugin already gone): nothing of it is ever
 * signalled then, and a prepared group is removed.
 *
 * @internal
 */
export const contain = (
  pid: number,
  options?: {
    readonly group?: Cgroup.Cgroup | undefined
    readonly cgroups?: boolean | undefined
    /** `/proc/<pid>/stat` as the caller just read it (read here otherwise). */
    readonly stat?: ProcStat.ProcStat | undefined
  }
): Containment | undefined => {
  const group = options?.group
  const stat = options?.stat ?? ProcStat.readStat(pid)
  if (stat === undefined || stat.ppid !== process.pid || ended(stat)) {
    if (group !== undefined) Cgroup.remove(group)
    return undefined
  }
  const members = new Map([[pid, stat.startTime]])
  // A prepared group is entered by the plugin itself before it runs (or it exits at once, saying
  // why): the host writes nothing, which would stall its own thread for a grace period.
  if (group !== undefined) return { root: pid, members, cgroup: group, sealed: true }
  return { root: pid, members, cgroup: options?.cgroups === false ? undefined : Cgroup.enter(pid), sealed: false }
}

/**
 * How this host contains plugin trees: `"cgroup"` when it may create cgroup v2 groups,
 * `"process tree"` (the `/proc` walk) otherwise.
 *
 * @internal
 */
export const mode = (): "cgroup" | "process tree" => Cgroup.available() === undefined ? "process tree" : "cgroup"

/**
 * Walks the tree in `table`: forgets members that are gone (or whose pid was reused), adds every
 * descendant of a member and every process of the plugin's session and group. Returns the live
 * members, the plugin itself included while it runs.
 */
const walk = (tree: Containment, table: Table): Array<number> => {
  const { members, root } = tree
  for (const [pid, start] of members) {
    const stat = table.stats.get(pid)
    if (stat === undefined || stat.startTime !== start) members.delete(pid)
  }
  // The session and group ids of the plugin stay reserved while a process uses them; a new
  // process with the plugin's pid means they are someone else's now.
  if (!table.stats.has(root) || members.has(root)) {
    for (const [pid, stat] of table.stats) {
      if ((stat.sid === root || stat.pgid === root) && !members.has(pid)) members.set(pid, stat.startTime)
    }
  }
  const pending = [...members.keys()]
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    for (const child of table.children.get(pid) ?? []) {
      const stat = table.stats.get(child)
      if (stat === undefined || members.has(child)) continue
      members.set(child, stat.startTime)
      pending.push(child)
    }
  }
  const live: Array<number> = []
  for (const pid of members.keys()) {
    if (pid > 1 && pid !== process.pid && !ended(table.stats.get(pid))) live.push(pid)
  }
  return live
}

const kill = (pid: number, signal: "SIGTERM" | "SIGKILL"): void => {
  try {
    process.kill(pid, signal)
  } catch {
    // Gone since the walk.
  }
}

/**
 * Walks the tree without signalling anything: what a stop does first, while the plugin still
 * links its descendants (with a cgroup too: for a plugin moved into its group after its spawn, a
 * child forked before the move is only found this way).
 *
 * @internal
 */
export const snapshot = (tree: Containment): void => {
  if (!tree.sealed) walk(tree, currentTable())
}

/** The live processes of the tree now: its cgroup's when sealed, else what a walk finds. */
const liveMembers = (tree: Containment): Array<number> =>
  tree.sealed && tree.cgroup !== undefined
    ? Cgroup.members(tree.cgroup).filter((pid) => pid !== process.pid && ProcStat.isLive(ProcStat.readStat(pid)))
    : walk(tree, currentTable())

/**
 * One rung of the stop: sends `signal` to the tree beside the plugin's process group (which the
 * launcher signals): what a walk finds, and what is in its cgroup.
 *
 * @internal
 */
export const signalTree = (tree: Containment, signal: "SIGTERM" | "SIGKILL"): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (tree.sealed && tree.cgroup !== undefined) return signalSealed(tree.cgroup, tree.root, signal)
    const table = currentTable()
    const outsideGroup = (pid: number) => (table.stats.get(pid) ?? ProcStat.readStat(pid))?.pgid !== tree.root
    const walked = walk(tree, table)
    for (const pid of walked) {
      if (outsideGroup(pid)) kill(pid, signal)
    }
    if (tree.cgroup === undefined) return Effect.void
    if (signal === "SIGKILL") return Cgroup.killAside(tree.cgroup)
    for (const pid of Cgroup.members(tree.cgroup)) {
      if (!tree.members.has(pid) && outsideGroup(pid)) kill(pid, signal)
    }
    return Effect.void
  })

/** One rung for a sealed tree: its cgroup's members outside the plugin's process group (`cgroup.kill` for SIGKILL). */
const signalSealed = (cgroup: Cgroup.Cgroup, root: number, signal: "SIGTERM" | "SIGKILL"): Effect.Effect<void> => {
  if (signal === "SIGKILL") return Cgroup.killAside(cgroup)
  for (const pid of Cgroup.members(cgroup)) {
    if (ProcStat.readStat(pid)?.pgid !== root) kill(pid, signal)
  }
  return Effect.void
}

/** Whether anything of the tree is alive: its cgroup is populated, or (unsealed) a walk finds a member. */
const anyLeft = (tree: Containment): boolean =>
  (tree.cgroup !== undefined && Cgroup.populated(tree.cgroup)) || (!tree.sealed && walk(tree, currentTable()).length > 0)

/** How long members get between SIGTERM and SIGKILL in a sweep, as the launcher's group sweep. */
const termToKillMillis = 200
const pollMillis = 20
const poll = Duration.millis(pollMillis)
/** Rounds a sweep repeats at most (each may find processes forked since the one before). */
const maxRounds = 5

let escaped = 0

/**
 * Processes that sweeps found and could not end (still there after their last round), in this
 * host process.
 *
 * @internal
 */
export const escapedCount = (): number => escaped

/** Waits up to `millis` for the tree to be empty; returns the millis it waited, or undefined when it is not empty. */
const waitUntilGone = (tree: Containment, millis: number): Effect.Effect<number | undefined> =>
  Effect.gen(function*() {
    for (let waited = 0; waited < millis; waited += pollMillis) {
      if (!anyLeft(tree)) return waited
      yield* Effect.sleep(poll)
    }
    return anyLeft(tree) ? undefined : millis
  })

/**
 * After the plugin exited: ends whatever is left of its tree (SIGTERM, SIGKILL and `cgroup.kill`
 * 200 ms later), walking again until a walk finds nothing, for at most five rounds and
 * `killWaitMillis` of waiting for SIGKILLed processes to go (the stop's `killTimeout`), and
 * removes its cgroup. What is still there after that is counted in {@link escapedCount}.
 *
 * @internal
 */
export const sweep = (tree: Containment, killWaitMillis: number): Effect.Effect<void> =>
  Effect.flatMap(Effect.suspend(() => endedAlone(tree)), (ended) => ended ? Effect.void : sweepRounds(tree, killWaitMillis))

/**
 * Whether nothing is left of the tree, found without a scan of `/proc`, and its cgroup removed
 * if so: no walk of the stop found anything beside the plugin, its process group is empty, and
 * so is its cgroup (the removal is the test: the kernel refuses to remove a populated group, so
 * `cgroup.events` is not read first). With a cgroup that is certain (what the plugin started
 * since the walk is in it); without one, a process the plugin started since the first walk of its
 * stop, in a new process group of its session, is not looked for (one in a new session is out of
 * reach of any walk once its parent is gone). An empty process group stays empty (no process can
 * join a group that has none), which {@link groupEnded} tells the launcher's own group sweep.
 */
const endedAlone = (tree: Containment): Effect.Effect<boolean> => {
  if (!(tree.members.size === 0 || (tree.members.size === 1 && tree.members.has(tree.root)))) return Effect.succeed(false)
  if (groupAlive(tree.root)) return Effect.succeed(false)
  tree.groupEnded = true
  return tree.cgroup === undefined ? Effect.succeed(true) : Cgroup.removeAside(tree.cgroup)
}

/**
 * Whether a sweep found the plugin's process group empty: nothing is left in it to end, ever.
 *
 * @internal
 */
export const groupEnded = (tree: Containment | undefined): boolean => tree?.groupEnded === true


const sweepRounds = (tree: Containment, killWaitMillis: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    let killWaitLeft = killWaitMillis
    for (let round = 0; round < maxRounds && killWaitLeft > 0; round++) {
      if (!anyLeft(tree)) break
      yield* signalAll(tree, "SIGTERM")
      if ((yield* waitUntilGone(tree, termToKillMillis)) !== undefined) break
      yield* signalAll(tree, "SIGKILL")
      const waited = yield* waitUntilGone(tree, killWaitLeft)
      killWaitLeft = waited === undefined ? 0 : killWaitLeft - waited
    }
    const left = new Set(liveMembers(tree))
    if (tree.cgroup !== undefined) for (const pid of Cgroup.members(tree.cgroup)) left.add(pid)
    escaped += left.size
    if (tree.cgroup !== undefined) yield* Cgroup.removeAside(tree.cgroup)
  })

/**
 * Signals every live member a walk finds, and the cgroup (its `cgroup.kill` off the host's
 * thread: see {@link Cgroup.killAside}).
 */
const signalAll = (tree: Containment, signal: "SIGTERM" | "SIGKILL"): Effect.Effect<void> =>
  Effect.suspend(() => {
    for (const pid of liveMembers(tree)) kill(pid, signal)
    if (tree.cgroup === undefined) return Effect.void
    if (signal === "SIGKILL") return Cgroup.killAside(tree.cgroup)
    Cgroup.signal(tree.cgroup, signal)
    return Effect.void
  })
