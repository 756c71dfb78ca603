/**
 * The parent-death signal of a plugin: where util-linux `setpriv` is installed
 * (`/usr/bin/setpriv`, which Debian and most distributions ship), a plugin is started as
 * `setpriv --pdeathsig KILL -- <executable> <args>`. `setpriv` sets `PR_SET_PDEATHSIG` and then
 * execs the plugin in the same process (same pid, same process group), so the kernel SIGKILLs the
 * plugin the moment the host dies — even when the host is SIGKILLed and no finalizer runs, and
 * even when the plugin ignores stdin EOF and SIGTERM.
 *
 * SIGKILL rather than SIGTERM: once the host is gone nobody runs the grace sequence, and a plugin
 * that ignores SIGTERM would survive it. A plugin that wants to clean up on host death has stdin
 * EOF (and the SDK's parent watch), which arrive at the same moment.
 *
 * What it does not cover, and what covers it:
 * - the plugin's own children (the setting is cleared on fork): the host's registry of what it
 *   spawned reaps the plugin's process group at the next host start (`Leftovers`);
 * - a host that dies between the fork and `setpriv`'s `prctl` (the signal is armed too late):
 *   the registry again, and the SDK's parent watch;
 * - the signal fires when the *thread* that forked the plugin exits: Node spawns from its main
 *   thread, whose end is the host's end; a host spawning from a worker thread would kill its
 *   plugins when that thread ends.
 *
 * The command is only rewritten when `setpriv` exists and the executable resolves (as the exec
 * would find it): a missing or non-executable file then still fails the spawn itself (a `Spawn`
 * error), instead of starting `setpriv` that exits 127.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"

const setprivPath = "/usr/bin/setpriv"
/** What `execvp` searches when the environment has no `PATH`. */
const defaultSearchPath = "/bin:/usr/bin"

const isExecutableFile = (file: string): boolean => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

let setprivFound: boolean | undefined

/**
 * Whether `setpriv` is installed (checked once per host process).
 *
 * @internal
 */
export const setprivAvailable = (): boolean => {
  if (setprivFound === undefined) setprivFound = isExecutableFile(setprivPath)
  return setprivFound
}

/**
 * The executable file `executable` names, as an exec with `env` in `cwd` would look it up
 * (`PATH`, or `/bin:/usr/bin` without one), or undefined when there is none.
 *
 * @internal
 */
export const resolveExecutable = (
  executable: string,
  cwd: string | undefined,
  env: Readonly<Record<string, string>>
): string | undefined => {
  const base = cwd ?? process.cwd()
  if (executable.includes("/")) {
    const file = path.resolve(base, executable)
    return isExecutableFile(file) ? file : undefined
  }
  const search = env["PATH"] ?? defaultSearchPath
  for (const dir of search.split(":")) {
    const file = path.resolve(base, dir === "" ? "." : dir, executable)
    if (isExecutableFile(file)) return file
  }
  return undefined
}

/**
 * A command to spawn.
 *
 * @internal
 */
export interface Command {
  readonly executable: string
  readonly args: ReadonlyArray<string>
}

/**
 * The command that starts `command` with the parent-death signal armed, or `command` itself
 * where that cannot be done (no `setpriv`, or an executable that would not start anyway).
 *
 * @internal
 */
export const withParentDeathSignal = (
  command: Command,
  context: { readonly cwd: string | undefined; readonly env: Readonly<Record<string, string>> }
): Command =>
  setprivAvailable() && resolveExecutable(command.executable, context.cwd, context.env) !== undefined
    ? { executable: setprivPath, args: ["--pdeathsig", "KILL", "--", command.executable, ...command.args] }
    : command
