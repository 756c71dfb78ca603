/**
 * The `plugin-host checksum` command: prints the SHA-256 of files, and keeps the
 * `checksum_sha256` of manifests true after their executables change.
 *
 * `checksum FILE...` prints `<sha256>  FILE` per file. `checksum --write MANIFEST...` recomputes
 * the checksum of each manifest's executable (resolved as `PluginManifest.verify` resolves it:
 * relative to the manifest's folder) and rewrites the manifest: in TOML only the
 * `checksum_sha256 = "…"` line is replaced (or added after the `executable` line), so comments
 * and layout stay; in JSON the `checksumSha256` field is set. The entries of a manifest's
 * `checksums` table are kept true the same way (each `"path" = "…"` digest replaced in place); a
 * manifest that declares its executable only there needs no `checksum_sha256`. Each rewritten
 * manifest is read back and verified through the library. `checksum --check MANIFEST...` only reports stale
 * checksums and fails (exit 1) if there is any. A directory argument means every manifest in it
 * and its immediate subfolders, found as `PluginManifest.discover` finds them. A path that does
 * not exist is a usage error (exit 2).
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import * as Result from "effect/Result"
import { Argument, Command, Flag } from "effect/cli"
import * as PluginManifest from "../PluginManifest.ts"
import { CliFailure, ExitCode } from "./CliFailure.ts"

// ---------------------------------------------------------------------------------------------
// rewriting a manifest's text
// ---------------------------------------------------------------------------------------------

const tomlChecksumLine = /^([ \t]*checksum_sha256[ \t]*=[ \t]*)(["'])[^"'\r\n]*\2/m
const tomlExecutableLine = /^[ \t]*executable[ \t]*=[^\r\n]*/m

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The JSON manifest with `checksumSha256` set: in place when present, else right after `executable`. */
const jsonWithChecksum = (text: string, checksum: string): string | undefined => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!isRecord(json)) return undefined
  const entries = Object.entries(json)
  const updated = "checksumSha256" in json
    ? entries.map(([key, value]) => [key, key === "checksumSha256" ? checksum : value] as const)
    : entries.flatMap(([key, value]) =>
      key === "executable" ? [[key, value] as const, ["checksumSha256", checksum] as const] : [[key, value] as const]
    )
  return `${JSON.stringify(Object.fromEntries(updated), null, 2)}\n`
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * The manifest text with `checksum` as the digest of `entry` in its `checksums` table, or
 * undefined when the entry is not found (TOML: a `"entry" = "…"` or bare `entry = "…"` pair;
 * JSON: the `checksums` object).
 *
 * @category rewriting
 */
export const withFileChecksum = (text: string, file: string, entry: string, checksum: string): string | undefined => {
  if (file.endsWith(".json")) {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return undefined
    }
    if (!isRecord(json) || !isRecord(json["checksums"]) || !Object.hasOwn(json["checksums"], entry)) return undefined
    return `${JSON.stringify({ ...json, checksums: { ...json["checksums"], [entry]: checksum } }, null, 2)}\n`
  }
  const key = escapeRegExp(entry)
  const pair = new RegExp(`((?:"${key}"|'${key}'|(?<![\\w."'-])${key}(?![\\w."'-]))[ \\t]*=[ \\t]*)(["'])[^"'\\r\\n]*\\2`)
  return pair.test(text) ? text.replace(pair, `$1"${checksum}"`) : undefined
}

/**
 * The manifest text with `checksum` as its declared checksum, or undefined when there is no
 * place for one (no `executable` line in a TOML manifest, a JSON manifest that is not an object).
 *
 * @category rewriting
 */
export const withChecksum = (text: string, file: string, checksum: string): string | undefined => {
  if (file.endsWith(".json")) return jsonWithChecksum(text, checksum)
  if (tomlChecksumLine.test(text)) return text.replace(tomlChecksumLine, `$1"${checksum}"`)
  const executable = tomlExecutableLine.exec(text)
  if (executable === null) return undefined
  const end = executable.index + executable[0].length
  const newline = text.includes("\r\n") ? "\r\n" : "\n"
  return `${text.slice(0, end)}${newline}checksum_sha256 = "${checksum}"${text.slice(end)}`
}

// ---------------------------------------------------------------------------------------------
// one manifest
// ---------------------------------------------------------------------------------------------

/** What happened to one manifest: a line for stdout, or a problem that fails the command. */
type Outcome =
  | { readonly _tag: "Done"; readonly line: string }
  | { readonly _tag: "Problem"; readonly problem: string }

const done = (line: string): Outcome => ({ _tag: "Done", line })
const problem = (text: string): Outcome => ({ _tag: "Problem", problem: text })

/** The path as the user would write it: relative to the working folder, unless outside it. */
const shown = (path: Path.Path, file: string): string => {
  const relative = path.relative(path.resolve("."), file)
  return relative === "" || relative.startsWith("..") || path.isAbsolute(relative) ? file : relative
}

/** One declared digest of a manifest and what its file hashes to now. */
interface Digest {
  /** How a problem names it: the executable's file name, or the `checksums` entry. */
  readonly what: string
  readonly declared: string | undefined
  readonly actual: string
  /** The manifest text with `actual` declared instead. */
  readonly apply: (text: string) => string | undefined
}

const isStale = (digest: Digest): boolean => digest.declared?.toLowerCase() !== digest.actual

const staleLine = (name: string, digest: Digest, executable: boolean): string =>
  executable
    ? `${name}: checksum is ${digest.declared ?? "missing"}, ${digest.what} hashes to ${digest.actual}`
    : `${name}: checksums entry \`${digest.what}\` is ${digest.declared}, it hashes to ${digest.actual}`

const rewrite = Effect.fn("ChecksumCommand.rewrite")(function*(file: string, name: string, stale: ReadonlyArray<Digest>, summary: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  let text: string | undefined = yield* fs.readFileString(file)
  for (const digest of stale) text = text === undefined ? undefined : digest.apply(text)
  if (text === undefined) return problem(`${name}: no \`executable\` entry to put the checksum after`)
  yield* fs.writeFileString(file, text)
  // Read back through the library: the rewritten manifest must verify.
  const verified = yield* PluginManifest.load(file).pipe(
    Effect.flatMap((reloaded) => PluginManifest.verify(reloaded, path.dirname(file), { manifestPath: file })),
    Effect.result
  )
  return Result.isFailure(verified) ? problem(verified.failure.message) : done(`updated  ${name}  ${summary}`)
})

/** The digests a manifest declares (the executable's unless only `checksums` are declared), each hashed now. */
const digestsOf = Effect.fn("ChecksumCommand.digestsOf")(function*(file: string, manifest: PluginManifest.PluginManifest) {
  const path = yield* Path.Path
  const digests: Array<Digest> = []
  if (manifest.checksumSha256 !== undefined || manifest.checksums === undefined) {
    const executable = yield* PluginManifest.verify({ executable: manifest.executable }, path.dirname(file), { manifestPath: file }).pipe(
      Effect.mapError((error) => error.message)
    )
    const actual = yield* PluginManifest.checksum(executable).pipe(Effect.mapError((error) => `cannot hash ${executable}: ${error.message}`))
    digests.push({ what: path.basename(executable), declared: manifest.checksumSha256, actual, apply: (text) => withChecksum(text, file, actual) })
  }
  for (const [entry, declared] of Object.entries(manifest.checksums ?? {})) {
    const target = path.resolve(path.dirname(file), entry)
    const actual = yield* PluginManifest.checksum(target).pipe(Effect.mapError((error) => `cannot hash ${target}: ${error.message}`))
    digests.push({ what: entry, declared, actual, apply: (text) => withFileChecksum(text, file, entry, actual) })
  }
  return digests
})

const refresh = Effect.fn("ChecksumCommand.refresh")(function*(file: string, mode: "write" | "check") {
  const path = yield* Path.Path
  const name = shown(path, file)
  // Loading checks everything but the checksums, which are what is being refreshed.
  const loaded = yield* Effect.result(PluginManifest.load(file))
  if (Result.isFailure(loaded)) return problem(loaded.failure.message)
  const manifest = loaded.success
  const digests = yield* Effect.result(digestsOf(file, manifest))
  if (Result.isFailure(digests)) return problem(digests.failure.startsWith("cannot hash") ? `${name}: ${digests.failure}` : digests.failure)
  const executableCounted = manifest.checksumSha256 !== undefined || manifest.checksums === undefined
  const summary = digests.success.map((digest, i) => i === 0 && executableCounted ? digest.actual : `${digest.what}=${digest.actual}`).join("  ")
  const stale = digests.success.filter(isStale)
  if (stale.length === 0) return done(`ok       ${name}  ${summary}`)
  if (mode === "check") {
    return problem(stale.map((digest) => staleLine(name, digest, executableCounted && digest === digests.success[0])).join("\n  "))
  }
  return yield* rewrite(file, name, stale, summary).pipe(
    Effect.catch((error) => Effect.succeed(problem(`${name}: cannot be rewritten: ${error.message}`)))
  )
})

// ---------------------------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------------------------

/** Fails with a usage error (exit 2) for the first path that does not exist. */
const requireExisting = Effect.fn("ChecksumCommand.requireExisting")(function*(paths: ReadonlyArray<string>) {
  const fs = yield* FileSystem.FileSystem
  for (const file of paths) {
    const exists = yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false))
    if (!exists) return yield* new CliFailure({ message: `no such file or directory: ${file}`, exitCode: ExitCode.Usage })
  }
})

/** Each argument as manifest files: a file is itself, a directory every manifest found in it. */
const manifestFiles = Effect.fn("ChecksumCommand.manifestFiles")(function*(paths: ReadonlyArray<string>) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const files: Array<string> = []
  const problems: Array<string> = []
  for (const given of paths) {
    const info = yield* fs.stat(given).pipe(Effect.option)
    if (info._tag === "Some" && info.value.type === "Directory") {
      const found = yield* PluginManifest.discover(given)
      if (found.length === 0) problems.push(`no manifest found in ${given}`)
      files.push(...found.map((outcome) => outcome.path))
    } else {
      files.push(path.resolve(given))
    }
  }
  return { files, problems }
})

const hashFiles = Effect.fn("ChecksumCommand.hashFiles")(function*(files: ReadonlyArray<string>) {
  for (const file of files) {
    const sum = yield* PluginManifest.checksum(file).pipe(
      Effect.mapError((error) => new CliFailure({ message: `cannot hash ${file}: ${error.message}`, exitCode: ExitCode.Failed }))
    )
    yield* Console.log(`${sum}  ${file}`)
  }
})

const refreshManifests = Effect.fn("ChecksumCommand.refreshManifests")(function*(
  paths: ReadonlyArray<string>,
  mode: "write" | "check"
) {
  const { files, problems } = yield* manifestFiles(paths)
  for (const file of files) {
    const outcome = yield* refresh(file, mode)
    if (outcome._tag === "Problem") problems.push(outcome.problem)
    else yield* Console.log(outcome.line)
  }
  if (problems.length > 0) {
    return yield* new CliFailure({
      message: `${problems.length} manifest(s) need attention:\n  ${problems.join("\n  ")}`,
      exitCode: ExitCode.Failed
    })
  }
  yield* Console.log(mode === "check" ? "every checksum is up to date" : "every checksum is written and verified")
})

// ---------------------------------------------------------------------------------------------
// the command
// ---------------------------------------------------------------------------------------------

/**
 * `plugin-host checksum [--write | --check] PATH...`.
 *
 * @category commands
 */
export const command = Command.make("checksum", {
  paths: Argument.String("path").pipe(
    Argument.withDescription("Files to hash; with --write or --check, manifests or folders of manifests"),
    Argument.variadic({ min: 1 })
  ),
  write: Flag.Boolean("write").pipe(
    Flag.withDescription("Rewrite each manifest's checksum_sha256 to its executable's SHA-256"),
    Flag.withDefault(false)
  ),
  check: Flag.Boolean("check").pipe(
    Flag.withDescription("Report manifests whose checksum is stale or missing; exit 1 if any"),
    Flag.withDefault(false)
  )
}, (input) =>
  Effect.gen(function*() {
    if (input.write && input.check) {
      return yield* new CliFailure({ message: "--write and --check cannot be combined", exitCode: ExitCode.Usage })
    }
    yield* requireExisting(input.paths)
    if (input.write) return yield* refreshManifests(input.paths, "write")
    if (input.check) return yield* refreshManifests(input.paths, "check")
    yield* hashFiles(input.paths)
  })).pipe(
    Command.withDescription(
      "Print the SHA-256 of files; with --write, update manifests' checksum_sha256; with --check, fail if any is stale"
    ),
    Command.withExamples([
      { command: "plugin-host checksum plugins/echo/plugin.mjs", description: "Print a checksum" },
      { command: "plugin-host checksum --write plugins/echo/echo.toml", description: "Update one manifest" },
      { command: "plugin-host checksum --check plugins", description: "Check every manifest in a folder (CI)" }
    ])
  )
