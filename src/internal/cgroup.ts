/**
 * A cgroup v2 child group per plugin, where the host may create one: the whole tree of a plugin
 * stays in it whatever its processes do (`setsid`, double forks), and `cgroup.kill` ends all of
 * them at once (the kernel's own `KillMode=control-group`).
 *
 * The group is created under the host's own cgroup (`0::<path>` of `/proc/self/cgroup`, under
 * the cgroup2 mount found in `/proc/self/mountinfo`, `/sys/fs/cgroup` on a unified host). It
 * works when the host may create a child there and move a process into it: root, or a host in a
 * subtree delegated to it (systemd `Delegate=yes`, a container with a private cgroup namespace).
 * {@link available} probes that once per host process (a child group with a `cgroup.kill` file,
 * and a writable `cgroup.procs` of the host's group, which a move writes under); anywhere else
 * the answer is no and the caller falls back to the `/proc` walk, silently.
 *
 * A plugin enters its group before it runs: the host makes the group first and starts the
 * plugin through a command of {@link prepareEntry}: a `/bin/sh` that writes its own pid to the
 * group's `cgroup.procs` and then `exec`s the plugin (same pid). So nothing the plugin forks, even
 * at its first instruction, is ever outside the group. Moving the pid after the spawn instead
 * would leave a window in which a child forked at once (a shell script's first `&`) stays in the
 * host's group, and one that also leaves the session escapes both the stop and the registry.
 *
 * The price is the move itself: a migration takes the kernel's cgroup threadgroup lock for
 * writing, which waits for an RCU grace period unless a move ended less than about a grace period
 * ago (5–16 ms measured here; mounting cgroup2 with `favordynmods`, Linux 6.0+, makes every move
 * cheap: {@link favorDynmods}). The wait holds the kernel's `cgroup_mutex`, which every `mkdir`,
 * `rmdir` and `cgroup.kill` under the cgroup2 mount takes too. So the host's thread never waits
 * for either: it never writes the pid of a plugin that enters by itself (written by the host with
 * `fs.writeFileSync`, the wait stalled its event loop — every other plugin's calls — once per
 * spawn), and it makes the group on a libuv thread. To shorten the plugin's wait, the host starts
 * the grace period itself as the spawn begins ({@link prime}): the period then runs while the
 * host forks and the plugin's wrappers start, and the shell's own move finds it passed or nearly.
 * A shell that cannot enter exits 125 before running anything, saying so on stderr: a plugin never
 * runs outside a group it was given. `sh` runs before the checksum-verified executable, as
 * `setpriv` does, and never reads anything the plugin controls. Where there is no `/bin/sh` (or the
 * environment is one `sh` would change), the host moves the plugin after the spawn ({@link enter}).
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import type * as ParentDeath from "./parentDeath.ts"
import { resolveExecutable } from "./parentDeath.ts"

/** One plugin's group: its directory under the cgroup2 mount. */
export interface Cgroup {
  readonly dir: string
}

/** The host's cgroup2 path (`0::<path>` of `/proc/self/cgroup`). */
const ownGroupPath = (): string | undefined =>
  fs.readFileSync("/proc/self/cgroup", "utf8").split("\n").find((line) => line.startsWith("0::"))?.slice(3)

/** A cgroup2 mount: where it is, the group it shows as its root, and its super options. */
interface Mount {
  readonly root: string
  readonly mountPoint: string
  readonly options: ReadonlyArray<string>
}

/** The cgroup2 mount groups are made under, from `/proc/self/mountinfo`. */
const cgroup2Mount = (): Mount | undefined => {
  const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").flatMap((line): Array<Mount> => {
    const [before, after] = line.split(" - ")
    const [fsType, , superOptions] = after?.split(" ") ?? []
    if (fsType !== "cgroup2") return []
    const fields = before?.split(" ") ?? []
    return fields[3] === undefined || fields[4] === undefined
      ? []
      : [{ root: fields[3], mountPoint: fields[4], options: superOptions?.split(",") ?? [] }]
  })
  return mounts.find((m) => m.mountPoint === "/sys/fs/cgroup") ?? mounts[0]
}

/** Where the host's cgroup2 group is, and the mount it is under. */
const hostGroup = (): { readonly dir: string; readonly groupPath: string; readonly mount: Mount } | undefined => {
  const groupPath = ownGroupPath()
  const mount = cgroup2Mount()
  if (groupPath === undefined || mount === undefined) return undefined
  const relative = mount.root === "/" ? groupPath : groupPath.startsWith(mount.root) ? groupPath.slice(mount.root.length) : undefined
  return relative === undefined ? undefined : { dir: path.join(mount.mountPoint, relative), groupPath, mount }
}

let groupsMade = 0
const nextName = () => `plugin-host-${process.pid}-${++groupsMade}`

/** Whether a child group can be made, killed and entered, under `dir`. */
const probe = (dir: string): boolean => {
  const probeDir = path.join(dir, nextName())
  try {
    fs.accessSync(path.join(dir, "cgroup.procs"), fs.constants.W_OK)
    fs.mkdirSync(probeDir)
  } catch {
    return false
  }
  try {
    fs.accessSync(path.join(probeDir, "cgroup.kill"), fs.constants.W_OK)
    fs.accessSync(path.join(probeDir, "cgroup.procs"), fs.constants.W_OK)
    return true
  } catch {
    return false
  } finally {
    try {
      fs.rmdirSync(probeDir)
    } catch {
      // Gone already.
    }
  }
}

/** What the probe found: the host's group where plugin groups can be made, and its mount. */
interface Probed {
  readonly dir: string
  readonly groupPath: string
  readonly mount: Mount
}

let probed: { readonly usable: Probed | undefined } | undefined
let override: boolean | undefined

const probeOnce = (): Probed | undefined => {
  if (probed === undefined) {
    let found: ReturnType<typeof hostGroup>
    try {
      found = hostGroup()
    } catch {
      found = undefined
    }
    probed = { usable: found !== undefined && probe(found.dir) ? found : undefined }
    if (probed.usable !== undefined) removeStale(probed.usable.dir)
  }
  return probed.usable
}

/**
 * The directory plugin groups are made under, when this host can use cgroups (probed once).
 *
 * @internal
 */
export const available = (): string | undefined => override === false ? undefined : probeOnce()?.dir

/**
 * The cgroup2 mount plugin groups are made under, and whether it has `favordynmods` (moves
 * between groups do not wait for a grace period); undefined where the host makes no groups.
 *
 * @internal
 */
export const favorDynmods = (): { readonly mount: string; readonly enabled: boolean } | undefined => {
  const usable = override === false ? undefined : probeOnce()
  return usable === undefined ? undefined : { mount: usable.mount.mountPoint, enabled: usable.mount.options.includes("favordynmods") }
}

/** The host's own group's `cgroup.procs`, open for {@link prime} (one request on a libuv thread per write). */
let primer: { readonly fd: number; readonly pid: Uint8Array; writing: boolean } | undefined | null

/**
 * Whether the host's group holds all of the host's threads: a plain domain group (or the root,
 * which has no `cgroup.type`). In a threaded domain some threads may sit in threaded children,
 * and a move of the process would gather them back.
 */
const wholeProcessGroup = (dir: string): boolean => {
  try {
    return fs.readFileSync(path.join(dir, "cgroup.type"), "utf8").trim() === "domain"
  } catch (error) {
    return error instanceof Error && "code" in error && error.code === "ENOENT"
  }
}

const openPrimer = (usable: Probed): typeof primer => {
  if (primer !== undefined) return primer
  try {
    primer = wholeProcessGroup(usable.dir)
      ? { fd: fs.openSync(path.join(usable.dir, "cgroup.procs"), "w"), pid: Buffer.from(String(process.pid)), writing: false }
      : null
  } catch {
    primer = null
  }
  return primer
}

/**
 * Starts the grace period a plugin's move into its group waits for, without waiting for it on
 * this thread: the host writes its own pid to its own group's `cgroup.procs` on a libuv thread, a
 * move to where it already is (nothing migrates), which takes the migration lock all the same. A
 * move that comes while it waits, or up to about a grace period after, finds the period passed.
 * Skipped where moves are cheap anyway (`favordynmods`), while a primer is still waiting, when
 * the host is no longer in the group it was in when probed (it would be moved back), and when
 * that group is not a plain domain (threads in threaded children would be gathered back).
 *
 * @internal
 */
export const prime = (): void => {
  const usable = override === false ? undefined : probeOnce()
  if (usable === undefined || usable.mount.options.includes("favordynmods")) return
  const open = openPrimer(usable)
  if (open == null || open.writing) return
  try {
    if (ownGroupPath() !== usable.groupPath) return
  } catch {
    return
  }
  open.writing = true
  fs.write(open.fd, open.pid, () => {
    open.writing = false
  })
}

const groupName = /^plugin-host-(\d+)-\d+$/

const hostAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return error instanceof Error && "code" in error && error.code === "EPERM"
  }
}

/**
 * Removes the empty groups hosts that are gone left under `dir` (a host killed before its
 * plugins' stops leaves their groups behind), and returns their names. A group still populated
 * holds what such a host left running: it stays (reaping it is the job of the host's registry of
 * what it spawned).
 *
 * @internal
 */
export const removeStale = (dir: string): Array<string> => {
  let names: Array<string>
  try {
    names = fs.readdirSync(dir)
  } catch {
    return []
  }
  return names.filter((name) => {
    const owner = Number(groupName.exec(name)?.[1] ?? 0)
    return owner > 0 && owner !== process.pid && !hostAlive(owner) && remove({ dir: path.join(dir, name) })
  })
}

/**
 * Turns cgroups off (`false`) for the plugins spawned from now on, or back to the probe
 * (`undefined`): how the tests exercise the `/proc` fallback on a machine with cgroups.
 *
 * @internal
 */
export const setEnabled = (enabled: false | undefined): void => {
  override = enabled
}

/**
 * A new group holding `pid` (already running), or undefined when cgroups are not available or
 * the move failed (then nothing is left behind). The write stalls this thread for the kernel's
 * grace period (see the module header): only for a plugin that could not enter by itself.
 *
 * @internal
 */
export const enter = (pid: number): Cgroup | undefined => {
  const group = makeGroup()
  if (group === undefined) return undefined
  try {
    fs.writeFileSync(path.join(group.dir, "cgroup.procs"), String(pid))
    return group
  } catch {
    remove(group)
    return undefined
  }
}

/** A new, empty group under the host's, or undefined when cgroups are not available or it failed. */
const makeGroup = (): Cgroup | undefined => {
  const parent = available()
  if (parent === undefined) return undefined
  const dir = path.join(parent, nextName())
  try {
    fs.mkdirSync(dir)
    return { dir }
  } catch {
    return undefined
  }
}

/**
 * {@link makeGroup} on a libuv thread: a `mkdir` waits for the `cgroup_mutex`, which a move
 * holds for its grace period (another plugin's shell, or {@link prime}). Interrupted meanwhile,
 * the group is removed once made.
 */
const makeGroupAside = (parent: string): Effect.Effect<Cgroup | undefined> =>
  Effect.callback<Cgroup | undefined>((resume) => {
    const dir = path.join(parent, nextName())
    let interrupted = false
    fs.mkdir(dir, (error) => {
      if (!interrupted) resume(Effect.succeed(error === null ? { dir } : undefined))
      else if (error === null) fs.rmdir(dir, () => {})
    })
    return Effect.sync(() => {
      interrupted = true
    })
  })

const shell = "/bin/sh"
/**
 * `$0` is the group's `cgroup.procs`; a shell that cannot enter exits 125, its stderr (the
 * plugin's) saying why. `sh` exports a `PWD` of its own: it is unset, so the plugin's
 * environment is exactly the one it was given.
 */
const enterThenExec = "echo $$ >\"$0\" || { echo \"effect-plugin-host: the plugin cannot enter its cgroup $0\" >&2; exit 125; }; unset PWD; exec \"$@\""
/** Variables `sh` rewrites when they are in its environment: such a launch is not wrapped. */
const rewrittenByShell = ["PWD", "IFS", "OPTIND", "PPID"]

/** A command to spawn (as `parentDeath.ts` rewrites it too). */
export type Command = ParentDeath.Command

/**
 * A new, empty group for a plugin about to be spawned, and the command that starts `command`
 * inside it from its first instruction: `/bin/sh -c` writing its own pid to the group, then
 * `exec`ing the command's executable, given as the file it resolves to (see the module header).
 * The group is made on a libuv thread, and the grace period of the move is started ({@link prime}).
 * Undefined where cgroups are not available, or where it cannot be done exactly: no `/bin/sh`, an
 * executable that would not start anyway (its spawn must fail as such), or an environment holding
 * a variable `sh` would rewrite. The plugin is then moved after its spawn ({@link enter}).
 *
 * @internal
 */
export const prepareEntry = (
  command: Command,
  context: { readonly cwd: string | undefined; readonly env: Readonly<Record<string, string>> }
): Effect.Effect<{ readonly group: Cgroup; readonly command: Command } | undefined> => {
  const parent = available()
  if (parent === undefined || !shellFound() || rewrittenByShell.some((name) => Object.hasOwn(context.env, name))) return Effect.undefined
  const file = resolveExecutable(command.executable, context.cwd, context.env)
  if (file === undefined) return Effect.undefined
  return Effect.map(makeGroupAside(parent), (group) => {
    if (group === undefined) return undefined
    prime()
    return {
      group,
      command: { executable: shell, args: ["-c", enterThenExec, path.join(group.dir, "cgroup.procs"), file, ...command.args] }
    }
  })
}

let shellExists: boolean | undefined
const shellFound = (): boolean => {
  if (shellExists === undefined) {
    try {
      fs.accessSync(shell, fs.constants.X_OK)
      shellExists = true
    } catch {
      shellExists = false
    }
  }
  return shellExists
}

/**
 * The pids in the group now (none once it is gone).
 *
 * @internal
 */
export const members = (group: Cgroup): Array<number> => {
  try {
    return fs.readFileSync(path.join(group.dir, "cgroup.procs"), "utf8").split("\n").filter((l) => l !== "").map(Number)
  } catch {
    return []
  }
}

/**
 * Sends `signal` to every process of the group; SIGKILL goes through `cgroup.kill`, which
 * also reaches processes forked while it runs.
 *
 * @internal
 */
export const signal = (group: Cgroup, signal: "SIGTERM" | "SIGKILL"): void => {
  if (signal === "SIGKILL") {
    try {
      fs.writeFileSync(path.join(group.dir, "cgroup.kill"), "1")
      return
    } catch {
      // Fall through to one signal per member.
    }
  }
  signalMembers(group, signal)
}

const signalMembers = (group: Cgroup, signal: "SIGTERM" | "SIGKILL"): void => {
  for (const pid of members(group)) {
    try {
      process.kill(pid, signal)
    } catch {
      // Gone already.
    }
  }
}

/**
 * Whether any process is left in the group (`populated` of `cgroup.events`).
 *
 * @internal
 */
export const populated = (group: Cgroup): boolean => {
  try {
    return /^populated 1$/m.test(fs.readFileSync(path.join(group.dir, "cgroup.events"), "utf8"))
  } catch {
    return false
  }
}

/**
 * Removes the group (it must be empty; a group still populated is left, and says so).
 *
 * @internal
 */
export const remove = (group: Cgroup): boolean => {
  try {
    fs.rmdirSync(group.dir)
    return true
  } catch (error) {
    return removedOrGone(error)
  }
}

const removedOrGone = (error: unknown): boolean =>
  error === null || (error instanceof Error && "code" in error && error.code === "ENOENT")

/**
 * {@link remove} on a libuv thread: an `rmdir` waits for the `cgroup_mutex`, which a move into
 * any group holds for its grace period (another plugin entering its group): done on the host's
 * thread, a stop while plugins start would stall every other plugin's calls that long.
 *
 * @internal
 */
export const removeAside = (group: Cgroup): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    fs.rmdir(group.dir, (error) => resume(Effect.succeed(removedOrGone(error))))
  })

/**
 * {@link signal} for SIGKILL with the `cgroup.kill` write on a libuv thread (it takes the
 * `cgroup_mutex` as {@link removeAside} does); one signal per member when the write fails.
 *
 * @internal
 */
export const killAside = (group: Cgroup): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    fs.writeFile(path.join(group.dir, "cgroup.kill"), "1", (error) => {
      if (error !== null) signalMembers(group, "SIGKILL")
      resume(Effect.void)
    })
  })
