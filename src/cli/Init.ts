/**
 * The `plugin-host init` command: scaffolds a new plugin folder that the host can run at once.
 *
 * `plugin-host init <node|python> [DIR] [--name NAME]` writes `DIR/<name>.toml` (every key
 * explained, `checksum_sha256` already true) and an executable starter plugin from
 * {@link PluginTemplates}, then loads and verifies the manifest through the library before
 * printing the next steps. `DIR` defaults to `./plugins/<name>` and the name to `DIR`'s last
 * segment; the name must be a valid `PluginManifest.Name`. A folder that exists and is not
 * empty is never written to (exit 2).
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import * as Path from "effect/Path"
import * as Schema from "effect/Schema"
import { Argument, Command, Flag } from "effect/cli"
import * as PluginManifest from "../PluginManifest.ts"
import { CliFailure, ExitCode } from "./CliFailure.ts"
import * as PluginTemplates from "./PluginTemplates.ts"

const usage = (message: string) => new CliFailure({ message, exitCode: ExitCode.Usage })

const isName = Schema.is(PluginManifest.Name)

/** The plugin name and its folder, from the arguments. */
const target = Effect.fn("Init.target")(function*(dir: Option.Option<string>, name: Option.Option<string>) {
  const path = yield* Path.Path
  if (Option.isNone(dir) && Option.isNone(name)) {
    return yield* usage("give the plugin's folder or its name: plugin-host init node plugins/my-plugin, or --name my-plugin")
  }
  const chosen = Option.isSome(name) ? name.value : path.basename(path.resolve(Option.getOrElse(dir, () => ".")))
  if (!isName(chosen)) {
    return yield* usage(
      `\`${chosen}\` is not a plugin name: a name starts with a lowercase letter and has only a-z, 0-9, \`_\`, \`.\` and \`-\`` +
        (Option.isSome(name) ? "" : " (pass --name to choose one other than the folder's)")
    )
  }
  return { name: chosen, dir: path.resolve(Option.getOrElse(dir, () => path.join("plugins", chosen))) }
})

/** Fails with a usage error unless `dir` is missing or an empty folder. */
const requireFreshFolder = Effect.fn("Init.requireFreshFolder")(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const info = yield* fs.stat(dir).pipe(Effect.option)
  if (Option.isNone(info)) return
  if (info.value.type !== "Directory") return yield* usage(`${dir} exists and is not a folder`)
  const entries = yield* fs.readDirectory(dir)
  if (entries.length > 0) return yield* usage(`${dir} is not empty; refusing to overwrite it (choose another folder)`)
})

/** Writes the plugin and its manifest; returns the manifest's path. */
const scaffold = Effect.fn("Init.scaffold")(function*(language: PluginTemplates.Language, name: string, dir: string) {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const executable = PluginTemplates.executableNames[language]
  const executablePath = path.join(dir, executable)
  const manifestPath = path.join(dir, `${name}.toml`)
  yield* fs.makeDirectory(dir, { recursive: true })
  yield* fs.writeFileString(executablePath, PluginTemplates.executable(language, name))
  // Explicitly, since the mode given at creation is narrowed by the umask.
  yield* fs.chmod(executablePath, 0o755)
  const checksum = yield* PluginManifest.checksum(executablePath)
  yield* fs.writeFileString(manifestPath, PluginTemplates.manifest({ name, executable, checksum }))
  return manifestPath
})

const nextSteps = (options: {
  readonly name: string
  readonly dir: string
  readonly parent: string
  readonly executable: string
  readonly manifest: string
}) => {
  const width = Math.max(options.manifest.length, options.executable.length)
  return [
    `created ${options.dir}`,
    `  ${options.manifest.padEnd(width)}  the manifest (name, version, executable, checksum_sha256, allowed_env_vars)`,
    `  ${options.executable.padEnd(width)}  the plugin: initialize, echo, health, shutdown`,
    "",
    "next steps:",
    `  plugin-host call ${options.name} echo '{"hello":"world"}' --dir ${options.parent}`,
    `  plugin-host doctor --dir ${options.parent}`,
    `  after editing ${options.executable}: plugin-host checksum --write ${options.dir}/${options.manifest}`
  ].join("\n")
}

/**
 * `plugin-host init <node|python> [DIR] [--name NAME]`.
 *
 * @category commands
 */
export const command = Command.make("init", {
  language: Argument.Literals("language", PluginTemplates.languages).pipe(
    Argument.withDescription("The plugin's language: node (dependency-free JavaScript) or python")
  ),
  dir: Argument.String("dir").pipe(
    Argument.withDescription("The folder to create (default: ./plugins/<name>)"),
    Argument.optional
  ),
  name: Flag.String("name").pipe(
    Flag.withDescription("The plugin name (default: the folder's name)"),
    Flag.optional
  )
}, (input) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    const { dir, name } = yield* target(input.dir, input.name)
    yield* requireFreshFolder(dir)
    const manifestPath = yield* scaffold(input.language, name, dir).pipe(
      Effect.mapError((error) => new CliFailure({ message: `cannot create ${dir}: ${error.message}`, exitCode: ExitCode.Failed }))
    )
    // Read back through the library, so what was written is what the host accepts.
    yield* PluginManifest.load(manifestPath).pipe(
      Effect.flatMap((manifest) => PluginManifest.verify(manifest, dir, { manifestPath })),
      Effect.mapError((error) => new CliFailure({ message: error.message, exitCode: ExitCode.Failed }))
    )
    const shown = path.relative(path.resolve("."), dir)
    const display = shown === "" || shown.startsWith("..") ? dir : shown
    yield* Console.log(nextSteps({
      name,
      dir: display,
      parent: path.dirname(display),
      executable: PluginTemplates.executableNames[input.language],
      manifest: path.basename(manifestPath)
    }))
  })).pipe(
    Command.withDescription("Create a plugin folder: a manifest with its checksum and a runnable starter plugin"),
    Command.withExamples([
      { command: "plugin-host init node plugins/hello", description: "A JavaScript plugin named hello" },
      { command: "plugin-host init python --name weather", description: "A Python plugin in ./plugins/weather" }
    ])
  )
