/**
 * The rules of a plugin's environment, and the launch they lead to: which names may be passed,
 * which need a deliberate mark, the environment built from them, and the interpreter the host
 * resolves when the plugin gets no `PATH`.
 *
 * - **Names.** A passed name must look like an environment variable name
 *   (`^[A-Za-z_][A-Za-z0-9_]*$`): anything else (`a=b`, `toString()`, an empty string) is a
 *   mistake or an attempt to smuggle something, never a variable a plugin needs. Allow-list
 *   lookups read own properties of the host environment only, so a name like `toString` finds
 *   nothing on `Object.prototype`; the environment is built with own data properties only
 *   (`Object.fromEntries`), so `__proto__` cannot change its prototype.
 * - **Injection variables.** Variables that make a loader or an interpreter run code the plugin
 *   did not ship are refused unless the plugin is marked for them (`unsafe_env_vars` /
 *   `unsafeEnvVars`), whether they come from the host (allow-listed) or from code (`env`): the
 *   mark is one place a reviewer sees, the allow-list or `env` still decides what is passed.
 *   The list ({@link isInjectionVariable}) covers what loads code or a library by itself:
 *   `LD_*` (glibc's loader: `LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`… all of its knobs share
 *   the prefix), `DYLD_*` (macOS's), `GCONV_PATH` and `GLIBC_TUNABLES` (glibc loads iconv
 *   modules from the first; the second was a setuid exploit), `NODE_OPTIONS` (`--require`,
 *   `--import`), `NODE_PATH` (where bare `require`s resolve), `NODE_COMPILE_CACHE` and
 *   `PYTHONPYCACHEPREFIX` (compiled code read from a folder: an entry there runs instead of the
 *   checksum-verified source, Node checking only a CRC), `PYTHONPATH`, `PYTHONHOME`,
 *   `PYTHONSTARTUP`, `PYTHONUSERBASE` (a `site-packages` with `.pth` files runs code at startup),
 *   `PYTHONWARNINGS` and `PYTHONBREAKPOINT` (both import a module they name), `BASH_ENV` and
 *   `ENV` (sourced by non-interactive bash / sh), `SHELLOPTS`, `BASHOPTS` and `PS4` (with
 *   `xtrace`, `PS4` runs command substitutions), `PERL5OPT` (`-M` loads a module), `PERL5LIB`,
 *   `PERLLIB`, `PERL5DB`, `RUBYOPT` (`-r`), `RUBYLIB`, `JAVA_TOOL_OPTIONS`, `_JAVA_OPTIONS` and
 *   `JDK_JAVA_OPTIONS` (`-javaagent`), `PHPRC` and `PHP_INI_SCAN_DIR` (`auto_prepend_file`),
 *   `LUA_INIT` (runs a chunk), `LUA_PATH`, `LUA_CPATH`. Left out: variables that change data
 *   rather than code (`NODE_EXTRA_CA_CERTS`, `SSL_CERT_FILE`, locales, `HOME`): they matter, but
 *   an allow-list entry for them is already the deliberate choice. `PATH` is handled apart
 *   (below). Matching is case-sensitive, as the loaders' own lookups are.
 * - **Interpreters.** When the plugin gets no `PATH` and its executable is a script whose
 *   shebang goes through `env` (`#!/usr/bin/env node`), `env` would search its built-in default
 *   path and quietly run another interpreter than the host's (the system's Node instead of the
 *   one on the host's `PATH`). The host resolves the interpreter on its own `PATH` instead and
 *   runs it explicitly (`<interpreter> <script> <args>`), or the start fails naming the
 *   interpreter. An absolute interpreter (`#!/bin/sh`) involves no search: it runs as the kernel
 *   would, and a missing one fails the start with that name instead of a bare `ENOENT`. This
 *   works on the executable as it will run (after verification), so a verified copy composes.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"

// ---------------------------------------------------------------------------------------------
// names
// ---------------------------------------------------------------------------------------------

const namePattern = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Whether `name` looks like an environment variable name. */
export const isEnvVarName = (name: string): boolean => namePattern.test(name)

const injectionNames: ReadonlySet<string> = new Set([
  "GCONV_PATH",
  "GLIBC_TUNABLES",
  "NODE_OPTIONS",
  "NODE_PATH",
  "NODE_COMPILE_CACHE",
  "PYTHONPATH",
  "PYTHONHOME",
  "PYTHONSTARTUP",
  "PYTHONUSERBASE",
  "PYTHONWARNINGS",
  "PYTHONBREAKPOINT",
  "PYTHONPYCACHEPREFIX",
  "BASH_ENV",
  "ENV",
  "SHELLOPTS",
  "BASHOPTS",
  "PS4",
  "PERL5OPT",
  "PERL5LIB",
  "PERLLIB",
  "PERL5DB",
  "RUBYOPT",
  "RUBYLIB",
  "JAVA_TOOL_OPTIONS",
  "_JAVA_OPTIONS",
  "JDK_JAVA_OPTIONS",
  "PHPRC",
  "PHP_INI_SCAN_DIR",
  "LUA_INIT",
  "LUA_PATH",
  "LUA_CPATH"
])

const injectionPrefixes: ReadonlyArray<string> = ["LD_", "DYLD_"]

/** Whether `name` is a loader or interpreter-injection variable (see the module header). */
export const isInjectionVariable = (name: string): boolean =>
  injectionNames.has(name) || injectionPrefixes.some((prefix) => name.startsWith(prefix))

/** The names a plugin is given: allow-listed ones, explicit ones, and the mark for injection variables. */
export interface Declared {
  readonly allowedEnvVars: ReadonlyArray<string>
  readonly envNames: ReadonlyArray<string>
  readonly unsafeEnvVars: ReadonlyArray<string>
}

/**
 * What is wrong with the declared names, one sentence each (empty when nothing is): a name that
 * is not a variable name, or an injection variable without the mark. `fields` names the three
 * lists as the reader wrote them (`allowed_env_vars` in TOML, `env` in code…).
 */
export const problems = (
  declared: Declared,
  fields: { readonly allowed: string; readonly env: string; readonly unsafe: string }
): Array<string> => {
  const found: Array<string> = []
  const marked = new Set(declared.unsafeEnvVars)
  const check = (names: ReadonlyArray<string>, field: string) => {
    for (const name of names) {
      if (!isEnvVarName(name)) {
        found.push(`\`${field}\`: ${JSON.stringify(name)} is not an environment variable name (letters, digits and \`_\`, not starting with a digit)`)
      } else if (isInjectionVariable(name) && !marked.has(name)) {
        found.push(`\`${field}\`: \`${name}\` is a loader/interpreter injection variable; list it in \`${fields.unsafe}\` too to pass it deliberately`)
      }
    }
  }
  check(declared.allowedEnvVars, fields.allowed)
  check(declared.envNames, fields.env)
  for (const name of declared.unsafeEnvVars) {
    if (!isEnvVarName(name)) found.push(`\`${fields.unsafe}\`: ${JSON.stringify(name)} is not an environment variable name`)
  }
  return found
}

// ---------------------------------------------------------------------------------------------
// the environment
// ---------------------------------------------------------------------------------------------

/**
 * The allow-listed names that are own properties of `hostEnv` with a value, plus `extra` (which
 * wins), as own data properties only.
 */
export const build = (
  allowed: ReadonlyArray<string>,
  hostEnv: Readonly<Record<string, string | undefined>>,
  extra: Readonly<Record<string, string>> | undefined
): Record<string, string> => {
  const entries: Array<readonly [string, string]> = []
  for (const name of allowed) {
    const value = Object.hasOwn(hostEnv, name) ? hostEnv[name] : undefined
    if (typeof value === "string") entries.push([name, value])
  }
  if (extra !== undefined) {
    for (const name of Object.keys(extra)) {
      const value = extra[name]
      if (typeof value === "string") entries.push([name, value])
    }
  }
  return Object.fromEntries(entries)
}

/** The marked injection variables `env` passes, sorted. */
export const unsafePassed = (env: Readonly<Record<string, string>>, unsafeEnvVars: ReadonlyArray<string>): Array<string> =>
  unsafeEnvVars.filter((name) => Object.hasOwn(env, name) && isInjectionVariable(name)).sort()

// ---------------------------------------------------------------------------------------------
// shebangs
// ---------------------------------------------------------------------------------------------

/** A script's first line, as the kernel reads it: the interpreter and its one optional argument. */
export interface Shebang {
  readonly line: string
  readonly interpreter: string
  readonly argument: string | undefined
}

/** Linux reads at most this many bytes of a shebang line. */
const shebangBytes = 256

/** The shebang at the start of `head`, if there is one. */
export const parseShebang = (head: string): Shebang | undefined => {
  if (!head.startsWith("#!")) return undefined
  const end = head.indexOf("\n")
  const line = (end === -1 ? head : head.slice(0, end)).replace(/\r$/, "")
  const rest = line.slice(2).trim()
  if (rest === "") return undefined
  const space = rest.search(/[ \t]/)
  if (space === -1) return { line, interpreter: rest, argument: undefined }
  const argument = rest.slice(space).trim()
  return { line, interpreter: rest.slice(0, space), argument: argument === "" ? undefined : argument }
}

/**
 * The command an `env` shebang runs, with its own arguments: `node` for `#!/usr/bin/env node`,
 * `["node", "--flag"]` for `#!/usr/bin/env -S node --flag`. Undefined for other `env` options,
 * which the host does not imitate.
 */
export const envCommand = (shebang: Shebang): ReadonlyArray<string> | undefined => {
  const argument = shebang.argument
  if (argument === undefined) return undefined
  if (argument.startsWith("-S")) {
    const words = argument.slice(2).trim().split(/[ \t]+/).filter((word) => word !== "")
    return words.length === 0 ? undefined : words
  }
  return argument.startsWith("-") ? undefined : [argument]
}

const isEnvInterpreter = (interpreter: string): boolean => path.basename(interpreter) === "env"

/**
 * Whether `file` is an executable regular file. The checks here are synchronous on purpose: a
 * few `stat`s and one 256-byte read per spawn, and a spawn stays one step for `TestClock`
 * specs (an asynchronous read would let the clock run past it).
 */
const isExecutableFile = (file: string): Effect.Effect<boolean> =>
  Effect.sync(() => {
    try {
      if (!fs.statSync(file).isFile()) return false
      fs.accessSync(file, fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/** Where `command` is found: a path (with a `/`) against `cwd`, a bare name on `searchPath`. */
export const locate = (command: string, searchPath: string | undefined, cwd: string): Effect.Effect<string | undefined> =>
  Effect.gen(function*() {
    if (command.includes("/")) {
      const file = path.resolve(cwd, command)
      return (yield* isExecutableFile(file)) ? file : undefined
    }
    for (const dir of (searchPath ?? "").split(path.delimiter)) {
      if (dir === "") continue
      const file = path.resolve(cwd, dir, command)
      if (yield* isExecutableFile(file)) return file
    }
    return undefined
  })

/** The first bytes of `file` (empty when it cannot be read: the spawn reports that). */
const readHead = (file: string): Effect.Effect<string> =>
  Effect.sync(() => {
    let fd: number | undefined
    try {
      fd = fs.openSync(file, "r")
      const buffer = Buffer.alloc(shebangBytes)
      const bytesRead = fs.readSync(fd, buffer, 0, shebangBytes, 0)
      return buffer.subarray(0, bytesRead).toString("latin1")
    } catch {
      return ""
    } finally {
      if (fd !== undefined) fs.closeSync(fd)
    }
  })

// ---------------------------------------------------------------------------------------------
// the launch
// ---------------------------------------------------------------------------------------------

/** The interpreter the host resolved for a script's `env` shebang. */
export interface ResolvedInterpreter {
  readonly shebang: string
  readonly resolved: string
}

/** What actually runs: the executable, its arguments, its environment. */
export interface Launch {
  readonly executable: string
  readonly args: ReadonlyArray<string>
  readonly env: Record<string, string>
  readonly interpreter: ResolvedInterpreter | undefined
}

/**
 * What a process is started from, and what {@link prepare} needs: `PluginProcess.Spec` is this
 * and the plugin's name.
 */
export interface LaunchInput {
  /** Path or command name of the executable; started directly, never through a shell. */
  readonly executable: string
  readonly args?: ReadonlyArray<string> | undefined
  readonly cwd?: string | undefined
  /** Names of host variables the plugin may see (only those that exist are passed). */
  readonly allowedEnvVars?: ReadonlyArray<string> | undefined
  /** Extra fixed variables, passed as given (they win over allow-listed ones). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /**
   * Loader and interpreter-injection variables (`NODE_OPTIONS`, `LD_PRELOAD`…) the plugin may be
   * passed, deliberately: without this mark such a name in `allowedEnvVars` or `env` fails the
   * spawn (see `PluginProcess`'s module header).
   */
  readonly unsafeEnvVars?: ReadonlyArray<string> | undefined
  /** The host environment to pick allow-listed variables from; defaults to `process.env`. */
  readonly hostEnv?: Readonly<Record<string, string | undefined>> | undefined
}

/** The host's `PATH`: the one of `hostEnv` when it has one, else the host process's. */
export const hostPath = (hostEnv: Readonly<Record<string, string | undefined>> | undefined): string | undefined => {
  const own = hostEnv !== undefined && Object.hasOwn(hostEnv, "PATH") ? hostEnv["PATH"] : undefined
  return own ?? (Object.hasOwn(process.env, "PATH") ? process.env["PATH"] : undefined)
}

/**
 * The interpreter to run `executable` with when the plugin gets no `PATH`: undefined when it is
 * not a script (or cannot be read: the spawn reports that), the resolved `env` command, or a
 * failure naming what cannot be found.
 */
export const resolveInterpreter = (
  executable: string,
  options: { readonly cwd: string; readonly searchPath: string | undefined }
): Effect.Effect<{ readonly script: string; readonly command: ReadonlyArray<string>; readonly interpreter: ResolvedInterpreter } | undefined, string> =>
  Effect.gen(function*() {
    const script = yield* locate(executable, options.searchPath, options.cwd)
    if (script === undefined) return undefined
    const shebang = parseShebang(yield* readHead(script))
    if (shebang === undefined) return undefined
    if (!isEnvInterpreter(shebang.interpreter)) {
      if (path.isAbsolute(shebang.interpreter) && !(yield* isExecutableFile(shebang.interpreter))) {
        return yield* Effect.fail(`the interpreter \`${shebang.interpreter}\` named by the shebang of ${script} (\`${shebang.line}\`) does not exist or is not executable`)
      }
      return undefined
    }
    const command = envCommand(shebang)
    if (command === undefined) {
      return yield* Effect.fail(`the shebang of ${script} (\`${shebang.line}\`) is not one the host can resolve (expected \`#!/usr/bin/env NAME\` or \`#!/usr/bin/env -S NAME ARGS\`); pass \`PATH\` or run the interpreter explicitly`)
    }
    const [name = "", ...rest] = command
    const resolved = yield* locate(name, options.searchPath, options.cwd)
    if (resolved === undefined) {
      return yield* Effect.fail(`the interpreter \`${name}\` named by the shebang of ${script} (\`${shebang.line}\`) is not on the host's PATH; the plugin gets no PATH, so the host resolves it (install it, or allow-list PATH to let \`env\` search the plugin's)`)
    }
    return { script, command: [resolved, ...rest], interpreter: { shebang: shebang.line, resolved } }
  })

/**
 * Checks the names, builds the environment and, when it has no `PATH`, resolves a script's `env`
 * interpreter on the host's `PATH`. Fails with a sentence naming the variable or the interpreter.
 */
export const prepare = (input: LaunchInput): Effect.Effect<Launch, string> =>
  Effect.gen(function*() {
    const allowedEnvVars = input.allowedEnvVars ?? []
    const unsafeEnvVars = input.unsafeEnvVars ?? []
    const found = problems(
      { allowedEnvVars, envNames: Object.keys(input.env ?? {}), unsafeEnvVars },
      { allowed: "allowedEnvVars", env: "env", unsafe: "unsafeEnvVars" }
    )
    if (found.length > 0) return yield* Effect.fail(found.join("; "))
    const env = build(allowedEnvVars, input.hostEnv ?? process.env, input.env)
    const args = input.args ?? []
    if (Object.hasOwn(env, "PATH")) return { executable: input.executable, args, env, interpreter: undefined }
    const resolved = yield* resolveInterpreter(input.executable, { cwd: input.cwd ?? process.cwd(), searchPath: hostPath(input.hostEnv) })
    if (resolved === undefined) return { executable: input.executable, args, env, interpreter: undefined }
    const [interpreter = "", ...interpreterArgs] = resolved.command
    return { executable: interpreter, args: [...interpreterArgs, resolved.script, ...args], env, interpreter: resolved.interpreter }
  })

// ---------------------------------------------------------------------------------------------
// the doctor's view
// ---------------------------------------------------------------------------------------------

/**
 * What the doctor says about a plugin's environment: the marked injection variables it is
 * passed, the interpreter the host resolves for its script, or why its start would fail.
 */
export interface Report {
  readonly unsafeEnvVars: ReadonlyArray<string>
  readonly interpreter?: ResolvedInterpreter
  readonly problem?: string
}

/** The {@link Report} of a launch as {@link prepare} would make it now. */
export const describe = (input: LaunchInput): Effect.Effect<Report> =>
  prepare(input).pipe(
    Effect.map((launch): Report => ({
      unsafeEnvVars: unsafePassed(launch.env, input.unsafeEnvVars ?? []),
      ...(launch.interpreter === undefined ? {} : { interpreter: launch.interpreter })
    })),
    Effect.catch((problem) =>
      Effect.succeed<Report>({
        unsafeEnvVars: unsafePassed(build(input.allowedEnvVars ?? [], input.hostEnv ?? process.env, input.env), input.unsafeEnvVars ?? []),
        problem
      })
    )
  )
