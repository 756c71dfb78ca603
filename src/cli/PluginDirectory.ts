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
import { CliFailure } from "./CliFailure.ts"

/**
 * The bundled example plugins (`examples/plugins` at the package root, two levels above this
 * module in `src/cli` and in `dist/cli` alike).
 *
 * @category constants
 */
export const bundled = fileURLToPath(new URL("../../examples/plugins", import.meta.url))

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
 * The valid manifests of a directory; invalid ones are reported on stderr (and returned).
 *
 * @category constructors
 */
export const discover = (dir: string) =>
  Effect.gen(function*() {
    const outcomes = yield* PluginManifest.discover(dir)
    const valid = outcomes.flatMap((o) => o._tag === "Valid" ? [o] : [])
    const invalid = outcomes.flatMap((o) => o._tag === "Rejected" ? [o] : [])
    for (const bad of invalid) yield* Effect.sync(() => process.stderr.write(`warning: ${bad.error.message}\n`))
    return { valid, invalid }
  })

/**
 * The manifest of one plugin by name, or a failure listing the ones there are.
 *
 * @category constructors
 */
export const find = (dir: string, name: string) =>
  Effect.gen(function*() {
    const { invalid, valid } = yield* discover(dir)
    const found = valid.find((d) => d.manifest.name === name)
    if (found !== undefined) return found
    const broken = invalid.find((d) => d.path.includes(name))
    return yield* new CliFailure({
      message: broken !== undefined
        ? `plugin \`${name}\` cannot be used: ${broken.error.message}`
        : `no plugin named \`${name}\` in ${dir} (found: ${valid.map((d) => d.manifest.name).join(", ") || "none"})`,
      exitCode: 1
    })
  })
