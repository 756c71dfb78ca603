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
 * There is a race: the plugin is moved into its group right after the spawn, by writing its pid
 * to `cgroup.procs`, and a child it forked before that write stays in the host's group (a shell
 * script's first `&` often does). The `/proc` walk of the stop (`processTree.ts`) finds such a
 * child while it is a descendant of the plugin or in its session; only one that also left the
 * session and lost its parent before the stop began escapes. A wrapper that moves
 * itself before `exec`ing the plugin would close the race, at the price of an extra program
 * between the host and every plugin (and of running it before a checksum-verified executable).
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"

/** One plugin's group: its directory under the cgroup2 mount. */
export interface Cgroup {
  readonly dir: string
}

/** Where the host's cgroup2 group is, from `/proc/self/mountinfo` and `/proc/self/cgroup`. */
const hostGroupDir = (): string | undefined => {
  const own = fs.readFileSync("/proc/self/cgroup", "utf8").split("\n").find((line) => line.startsWith("0::"))
  if (own === undefined) return undefined
  const groupPath = own.slice(3)
  const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").flatMap((line) => {
    const [before, after] = line.split(" - ")
    if (after?.split(" ")[0] !== "cgroup2") return []
    const fields = before?.split(" ") ?? []
    return fields[3] === undefined || fields[4] === undefined ? [] : [{ root: fields[3], mountPoint: fields[4] }]
  })
  const mount = mounts.find((m) => m.mountPoint === "/sys/fs/cgroup") ?? mounts[0]
  if (mount === undefined) return undefined
  const relative = mount.root === "/" ? groupPath : groupPath.startsWith(mount.root) ? groupPath.slice(mount.root.length) : undefined
  return relative === undefined ? undefined : path.join(mount.mountPoint, relative)
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

let probed: { readonly dir: string | undefined } | undefined
let override: boolean | undefined

/**
 * The directory plugin groups are made under, when this host can use cgroups (probed once).
 *
 * @internal
 */
export const available = (): string | undefined => {
  if (override === false) return undefined
  if (probed === undefined) {
    let dir: string | undefined
    try {
      dir = hostGroupDir()
    } catch {
      dir = undefined
    }
    probed = { dir: dir !== undefined && probe(dir) ? dir : undefined }
    if (probed.dir !== undefined) removeStale(probed.dir)
  }
  return probed.dir
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
 * A new group holding `pid`, or undefined when cgroups are not available or the move failed
 * (then nothing is left behind).
 *
 * @internal
 */
export const enter = (pid: number): Cgroup | undefined => {
  const parent = available()
  if (parent === undefined) return undefined
  const dir = path.join(parent, nextName())
  try {
    fs.mkdirSync(dir)
  } catch {
    return undefined
  }
  try {
    fs.writeFileSync(path.join(dir, "cgroup.procs"), String(pid))
    return { dir }
  } catch {
    remove({ dir })
    return undefined
  }
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
    return error instanceof Error && "code" in error && error.code === "ENOENT"
  }
}
