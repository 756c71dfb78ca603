/**
 * What a spawn of one plugin verifies, and what it leaves unverified, as the doctor reports it.
 *
 * This module owns the rules that read a plugin's source for it: which executables are
 * interpreters (a known interpreter name, or a file starting with a `#!` line), which arguments
 * are the files such an interpreter runs (an argument naming an existing regular file, resolved
 * against the plugin's working folder as the interpreter resolves it), and the {@link inspect}
 * that hashes every declared file now and flags each interpreter argument file no checksum
 * covers (`interpreter script not verified`).
 *
 * @internal
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as VerifiedExecutable from "./verifiedExecutable.ts"

/**
 * How the executable is verified: `verified` (`checksum_sha256`; it runs from a private copy of
 * the hashed bytes), `verified in place` (named in `checksums`; hashed before every spawn, run
 * from its own path), `mismatch` (its content is not the declared one now), `missing`, or
 * `not declared`.
 */
export type ExecutableStatus = "verified" | "verified in place" | "mismatch" | "missing" | "not declared"

/** How one file declared in `checksums` stands now. */
export type FileStatus = "verified" | "mismatch" | "missing"

export const interpreterScriptNotVerified = "interpreter script not verified"

/** Everything the doctor says about what is verified before a plugin's spawns. */
export interface Verification {
  readonly executable: { readonly path: string; readonly status: ExecutableStatus }
  readonly files: ReadonlyArray<{ readonly path: string; readonly status: FileStatus }>
  readonly flags: ReadonlyArray<{ readonly flag: typeof interpreterScriptNotVerified; readonly file: string }>
}

/** What {@link inspect} reads: the fields of a manifest that name files. */
export interface Source {
  readonly executable: string
  readonly args?: ReadonlyArray<string> | undefined
  readonly checksumSha256?: string | undefined
  readonly checksums?: Readonly<Record<string, string>> | undefined
}

const interpreterName = /^(?:python[0-9.]*|pypy[0-9.]*|node|nodejs|bash|sh|dash|zsh|ksh|ruby|perl[0-9.]*|php|deno|bun|lua[0-9.]*|tsx|ts-node)$/

/** Whether an executable's file name is that of an interpreter (`python3.12`, `node`, `bash`…). */
export const isInterpreterName = (executable: string): boolean => interpreterName.test(path.basename(executable))

/** Whether a file's first bytes are a `#!` line. */
export const hasShebang = (head: Uint8Array): boolean => head[0] === 0x23 && head[1] === 0x21

/** The arguments that may name a file the interpreter runs or loads (options are skipped). */
export const fileArguments = (args: ReadonlyArray<string>): ReadonlyArray<string> =>
  args.filter((arg) => arg !== "" && !arg.startsWith("-"))

/** The status of a file against its declared digest, read now. */
export const statusOf = (declared: string, actual: string | undefined): FileStatus =>
  actual === undefined ? "missing" : actual === declared.toLowerCase() ? "verified" : "mismatch"

const firstBytes = async (file: string): Promise<Uint8Array> => {
  const handle = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  try {
    const buffer = Buffer.alloc(2)
    const { bytesRead } = await handle.read(buffer, 0, 2, 0)
    return buffer.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

const isRegularFile = (file: string): Effect.Effect<boolean> =>
  Effect.promise(() => fs.stat(file).then((info) => info.isFile(), () => false))

const hashOrMissing = (file: string): Effect.Effect<string | undefined> =>
  VerifiedExecutable.hashInPlace(file).pipe(Effect.orElseSucceed(() => undefined))

const isInterpreter = (executable: string): Effect.Effect<boolean> =>
  isInterpreterName(executable)
    ? Effect.succeed(true)
    : Effect.promise(() => firstBytes(executable).then(hasShebang, () => false))

/**
 * Inspects a plugin as a spawn would see it: `dir` is the folder its paths resolve against (the
 * manifest's; without one, a bare executable name is looked up on `PATH` and `checksums` resolve
 * against the host's working folder, as the spawn does), `cwd` the working folder it runs in
 * (where an interpreter finds a relative script). Hashes the executable and every `checksums`
 * file now; never fails (an unreadable file is `missing`).
 */
export const inspect = (
  source: Source,
  options: { readonly dir: string | undefined; readonly cwd: string }
): Effect.Effect<Verification> =>
  Effect.gen(function*() {
    const dir = options.dir
    const executable = dir !== undefined
      ? path.resolve(dir, source.executable)
      : source.executable.includes("/") ? path.resolve(source.executable) : source.executable
    const declared = Object.entries(source.checksums ?? {}).map(([name, digest]) => ({ file: path.resolve(dir ?? ".", name), digest }))
    const files = yield* Effect.forEach(declared, ({ digest, file }) =>
      Effect.map(hashOrMissing(file), (actual) => ({ path: file, status: statusOf(digest, actual) })))
    const inPlace = files.find((file) => file.path === executable)
    const status: ExecutableStatus = source.checksumSha256 !== undefined
      ? statusOf(source.checksumSha256, yield* hashOrMissing(executable))
      : inPlace !== undefined
      ? inPlace.status === "verified" ? "verified in place" : inPlace.status
      : "not declared"
    const scripts = (yield* isInterpreter(executable))
      ? yield* Effect.filter(
        fileArguments(source.args ?? []).map((arg) => path.resolve(options.cwd, arg)),
        (file) => isRegularFile(file).pipe(Effect.map((exists) => exists && !declared.some((d) => d.file === file)))
      )
      : []
    return {
      executable: { path: executable, status },
      files,
      flags: scripts.map((file) => ({ flag: interpreterScriptNotVerified, file }))
    }
  })
