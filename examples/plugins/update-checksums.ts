#!/usr/bin/env node
/**
 * Recomputes the `checksum_sha256` of every plugin manifest in a folder (default: the folder
 * of this script, `examples/plugins`) and writes it into the manifest, so a checksum stays true
 * after its plugin's executable changes. Run it after editing a plugin:
 *
 *   node examples/plugins/update-checksums.ts            # rewrite stale checksums
 *   node examples/plugins/update-checksums.ts --check    # only report; exit 1 if any is stale
 *   node examples/plugins/update-checksums.ts DIR        # another plugin folder
 *
 * Manifests are found like `PluginManifest.discover` finds them (`*.toml` / `*.json` in DIR and
 * its immediate subfolders). In a TOML manifest only the `checksum_sha256 = "…"` line is
 * rewritten (comments and layout stay), or added after the `executable` line; a JSON manifest
 * gets its `checksumSha256` field set. The checksum covers the manifest's executable only —
 * for a script, not the modules it imports.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as PluginManifest from "../../src/PluginManifest.ts"

class ChecksumsNotUpdated extends Schema.TaggedError<ChecksumsNotUpdated>()("ChecksumsNotUpdated", {
  problems: Schema.Array(Schema.String)
}) {
  override get message() {
    return `${this.problems.length} manifest(s) need attention:\n  ${this.problems.join("\n  ")}`
  }
}

const checksumLine = /^(\s*checksum_sha256\s*=\s*)(["'])[^"']*\2/m
const executableLine = /^\s*executable\s*=.*$/m

/** The manifest text with `checksum` as its declared checksum, or undefined if it has no place for one. */
const withChecksum = (text: string, file: string, checksum: string): string | undefined => {
  if (file.endsWith(".json")) {
    const json: unknown = JSON.parse(text)
    if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined
    return JSON.stringify({ ...json, checksumSha256: checksum }, null, 2) + "\n"
  }
  if (checksumLine.test(text)) return text.replace(checksumLine, `$1"${checksum}"`)
  const executable = executableLine.exec(text)
  if (executable === null) return undefined
  const end = executable.index + executable[0].length
  return `${text.slice(0, end)}\nchecksum_sha256 = "${checksum}"${text.slice(end)}`
}

const program = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const args = process.argv.slice(2)
  const check = args.includes("--check")
  const dir = path.resolve(args.find((arg) => !arg.startsWith("--")) ?? import.meta.dirname)

  const outcomes = yield* PluginManifest.discover(dir)
  if (outcomes.length === 0) return yield* new ChecksumsNotUpdated({ problems: [`no manifest found in ${dir}`] })
  const problems: Array<string> = []
  for (const outcome of outcomes) {
    const file = outcome.path
    const name = path.relative(dir, file)
    // `discover` verified it already; a manifest whose checksum is stale is `Rejected` there, so
    // every manifest is loaded again here, which checks everything but the checksum.
    const loaded = yield* Effect.result(PluginManifest.load(file))
    if (Result.isFailure(loaded)) {
      problems.push(loaded.failure.message)
      continue
    }
    const manifest = loaded.success
    const executable = path.resolve(path.dirname(file), manifest.executable)
    const actual = yield* PluginManifest.checksum(executable).pipe(Effect.mapError((error) => error.message), Effect.result)
    if (Result.isFailure(actual)) {
      problems.push(`${name}: cannot hash ${executable}: ${actual.failure}`)
      continue
    }
    const checksum = actual.success
    if (manifest.checksumSha256?.toLowerCase() === checksum) {
      yield* Console.log(`ok       ${name}  ${checksum}`)
      continue
    }
    if (check) {
      problems.push(`${name}: checksum is ${manifest.checksumSha256 ?? "missing"}, ${path.basename(executable)} hashes to ${checksum}`)
      continue
    }
    const text = yield* fs.readFileString(file)
    const updated = withChecksum(text, file, checksum)
    if (updated === undefined) {
      problems.push(`${name}: no \`executable\` entry to put the checksum after`)
      continue
    }
    yield* fs.writeFileString(file, updated)
    // Read back through the library: the rewritten manifest must verify.
    const verified = yield* PluginManifest.load(file).pipe(
      Effect.flatMap((reloaded) => PluginManifest.verify(reloaded, path.dirname(file), { manifestPath: file })),
      Effect.result
    )
    if (Result.isFailure(verified)) problems.push(verified.failure.message)
    else yield* Console.log(`updated  ${name}  ${checksum}`)
  }
  if (problems.length > 0) return yield* new ChecksumsNotUpdated({ problems })
  yield* Console.log(check ? "every checksum is up to date" : "every checksum is written and verified")
})

NodeRuntime.runMain(program.pipe(
  Effect.catchTag("ChecksumsNotUpdated", (error) =>
    Console.error(error.message).pipe(Effect.andThen(Effect.sync(() => {
      process.exitCode = 1
    })))),
  Effect.provide(NodeServices.layer)
))
