/**
 * Where the `plugin-host` command finds plugins: `--dir`, else `./plugins` when it exists, else
 * the example plugins bundled with the package; and the discovery of their manifests with the
 * problems reported, not hidden.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import * as Path from "effect/Path"
import { fileURLToPath } from "node:url"
import * as PluginManifest from "../PluginManifest.ts"
import { CliFailure, ExitCode } from "./CliFailure.ts"

/**
 * The bundled example plugins. Run from the TypeScript sources (a clone of the repository, where
 * Node strips the types), they are the sources in `examples/plugins`; run from the built package
 * (an install, where Node refuses to strip types under `node_modules`), they are their JavaScript
 * build in `dist/examples/plugins`, which `npm run build` makes. The package exports that folder
 * as `effect-plugin-host/examples/*`, and `plugin-host examples` prints it.
 *
 * @category constants
 */
export const bundled = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "../../examples/plugins" : "../examples/plugins", import.meta.url)
)

/**
 * The directory to use.
 *
 * @category constructors
 */
export const resolve = (dir: Option.Option<string>) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    if (Option.isSome(dir)) return path.resolve(dir.value)
    const fs = yield* FileSystem.FileSystem
    const local = path.resolve("plugins")
    const exists = yield* fs.exists(local).pipe(Effect.orElseSucceed(() => false))
    return exists ? local : bundled
  })

/**
 * The valid manifests of a directory; invalid ones are reported on stderr (and returned). A
 * directory that does not exist is a usage failure (exit 2), not an empty list: a typo in
 * `--dir` must not look like a host without plugins.
 *
 * @category constructors
 */
export const discover = (dir: string) =>
  Effect.gen(function*() {
    const outcomes = yield* PluginManifest.discover(dir).pipe(
      Effect.mapError((error) => new CliFailure({ message: error.message, exitCode: ExitCode.Usage }))
    )
    const valid = outcomes.flatMap((o) => o._tag === "Valid" ? [o] : [])
    const invalid = outcomes.flatMap((o) => o._tag === "Rejected" ? [o] : [])
    for (const bad of invalid) yield* Effect.sync(() => process.stderr.write(`warning: ${bad.error.message}\n`))
    return { valid, invalid }
  })

/**
 * The manifest of one plugin by name, or a failure saying why there is none: the rejection of
 * a manifest whose file name implies the name (the stem rule of `PluginManifest.stemMatches`,
 * as `PluginManager` applies it), else the names there are.
 *
 * @category constructors
 */
export const find = (dir: string, name: string) =>
  Effect.gen(function*() {
    const { invalid, valid } = yield* discover(dir)
    const found = valid.find((d) => d.manifest.name === name)
    if (found !== undefined) return found
    const rejected = invalid.find((d) => PluginManifest.stemMatches(PluginManifest.stemOf(d.path), name))
    return yield* new CliFailure({
      message: rejected !== undefined
        ? `plugin \`${name}\` cannot be used: its manifest ${rejected.path} was rejected: ${rejected.error.reason.message}`
        : `no plugin named \`${name}\` in ${dir} (found: ${valid.map((d) => d.manifest.name).join(", ") || "none"})`,
      exitCode: ExitCode.Failed
    })
  })
